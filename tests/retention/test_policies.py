"""Retention ends: presets from the end of the year, custom durations, scopes and their order."""

from __future__ import annotations

import datetime as dt

import pytest

from archive.models import Document, DocumentKind, FieldDefinition, FieldType
from archive.retention import policies
from archive.retention.models import CountFrom, Preset, RetentionPolicy

D = dt.date


def unsaved(preset: str = Preset.CUSTOM, **duration) -> RetentionPolicy:
    return RetentionPolicy(name="p", preset=preset, **duration)


@pytest.mark.parametrize(
    ("preset", "base", "end"),
    [
        (Preset.CH_10, D(2015, 3, 5), D(2025, 12, 31)),
        (Preset.CH_10, D(2015, 1, 1), D(2025, 12, 31)),
        (Preset.CH_10, D(2015, 12, 31), D(2025, 12, 31)),  # the last day of the year counts to its end
        (Preset.DE_6, D(2020, 2, 29), D(2026, 12, 31)),  # a leap day changes nothing from the end of the year
        (Preset.DE_8, D(2024, 7, 1), D(2032, 12, 31)),
        (Preset.DE_10, D(2024, 12, 31), D(2034, 12, 31)),
    ],
)
def test_presets_count_whole_years_from_the_end_of_the_calendar_year(preset, base, end):
    assert policies.end_date(unsaved(preset), base) == end


@pytest.mark.parametrize(
    ("duration", "base", "end"),
    [
        ({"years": 1, "count_from": CountFrom.DATE}, D(2024, 2, 29), D(2025, 2, 28)),  # no 29 Feb in 2025
        ({"years": 4, "count_from": CountFrom.DATE}, D(2024, 2, 29), D(2028, 2, 29)),
        ({"months": 1, "count_from": CountFrom.DATE}, D(2023, 1, 31), D(2023, 2, 28)),
        ({"months": 1, "count_from": CountFrom.DATE}, D(2024, 1, 31), D(2024, 2, 29)),
        ({"days": 30, "count_from": CountFrom.DATE}, D(2024, 2, 1), D(2024, 3, 2)),
        ({"months": 2, "count_from": CountFrom.END_OF_YEAR}, D(2023, 5, 5), D(2024, 2, 29)),
        ({"years": 1, "days": 1, "count_from": CountFrom.END_OF_YEAR}, D(2023, 5, 5), D(2025, 1, 1)),
    ],
)
def test_custom_durations_add_years_and_months_clamped_then_days(duration, base, end):
    assert policies.end_date(unsaved(**duration), base) == end


def test_an_end_past_the_year_9999_is_the_last_day_there_is():
    assert policies.end_date(unsaved(Preset.CH_10), D(9995, 1, 1)) == D.max
    assert policies.end_date(unsaved(years=500, count_from=CountFrom.DATE), D(9999, 12, 31)) == D.max


def test_keep_forever_has_no_end():
    assert policies.end_date(unsaved(Preset.FOREVER), D(2000, 1, 1)) is None


def test_the_base_is_the_mail_date_and_the_archive_time_without_one(make_mail, policy):
    policy()
    dated = make_mail("2015-03-05")
    undated = make_mail(None)
    Document.objects.filter(pk=undated.pk).update(created=dt.datetime(2019, 6, 1, 12, tzinfo=dt.UTC))
    undated.refresh_from_db()
    assert policies.retention_end(dated) == D(2025, 12, 31)
    assert policies.retention_end(undated) == D(2029, 12, 31)


def test_without_any_policy_documents_are_kept_forever(make_mail):
    assert policies.retention_end(make_mail("2001-01-01")) is None


def test_the_first_matching_policy_in_order_wins_and_the_default_comes_last(make_mail, policy, source):
    policy("default", Preset.DE_10, order=0, is_default=True)
    policy("inbox", Preset.DE_6, order=20, folder="INBOX")
    policy("office", Preset.DE_8, order=10, source_id=source.pk)
    in_inbox = make_mail("2020-05-05", places=[(source, "u@h", "INBOX")])
    elsewhere = make_mail("2020-05-05")
    found = policies.retentions([in_inbox, elsewhere])
    assert (found[in_inbox.pk].policy.name, found[in_inbox.pk].end) == ("office", D(2028, 12, 31))
    assert (found[elsewhere.pk].policy.name, found[elsewhere.pk].end) == ("default", D(2030, 12, 31))
    RetentionPolicy.objects.filter(name="inbox").update(order=5)
    assert policies.retentions([in_inbox])[in_inbox.pk].policy.name == "inbox"
    RetentionPolicy.objects.filter(name="inbox").update(enabled=False)
    assert policies.retentions([in_inbox])[in_inbox.pk].policy.name == "office"


def test_scopes_by_mailbox_folder_kind_and_field_value(make_mail, make_document, policy, source, db):
    FieldDefinition.objects.create(
        name="record_type", label="Record type", type=FieldType.SELECTION, choices="invoice\nletter"
    )
    field = FieldDefinition.objects.get(name="record_type")
    policy("invoices", Preset.DE_8, order=1, field=field, field_value="invoice")
    policy("boss", Preset.DE_10, order=2, mailbox="BOSS@h")  # mailboxes compare case-insensitively
    policy("sent", Preset.DE_6, order=3, source_id=source.pk, folder="Sent")
    policy("uploads", Preset.CH_10, order=4, kind=DocumentKind.DOCUMENT)
    invoice = make_mail("2020-01-01", values={"record_type": "invoice"}, places=[(source, "boss@h", "Sent")])
    boss = make_mail("2020-01-01", places=[(source, "boss@h", "INBOX")])
    sent = make_mail("2020-01-01", places=[(source, "u@h", "INBOX"), (source, "u@h", "Sent")])
    inbox = make_mail("2020-01-01", places=[(source, "u@h", "INBOX")])
    upload = make_document()
    found = policies.retentions([invoice, boss, sent, inbox, upload])
    names = {n: (r.policy.name if r.policy else None) for n, r in found.items()}
    assert names == {invoice.pk: "invoices", boss.pk: "boss", sent.pk: "sent", inbox.pk: None, upload.pk: "uploads"}


def test_retention_of_a_page_of_documents_takes_a_fixed_number_of_queries(
    make_mail, policy, source, django_assert_max_num_queries
):
    policy("sent", Preset.DE_6, order=3, source_id=source.pk, folder="Sent")
    documents = [make_mail("2020-01-01", places=[(source, "u@h", "Sent")]) for _ in range(30)]
    with django_assert_max_num_queries(2):
        found = policies.retentions(documents)
    assert {r.end for r in found.values()} == {D(2026, 12, 31)}


def test_the_fields_tab_shows_the_retention_end(client, admin_user, make_mail, policy, hold):
    policy()
    document = make_mail("2015-03-05")
    client.force_login(admin_user)
    html = client.get(f"/dms/doc/{document.pk}/").content.decode()
    assert (
        'id="retention-end"' in html
        and "2025-12-31" in html
        and "legal hold" not in html.split('id="retention-end"')[1][:200]
    )
    hold(whole_archive=True)
    html = client.get(f"/dms/doc/{document.pk}/").content.decode()
    assert "on legal hold" in html
