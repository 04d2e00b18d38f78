"""Legal holds: which documents they cover, their counts within the search budget, their release."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.urls import reverse

from archive.integrity.models import AuditEntry
from archive.retention import holds
from archive.retention.models import LegalHold


def test_a_hold_covers_the_documents_matching_every_criterion(make_mail, hold, source):
    march = make_mail("2020-03-10", places=[(source, "boss@h", "INBOX")])
    april = make_mail("2020-04-10", places=[(source, "boss@h", "INBOX")])
    other_box = make_mail("2020-03-10", places=[(source, "u@h", "INBOX")])
    numbers = [march.pk, april.pk, other_box.pk]
    by_mailbox = hold(mailbox="BOSS@h")
    assert holds.held_numbers(numbers, [by_mailbox]) == {march.pk, april.pk}
    by_range = hold(date_from=dt.date(2020, 3, 1), date_to=dt.date(2020, 3, 31))
    assert holds.held_numbers(numbers, [by_range]) == {march.pk, other_box.pk}
    both = hold(mailbox="boss@h", date_from=dt.date(2020, 3, 10), date_to=dt.date(2020, 3, 10))
    assert holds.held_numbers(numbers, [both]) == {march.pk}
    by_source = hold(source_id=source.pk)
    assert holds.held_numbers(numbers, [by_source]) == set(numbers)
    assert holds.held_numbers(numbers, [hold(source_id=source.pk + 1)]) == set()


# InnoDB's full-text index sees committed rows only: a search query needs committed documents.
@pytest.mark.django_db(transaction=True)
def test_a_hold_by_search_query_uses_the_tables_search_language(make_mail, hold):
    contract = make_mail("2020-01-01", values={"title": "Contract with ACME"})
    invoice = make_mail("2020-01-01", values={"title": "Invoice 17"})
    assert holds.held_numbers([contract.pk, invoice.pk], [hold(query="acme")]) == {contract.pk}
    assert holds.held_numbers([contract.pk, invoice.pk], [hold(query="-acme")]) == {invoice.pk}


def test_a_hold_whose_query_no_longer_parses_holds_everything(make_mail, hold):
    document = make_mail("2020-01-01")
    broken = hold(query="kind:nonsense")
    assert holds.held_numbers([document.pk], [broken]) == {document.pk}
    assert str(holds.hold_count(broken)) == "—"


def test_released_holds_hold_nothing(make_mail, hold):
    document = make_mail("2020-01-01")
    held = hold(whole_archive=True)
    assert holds.is_held(document.pk)
    LegalHold.objects.filter(pk=held.pk).update(released=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert not holds.is_held(document.pk)


def test_the_count_is_exact_within_the_budget_and_a_lower_bound_when_cut(make_mail, hold, monkeypatch, settings):
    documents = [make_mail("2020-01-01") for _ in range(5)]
    whole = hold(whole_archive=True)
    assert str(holds.hold_count(whole)) == "5"
    monkeypatch.setattr(holds, "COUNT_CHUNK", 2)
    # A clock the test steps: one second per reading; a budget of 4 s runs out
    # after a chunk or two (how often the database's budget check reads it varies).
    settings.SEARCH_TIME_BUDGET_MS = 4000
    ticks = itertools.count()
    cut = holds.hold_count(whole, clock=lambda: float(next(ticks)))
    assert cut.cut and cut.count in (2, 4)  # whole chunks of two, newest numbers first
    assert str(cut) == f"≥ {cut.count}"
    assert len(documents) == 5
    # The holds page shares one budget: here each hold's query costs 3 s of the 4.
    clock = [0.0]
    plain = holds.hold_documents

    def costly(held):
        clock[0] += 3
        return plain(held)

    monkeypatch.setattr(holds, "hold_documents", costly)
    second = hold("second", whole_archive=True)
    first_count, second_count = holds.hold_counts([whole, second], clock=lambda: clock[0])
    assert (first_count.count, first_count.cut) == (5, False)
    assert (str(second_count), second_count.cut) == ("≥ 0", True)


def test_the_holds_page_lists_counts_and_a_release_is_logged(client, admin_user, make_mail, hold):
    make_mail("2020-01-01")
    held = hold(whole_archive=True)
    client.force_login(admin_user)
    html = client.get(reverse("retention:holds")).content.decode()
    assert "Lawsuit" in html and '<td class="hold-count"><span title="">1</span></td>' in html
    response = client.post(reverse("retention:hold_release", args=[held.pk]), {"release_reason": "Case closed"})
    assert response.status_code == 302
    held.refresh_from_db()
    assert held.released is not None and held.released_by == admin_user and held.release_reason == "Case closed"
    entry = AuditEntry.objects.get(action="legal_hold_changed")
    assert entry.actor == "admin" and entry.details["action"] == "released" and entry.details["reason"] == "Case closed"


def test_creating_a_hold_needs_a_criterion_and_a_valid_query(client, admin_user):
    client.force_login(admin_user)
    url = reverse("retention:hold_create")
    response = client.post(url, {"name": "x", "reason": "y"})
    assert response.status_code == 200 and "at least one criterion" in response.content.decode()
    response = client.post(url, {"name": "x", "reason": "y", "query": "kind:nonsense"})
    assert response.status_code == 200 and not LegalHold.objects.exists()
    response = client.post(url, {"name": "Audit 2036", "reason": "Tax audit", "query": "invoice"})
    assert response.status_code == 302
    created = LegalHold.objects.get()
    assert created.created_by == admin_user and created.query == "invoice"
    assert AuditEntry.objects.get(action="legal_hold_changed").details["action"] == "created"


@pytest.mark.parametrize("bad", ["2020-13-01", "yesterday"])
def test_a_bad_date_is_a_form_error_not_a_crash(client, admin_user, bad):
    client.force_login(admin_user)
    response = client.post(reverse("retention:hold_create"), {"name": "x", "reason": "y", "date_from": bad})
    assert response.status_code == 200 and not LegalHold.objects.exists()
