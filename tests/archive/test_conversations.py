"""Conversations (issue 15): the thread by Message-ID / In-Reply-To /
References, only of mails the user may open; the Fields tab's date picker and
its error messages."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone

from archive import conversations, selectors
from archive.forms import DocumentFieldsForm, date_from_picker
from archive.models import Document
from tests.archive.mail_samples import archive_mail
from tests.archive.mailbox_samples import archived_at, mail_values, thread_mail

BOX = "alice@imap.example.com"


def archived(raw: bytes, group, subject: str, message_id: str, *, ledger: bool = True) -> Document:
    if ledger:
        return archived_at(raw, group, [(BOX, "INBOX")], subject=subject, message_id=message_id)
    return archive_mail(raw, group, values=mail_values(raw, subject))


@pytest.fixture
def thread(group_a, group_b):
    """root ← reply ← reply-to-reply (References only); a forward with another
    subject that names the root; an unrelated mail of the same subject; a reply
    in another group (invisible to alice)."""
    root = archived(thread_mail("Offer", "<root@x>", day=1), group_a, "Offer", "<root@x>")
    reply = archived(
        thread_mail("Re: Offer", "<r1@x>", reply_to="<root@x>", references=("<root@x>",), day=2),
        group_a,
        "Re: Offer",
        "<r1@x>",
        ledger=False,  # an uploaded .eml: no ledger row
    )
    deep = archived(
        thread_mail("AW: Re: Offer", "<r2@x>", references=("<root@x>", "<r1@x>"), day=3),
        group_a,
        "AW: Re: Offer",
        "<r2@x>",
    )
    other = archived(thread_mail("Offer", "<other@x>", day=4), group_a, "Offer", "<other@x>")
    foreign = archived(thread_mail("Re: Offer", "<f@x>", reply_to="<root@x>", day=5), group_b, "Re: Offer", "<f@x>")
    return {"root": root, "reply": reply, "deep": deep, "other": other, "foreign": foreign}


def thread_of(user, document: Document) -> list[int]:
    return [m.document.pk for m in conversations.conversation(selectors.documents_visible_to(user), document)]


def test_the_thread_follows_the_ids_from_any_of_its_mails(alice, thread):
    expected = [thread["root"].pk, thread["reply"].pk, thread["deep"].pk]  # oldest first
    for name in ("root", "reply", "deep"):
        assert thread_of(alice, thread[name]) == expected, name


def test_a_same_subject_mail_outside_the_ids_is_not_in_the_thread(alice, thread):
    assert thread["other"].pk not in thread_of(alice, thread["root"])
    assert thread_of(alice, thread["other"]) == []  # alone: no conversation tab


def test_a_mail_the_user_may_not_open_is_not_listed(alice, bob, thread):
    assert thread["foreign"].pk not in thread_of(alice, thread["root"])
    assert thread_of(bob, thread["foreign"]) == []  # bob sees only his own mail


def test_a_forward_under_another_subject_joins_through_the_ledgers_message_id(alice, group_a, thread):
    fwd = archived(
        thread_mail("Fwd: Angebot", "<fw@x>", references=("<r1@x>",), day=6), group_a, "Fwd: Angebot", "<fw@x>"
    )
    # Its References name only the reply, which has no ledger row (an upload),
    # and "Angebot" is no title of the thread: nothing to find it by.
    assert thread_of(alice, fwd) == []
    fwd2 = archived(
        thread_mail("Fwd: Angebot", "<fw2@x>", references=("<root@x>",), day=7), group_a, "Fwd: Angebot", "<fw2@x>"
    )
    # The root has a ledger row with its Message-ID; the root's subject then finds
    # its replies, and "Angebot" the first forward (it names the reply).
    whole = [thread["root"].pk, thread["reply"].pk, thread["deep"].pk, fwd.pk, fwd2.pk]
    assert thread_of(alice, fwd2) == whole


def test_the_document_view_has_a_conversation_tab(client, alice, thread):
    client.force_login(alice)
    html = client.get(reverse("archive:document", args=[thread["reply"].pk])).content.decode()
    assert 'id="tab-conversation">Conversation (3)<' in html
    assert reverse("archive:document", args=[thread["root"].pk]) in html
    assert reverse("archive:document", args=[thread["foreign"].pk]) not in html
    lonely = client.get(reverse("archive:document", args=[thread["other"].pk])).content.decode()
    assert "tab-conversation" not in lonely


def test_base_subject_strips_reply_and_forward_prefixes():
    assert conversations.base_subject("AW: Re[2]: Fwd: Offer") == "Offer"
    assert conversations.base_subject("Re:Offer") == "Offer"
    assert conversations.base_subject("Regarding the offer") == "Regarding the offer"


# --- The Fields tab's date picker ------------------------------------------------------------


def date_field(stored: str):
    from archive.models import FieldDefinition

    form = DocumentFieldsForm(definitions=list(FieldDefinition.objects.all()), initial_values={"date": stored})
    return form["date"]


def test_a_moment_is_a_datetime_local_picker_in_the_archive_time_zone(db, settings):
    settings.TIME_ZONE = "Europe/Zurich"
    timezone.activate(zoneinfo.ZoneInfo("Europe/Zurich"))
    try:
        field = date_field("2015-11-29T08:45:18+00:00")
        html = str(field)
        assert 'type="datetime-local"' in html and 'step="1"' in html
        assert 'value="2015-11-29T09:45:18"' in html  # 08:45 UTC is 09:45 in Zurich
        assert "Europe/Zurich" in field.help_text
    finally:
        timezone.deactivate()


def test_a_day_is_a_date_picker(db):
    html = str(date_field("2024-06-03"))
    assert 'type="date"' in html and 'value="2024-06-03"' in html
    assert 'type="date"' in str(date_field(""))


def test_picked_values_are_stored_as_iso_with_the_zone_made_explicit(settings):
    settings.TIME_ZONE = "Europe/Zurich"
    timezone.activate(zoneinfo.ZoneInfo("Europe/Zurich"))
    try:
        stored = "2015-11-29T08:45:18+00:00"
        assert date_from_picker("2015-11-29T09:45:18", stored) == stored  # unchanged: kept as it was
        assert date_from_picker("2015-11-29T10:00", stored) == "2015-11-29T10:00:00+01:00"
        assert date_from_picker("2015-07-01T10:00:00", "") == "2015-07-01T10:00:00+02:00"  # summer time
        assert date_from_picker("2024-06-03", stored) == "2024-06-03"
        assert date_from_picker("", stored) == ""
        assert date_from_picker("garbage-but-long-text", stored) == "garbage-but-long-text"  # left to validation
    finally:
        timezone.deactivate()


def test_saving_a_picked_date_through_the_fields_tab(client, alice, make_document, settings):
    settings.TIME_ZONE = "Europe/Zurich"
    document = make_document(values={"date": "2015-11-29T09:45:18+01:00"})
    client.force_login(alice)
    url = reverse("archive:document_fields", args=[document.pk])
    client.post(url, {"title": document.title, "date": "2016-01-02T03:04:05"})
    document.refresh_from_db()
    assert document.values["date"] == "2016-01-02T03:04:05+01:00"
    assert document.date == dt.datetime(2016, 1, 2, 2, 4, 5, tzinfo=dt.UTC)


def test_a_field_error_names_the_field_once(client, alice, make_document):
    from archive.models import FieldDefinition, FieldType

    FieldDefinition.objects.create(name="department", label="Department", type=FieldType.SELECTION, choices="Buying")
    document = make_document()
    client.force_login(alice)
    response = client.post(
        reverse("archive:document_fields", args=[document.pk]), {"title": "x", "department": "Sales"}, follow=True
    )
    text = " ".join(str(m) for m in response.context["messages"])
    assert "Department: 'Sales' is not one of the allowed values" in text
    assert "Department: Department" not in text


def test_a_whole_thread_is_not_marked_cut(client, alice, thread):
    found = conversations.conversation(selectors.documents_visible_to(alice), thread["reply"])
    assert len(found) == 3 and not found.cut
    client.force_login(alice)
    html = client.get(reverse("archive:document", args=[thread["reply"].pk])).content.decode()
    assert 'id="conversation-cut"' not in html


def test_a_thread_cut_by_the_bounds_says_so(client, alice, thread, monkeypatch):
    monkeypatch.setattr(conversations, "MAX_CANDIDATES", 1)  # a round takes one candidate
    found = conversations.conversation(selectors.documents_visible_to(alice), thread["root"])
    assert found.cut and len(found) < 3
    client.force_login(alice)
    html = client.get(reverse("archive:document", args=[thread["root"].pk])).content.decode()
    assert 'id="conversation-cut"' in html and "search for its subject" in html
