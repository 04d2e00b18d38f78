"""The audit log page: who may open it, its filters and paging, the CSV and
JSON exports (filtered, streamed, themselves logged), and the Django admin's
read-only view of the entries."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from django.urls import reverse

from archive.integrity import audit, chain
from archive.integrity.audit import AuditAction, Outcome
from archive.integrity.audit_views import PAGE_SIZE
from archive.integrity.models import AuditEntry, Chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged(alice, bob):
    """A small log: alice views 7 and 8, bob is denied 7, a failed sign-in, alice searches."""
    audit.log(AuditAction.DOCUMENT_VIEW, user=alice, document=7)
    audit.log(AuditAction.DOCUMENT_VIEW, user=alice, document=8)
    audit.log(AuditAction.DOCUMENT_VIEW, user=bob, document=7, outcome=Outcome.DENIED)
    audit.log(AuditAction.SIGN_IN_FAILED, outcome=Outcome.FAILED, details={"username": "mallory"})
    audit.log(AuditAction.SEARCH, user=alice, details={"query": '=HYPERLINK("x")', "hits": 3})
    return list(AuditEntry.objects.order_by("seq"))


def shown_seqs(response) -> list[int]:
    import re

    return [int(n) for n in re.findall(r'<tr data-seq="(\d+)"', response.content.decode())]


def test_administrators_and_auditors_open_the_log(client, admin_user, auditor, logged):
    for user in (admin_user, auditor):
        client.force_login(user)
        response = client.get(reverse("audit:log"))
        assert response.status_code == 200
        newest = AuditEntry.objects.order_by("-seq").first()
        assert (newest.action, newest.actor) == (AuditAction.SIGN_IN, user.username)
        assert shown_seqs(response) == list(range(newest.seq, 0, -1))  # newest first


def test_each_filter_selects_exactly_its_entries(client, admin_user, logged):
    client.force_login(admin_user)
    url = reverse("audit:log")
    assert shown_seqs(client.get(url, {"who": "bob"})) == [3]
    assert shown_seqs(client.get(url, {"action": AuditAction.SEARCH})) == [5]
    assert shown_seqs(client.get(url, {"outcome": Outcome.DENIED})) == [3]
    assert shown_seqs(client.get(url, {"document": 7})) == [3, 1]
    assert shown_seqs(client.get(url, {"q": "mallory"})) == [4]
    assert shown_seqs(client.get(url, {"who": "alice", "document": 7})) == [1]
    today = dt.date.today()
    AuditEntry.objects.filter(seq=1).update(at=dt.datetime(2020, 1, 2, 12, tzinfo=dt.UTC))
    assert shown_seqs(client.get(url, {"until": "2020-01-02"})) == [1]
    assert 1 not in shown_seqs(client.get(url, {"since": "2020-01-03", "until": today.isoformat()}))


def test_a_bad_filter_is_a_clear_error_not_a_crash(client, admin_user, logged):
    client.force_login(admin_user)
    for bad in ({"document": "abc"}, {"since": "2024-13-45"}, {"since": "2024-02-01", "until": "2024-01-01"}):
        response = client.get(reverse("audit:log"), bad)
        assert response.status_code == 400, bad
        assert shown_seqs(response) == []
        assert 'class="errorlist' in response.content.decode()
        export = client.get(reverse("audit:export_csv"), bad)
        assert export.status_code == 400 and b"Bad filter" in export.content


def test_the_log_is_paged(client, admin_user, alice):
    chain.append_many(
        Chain.AUDIT,
        [
            {"action": AuditAction.DOCUMENT_VIEW, "actor": "alice", "document": n, "details": {}}
            for n in range(PAGE_SIZE + 5)
        ],
    )
    client.force_login(admin_user)
    first = shown_seqs(client.get(reverse("audit:log")))
    second = shown_seqs(client.get(reverse("audit:log"), {"page": 2}))
    assert len(first) == PAGE_SIZE and first[0] == PAGE_SIZE + 6  # the admin's sign-in is the newest
    assert second == list(range(6, 0, -1))


def test_the_csv_export_is_filtered_streamed_safe_for_spreadsheets_and_logged(client, auditor, logged):
    client.force_login(auditor)
    response = client.get(reverse("audit:export_csv"), {"who": "alice"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-log-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(r["seq"]) for r in rows] == [1, 2, 5]
    assert rows[0]["actor"] == "alice" and rows[0]["document"] == "7" and rows[0]["outcome"] == "ok"
    assert rows[0]["entry_hash"] == logged[0].entry_hash
    # A query that a spreadsheet would run as a formula is written as text.
    assert json.loads(rows[2]["details"].removeprefix("'"))["query"].startswith("=HYPERLINK")
    assert not rows[2]["details"].startswith("=")
    export = AuditEntry.objects.filter(action=AuditAction.EXPORT).get()
    assert (export.actor, export.outcome) == ("carol", "ok")
    assert export.details == {"what": "audit_log", "format": "csv", "filter": {"who": "alice"}}


def test_the_json_export_has_what_a_verifier_needs(client, admin_user, logged):
    client.force_login(admin_user)
    response = client.get(reverse("audit:export_json"), {"outcome": "ok"})
    assert response.status_code == 200 and response.streaming
    records = json.loads(b"".join(response.streaming_content))
    assert [r["seq"] for r in records][:3] == [1, 2, 5]
    first = records[0]
    entry = logged[0]
    payload = {k: first[k] for k in chain.HASHED_FIELDS[Chain.AUDIT]}
    # The exported fields hash to the stored entry hash, by the chain's own rule.
    payload["at"] = entry.at
    assert chain.entry_hash(first["prev_hash"], payload) == first["entry_hash"] == entry.entry_hash
    assert AuditEntry.objects.filter(action=AuditAction.EXPORT, details__format="json").count() == 1


def test_the_django_admin_shows_entries_read_only_even_to_a_superuser(client, admin_user, logged):
    client.force_login(admin_user)
    entry = logged[0]
    assert client.get(reverse("admin:integrity_auditentry_changelist")).status_code == 200
    page = client.get(reverse("admin:integrity_auditentry_change", args=[entry.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client.get(reverse("admin:integrity_auditentry_add")).status_code == 403
    assert client.post(reverse("admin:integrity_auditentry_change", args=[entry.pk]), {"actor": "x"}).status_code == 403
    assert (
        client.post(reverse("admin:integrity_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    )
    entry.refresh_from_db()
    assert entry.actor == "alice" and AuditEntry.objects.filter(pk=entry.pk).exists()
