# ruff: noqa: F811  (the API's fixtures, imported from tests/api/conftest.py, are parameters here)
"""The audit log records every access: sign-in/out and failed sign-in, document
views, downloads (raw .eml too), access-link opens (public, denied), searches,
the API's calls — each with its exact act, actor, document, outcome and
details; and an access that cannot be logged is refused."""

from __future__ import annotations

import re

import pytest
from django.db import connection, connections
from django.urls import reverse

from archive.integrity.audit import AuditAction, Outcome
from archive.integrity.models import AuditEntry
from archive.models import ArchiveSettings, FieldDefinition, FieldType
from tests.api.conftest import api_as, fresh_rate_limit_counts, token_for  # noqa: F401 - fixtures
from tests.archive.mail_samples import archive_mail, html_mail

pytestmark = pytest.mark.django_db


def last(action: str | None = None) -> AuditEntry:
    qs = AuditEntry.objects.order_by("-seq")
    if action is not None:
        qs = qs.filter(action=action)
    entry = qs.first()
    assert entry is not None, f"no {action} entry"
    return entry


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("seq"))


@pytest.fixture
def mail(group_a):
    return archive_mail(html_mail('<p>contract</p><img src="cid:logo@example.com" alt="logo">'), group_a)


def test_sign_in_sign_out_and_a_failed_sign_in(client, alice):
    client.post(reverse("login"), {"username": "alice", "password": "wrong-password"})
    failed = last(AuditAction.SIGN_IN_FAILED)
    assert (failed.actor, failed.user_id, failed.outcome, failed.ip) == ("anonymous", None, Outcome.FAILED, "127.0.0.1")
    assert failed.details == {"username": "alice"}
    assert "wrong-password" not in str(AuditEntry.objects.values_list("details", flat=True))

    assert client.post(reverse("login"), {"username": "alice", "password": "alice-pass-123"}).status_code == 302
    signed_in = last(AuditAction.SIGN_IN)
    assert (signed_in.actor, signed_in.user_id, signed_in.outcome, signed_in.ip) == (
        "alice",
        alice.pk,
        "ok",
        "127.0.0.1",
    )
    assert signed_in.details == {"backend": "django.contrib.auth.backends.ModelBackend"}
    # The sign-in's last_login save is not an administrative change of the user.
    assert not entries(AuditAction.USER_CHANGED)

    client.post(reverse("logout"))
    signed_out = last(AuditAction.SIGN_OUT)
    assert (signed_out.actor, signed_out.user_id, signed_out.outcome) == ("alice", alice.pk, "ok")


def test_the_login_lockout_is_logged(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for attempt in range(3):
        client.post(reverse("login"), {"username": "alice", "password": f"wrong-{attempt}"})
    locked = last(AuditAction.SIGN_IN_LOCKED_OUT)
    assert (locked.actor, locked.outcome, locked.details) == ("anonymous", Outcome.DENIED, {"username": "alice"})
    assert len(entries(AuditAction.SIGN_IN_FAILED)) == 3


def test_a_document_view_and_a_denied_one(client, alice, bob, make_document):
    doc = make_document()
    client.force_login(alice)
    assert client.get(reverse("archive:document", args=[doc.pk])).status_code == 200
    view = last(AuditAction.DOCUMENT_VIEW)
    assert (view.actor, view.user_id, view.document, view.outcome, view.details) == (
        "alice",
        alice.pk,
        doc.pk,
        "ok",
        {},
    )

    client.force_login(bob)
    assert client.get(reverse("archive:document", args=[doc.pk])).status_code == 404
    denied = last(AuditAction.DOCUMENT_VIEW)
    assert (denied.actor, denied.document, denied.outcome) == ("bob", doc.pk, Outcome.DENIED)
    # A number no document has: denied the same way (nothing tells the two apart).
    assert client.get(reverse("archive:document", args=[doc.pk + 99])).status_code == 404
    assert (last().document, last().outcome) == (doc.pk + 99, Outcome.DENIED)


def test_file_downloads_raw_mail_downloads_and_a_missing_file(client, alice, make_document, mail):
    doc = make_document(content=b"%PDF-1.4 x", name="invoice.pdf")
    file = doc.files.get()
    client.force_login(alice)
    assert client.get(reverse("archive:file", args=[doc.pk, file.pk]) + "?download=1").status_code == 200
    download = last()
    assert (download.action, download.actor, download.document, download.outcome) == (
        AuditAction.FILE_DOWNLOAD,
        "alice",
        doc.pk,
        "ok",
    )
    assert download.details == {"file": file.pk, "download": True, "name": "invoice.pdf", "sha256": file.sha256}

    eml = mail.original()
    assert client.get(reverse("archive:file", args=[mail.pk, eml.pk]) + "?download=1").status_code == 200
    raw = last()
    assert (raw.action, raw.document, raw.details["sha256"]) == (AuditAction.RAW_DOWNLOAD, mail.pk, eml.sha256)

    assert client.get(reverse("archive:file", args=[doc.pk, eml.pk])).status_code == 404  # another document's file
    failed = last()
    assert (failed.action, failed.document, failed.outcome, failed.details) == (
        AuditAction.FILE_DOWNLOAD,
        doc.pk,
        Outcome.FAILED,
        {"file": eml.pk, "download": False},
    )


def test_the_mail_body_and_its_parts(client, alice, mail):
    client.force_login(alice)
    html = client.get(reverse("archive:mail_body", args=[mail.pk])).content.decode()
    body = last()
    assert (body.action, body.document, body.details) == (
        AuditAction.DOCUMENT_VIEW,
        mail.pk,
        {"part": "body", "remote": False},
    )
    src = re.findall(r'src="([^"]+/mail/part/[^"]+)"', html)[0].replace("&amp;", "&")
    client.logout()  # the frame's image requests carry no cookie: the signed URL names the user
    assert client.get(src).status_code == 200
    part = last()
    assert (part.action, part.actor, part.document, part.outcome) == (AuditAction.FILE_DOWNLOAD, "alice", mail.pk, "ok")
    assert part.details["signed_url"] is True and part.details["part"]


def test_access_link_opens_public_and_denied(client, make_document):
    field = FieldDefinition.objects.create(name="public", label="Public", type=FieldType.YESNO)
    settings = ArchiveSettings.load()
    settings.publish_field = field
    settings.save()
    published = make_document(values={"public": True})
    private = make_document(name="private.txt")
    assert client.get(reverse("archive:document", args=[published.pk])).status_code == 200
    opened = last()
    assert (opened.action, opened.actor, opened.user_id, opened.document, opened.outcome, opened.details) == (
        AuditAction.LINK_OPEN,
        "anonymous",
        None,
        published.pk,
        "ok",
        {"public": True},
    )
    assert client.get(reverse("archive:document", args=[private.pk])).status_code == 302  # to the login page
    refused = last()
    assert (refused.action, refused.document, refused.outcome) == (AuditAction.LINK_OPEN, private.pk, Outcome.DENIED)
    # The access link itself (the original box's URL) is logged as opened, then the page as shown.
    link = reverse("legacy_link") + f"?target=new&go={published.pk}"
    assert client.get(link, follow=True).status_code == 200
    opened_link, shown = list(AuditEntry.objects.order_by("-seq")[:2])[::-1]
    assert (opened_link.action, opened_link.document, opened_link.details) == (
        AuditAction.LINK_OPEN,
        published.pk,
        {"link": "legacy"},
    )
    assert (shown.action, shown.document, shown.details) == (AuditAction.LINK_OPEN, published.pk, {"public": True})


def test_a_document_view_adds_one_insert_and_one_head_lock(client, alice, make_document):
    """The cost of the log on a view: the head row read (locked) and moved, one entry inserted."""
    from django.test.utils import CaptureQueriesContext

    doc = make_document()
    client.force_login(alice)
    client.get(reverse("archive:document", args=[doc.pk]))  # the head row exists from here on
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("archive:document", args=[doc.pk])).status_code == 200
    # (The History tab reads the document's ledger entries: page content, not the log's cost.)
    chain_sql = [
        q["sql"]
        for q in queries.captured_queries
        if "integrity_" in q["sql"] and "integrity_ledgerentry" not in q["sql"]
    ]
    assert len(chain_sql) == 3, chain_sql
    head_read, insert, head_move = chain_sql
    assert head_read.startswith("SELECT") and "integrity_chainhead" in head_read
    if connection.features.has_select_for_update:
        assert "FOR UPDATE" in head_read
    assert insert.startswith("INSERT INTO") and "integrity_auditentry" in insert
    assert head_move.startswith("UPDATE") and "integrity_chainhead" in head_move


def test_document_edits_and_the_auditors_refused_edit(client, alice, auditor, make_document):
    doc = make_document()
    client.force_login(alice)
    client.post(reverse("archive:document_notes", args=[doc.pk]), {"notes": "checked"})
    edit = last(AuditAction.DOCUMENT_EDIT)
    assert (edit.actor, edit.document, edit.outcome) == ("alice", doc.pk, "ok")
    client.force_login(auditor)
    assert client.post(reverse("archive:document_notes", args=[doc.pk]), {"notes": "forged"}).status_code == 403
    refused = last(AuditAction.DOCUMENT_EDIT)
    assert (refused.actor, refused.document, refused.outcome, refused.details) == (
        "carol",
        doc.pk,
        Outcome.DENIED,
        {"read_only": True},
    )
    doc.refresh_from_db()
    assert doc.notes == "checked"


@pytest.mark.django_db(transaction=True)  # MariaDB's full-text index sees committed rows only
def test_a_search_logs_the_query_and_the_hits(client, alice, bob, make_document):
    make_document(content=b"quarterly invoice", name="invoice-1.txt", values={"title": "Invoice one"})
    make_document(content=b"quarterly invoice", name="invoice-2.txt", values={"title": "Invoice two"})
    client.force_login(alice)
    assert client.get(reverse("archive:table"), {"q": "title:Invoice"}).status_code == 200
    search = last(AuditAction.SEARCH)
    assert (search.actor, search.outcome, search.document) == ("alice", "ok", None)
    assert search.details == {"query": "title:Invoice", "hits": 2, "more": False, "page": 1}
    client.force_login(bob)  # sees none of them: the hit count is his
    client.get(reverse("archive:table"), {"q": "title:Invoice"})
    assert last(AuditAction.SEARCH).details["hits"] == 0
    client.get(reverse("archive:table"), {"q": "kind:spaceship"})
    bad = last(AuditAction.SEARCH)
    assert (bad.outcome, bad.details["query"], bad.details["hits"]) == (Outcome.FAILED, "kind:spaceship", 0)
    assert "spaceship" in bad.details["error"]
    client.get(reverse("archive:table"))  # the table without a query is no search
    assert len(entries(AuditAction.SEARCH)) == 3


@pytest.mark.django_db(transaction=True)  # MariaDB's full-text index sees committed rows only
def test_the_apis_document_calls(alice, bob, make_document, api_as, mail):
    doc = make_document(values={"title": "Invoice"})
    client = api_as(alice)
    assert client.get(reverse("api:document", args=[doc.pk])).status_code == 200
    view = last()
    assert (view.action, view.actor, view.document, view.outcome) == (AuditAction.DOCUMENT_VIEW, "alice", doc.pk, "ok")
    assert view.details["via"] == "api" and view.details["token"].startswith("wa_")

    eml = mail.original()
    assert client.get(reverse("api:file", args=[mail.pk, eml.pk])).status_code == 200
    raw = last()
    assert (raw.action, raw.document, raw.details["file"], raw.details["via"]) == (
        AuditAction.RAW_DOWNLOAD,
        mail.pk,
        eml.pk,
        "api",
    )
    assert client.get(reverse("api:documents"), {"q": "title:Invoice"}).status_code == 200
    search = last()
    assert (search.action, search.details["query"], search.details["hits"]) == (AuditAction.SEARCH, "title:Invoice", 1)

    assert api_as(bob).get(reverse("api:document", args=[doc.pk])).status_code == 404
    assert api_as(bob).get(reverse("api:file", args=[doc.pk, doc.files.get().pk])).status_code == 404
    assert (last().action, last().actor, last().outcome) == (AuditAction.FILE_DOWNLOAD, "bob", Outcome.DENIED)
    assert api_as(bob).get(reverse("api:document", args=[doc.pk])).status_code == 404
    denied = last()
    assert (denied.action, denied.actor, denied.document, denied.outcome) == (
        AuditAction.DOCUMENT_VIEW,
        "bob",
        doc.pk,
        Outcome.DENIED,
    )


def test_the_auditor_reads_another_groups_document_and_it_is_logged(client, auditor, make_document):
    doc = make_document()  # alice's group
    client.force_login(auditor)
    response = client.get(reverse("archive:document", args=[doc.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="fields-read-only"' in body and 'id="save-fields"' not in body and 'id="upload"' not in body
    view = last(AuditAction.DOCUMENT_VIEW)
    assert (view.actor, view.document, view.outcome) == ("carol", doc.pk, "ok")


@pytest.mark.django_db(transaction=True)
def test_an_access_that_cannot_be_logged_is_refused(client, alice, make_document):
    """Fail closed: another connection holds the audit chain's head row (a
    lock the log cannot get); the document is not shown — the outage page."""
    doc = make_document()
    client.force_login(alice)
    url = reverse("archive:document", args=[doc.pk])
    assert client.get(url).status_code == 200
    logged = AuditEntry.objects.count()
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            other.set_autocommit(False)
            cursor.execute("UPDATE integrity_chainhead SET seq = seq WHERE chain = 'audit'")
            _lock_waits(fast=True)
            response = client.get(url)
        assert response.status_code == 503
        assert b"contract" not in response.content and "Retry-After" in response
    finally:
        other.rollback()
        other.close()
        _lock_waits(fast=False)
    assert AuditEntry.objects.count() == logged
    assert client.get(url).status_code == 200


def _lock_waits(fast: bool) -> None:
    """Lock waits of this connection: give up at once (SQLite) or after 1 s (InnoDB's least); or as configured."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout = {0 if fast else 20000}")
        else:
            cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {1 if fast else 'DEFAULT'}")


def test_a_sync_requested_through_the_api(admin_user, group_a, api_as):
    from mailsources.models import MailSource, SourceKind

    source = MailSource.objects.create(kind=SourceKind.IMAP, name="box", owner_group=group_a, host="h", username="u")
    response = api_as(admin_user, ("read", "admin")).post(reverse("api:source_sync", args=[source.pk]))
    assert response.status_code == 202
    entry = last(AuditAction.SOURCE_CHANGED)
    assert (entry.actor, entry.details["source"], entry.details["change"], entry.details["via"]) == (
        "admin",
        source.pk,
        "sync requested",
        "api",
    )
