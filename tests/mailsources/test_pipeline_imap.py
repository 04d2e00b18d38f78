"""Ingestion end to end against the test Dovecot: the real client factory, the
real pipeline, the real store (SPEC §2, rules 1–4)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archive import processing, storage
from archive.models import Document, DocumentFile, DocumentKind, FieldDefinition, FieldType, FileRole
from mailsources import pipeline
from mailsources.clients.base import TransientSourceError
from mailsources.models import (
    ArchivedMail,
    FolderCursor,
    MailLocation,
    MailSource,
    RunStatus,
    SourceStatus,
)
from tests.mailsources.imap_pipeline import (
    archive_counts,
    archived_raws,
    body_fetches,
    fetched_uids,
    mail,
    raw_mail,
    server_messages,
    small_batches,
    sync,
)

pytestmark = pytest.mark.django_db


def originals_by_uid(source: MailSource, folder: str = "INBOX") -> dict[int, bytes]:
    """{uid: stored original} via the location ledger."""
    result = {}
    for location in MailLocation.objects.filter(source=source, folder=folder).select_related("mail"):
        original = DocumentFile.objects.get(document_id=location.mail.document_id, role=FileRole.ORIGINAL)
        result[int(location.location)] = storage.read_bytes(original.sha256)
    return result


# --------------------------------------------------------------------------- first sync


def test_a_first_sync_archives_every_mail_with_its_fields_and_the_original_bytes(imap_mailbox, imap_source):
    imap_mailbox.append(
        "INBOX",
        mail(
            "=?utf-8?q?Offerte_f=C3=BCr_Z=C3=BCrich?=",
            "Anbei die Offerte.",
            sender="=?iso-8859-1?q?J=FCrg_M=FCller?= <juerg@example.ch>",
            to="=?utf-8?q?Ren=C3=A9?= <rene@example.com>, bob@example.com",
            cc='"Kunz, Anna" <anna@example.com>',
            attachment=("offerte.pdf", b"%PDF-1.4 fake\n"),
            date=datetime(2025, 3, 4, 8, 30, tzinfo=UTC),
        ),
    )
    imap_mailbox.append("INBOX", mail("Already read"), flags="\\Seen")
    # RFC 6532: raw UTF-8 in the header block.
    imap_mailbox.append(
        "INBOX",
        raw_mail(
            "From: Zoë <zoe@example.com>\nTo: alice@example.com\nSubject: Grüße aus Köln\n"
            "Message-ID: <utf8@example.com>".encode()
        ),
    )
    flags_before = imap_mailbox.flags()
    held = server_messages(imap_mailbox)

    run = sync(imap_source)

    assert run.status == RunStatus.OK, run.errors
    assert (run.new, run.duplicate, run.done, run.total) == (3, 0, 3, 3)
    imap_source.refresh_from_db()
    assert imap_source.status == SourceStatus.OK and imap_source.archived_count == 3
    assert imap_source.lease_owner == "" and imap_source.lease_until is None

    # One document per mail, original byte-identical to what the server holds.
    assert originals_by_uid(imap_source) == held
    documents = {d.title: d for d in Document.objects.all()}
    assert set(documents) == {"Offerte für Zürich", "Already read", "Grüße aus Köln"}
    offer = documents["Offerte für Zürich"]
    assert offer.kind == DocumentKind.MAIL and offer.owner_group == imap_source.owner_group
    assert offer.values["from"] == "Jürg Müller <juerg@example.ch>"
    assert offer.values["to"] == "René <rene@example.com>, bob@example.com"
    assert offer.values["cc"] == '"Kunz, Anna" <anna@example.com>'
    assert offer.values["subject"] == "Offerte für Zürich"
    assert offer.date == datetime(2025, 3, 4, 8, 30, tzinfo=UTC)
    assert offer.parse_error == ""
    assert documents["Grüße aus Köln"].values["from"] == "Zoë <zoe@example.com>"
    original = offer.files.get()
    assert original.role == FileRole.ORIGINAL and original.content_type == "message/rfc822"
    assert original.name == "Offerte für Zürich.eml"

    # The ledger and the cursor.
    epoch = str(imap_mailbox.uidvalidity())
    assert sorted(MailLocation.objects.values_list("folder", "epoch", "location")) == [
        ("INBOX", epoch, "1"),
        ("INBOX", epoch, "2"),
        ("INBOX", epoch, "3"),
    ]
    cursor = FolderCursor.objects.get(source=imap_source, folder="INBOX").cursor
    assert cursor["uidvalidity"] == int(epoch) and cursor["last_uid"] == 3

    # BODY.PEEK[]: the server's \Seen flags are untouched.
    assert imap_mailbox.flags() == flags_before
    assert flags_before[1] == set() and flags_before[2] == {"\\Seen"}

    # Fully processed: the attachment becomes a file of the document; the .eml stays.
    processing.mail_documents_process([d.pk for d in documents.values()])
    attachment = offer.files.get(role=FileRole.ATTACHMENT)
    assert attachment.name == "offerte.pdf"
    assert storage.read_bytes(attachment.sha256) == b"%PDF-1.4 fake\n"
    assert offer.files.get(role=FileRole.ORIGINAL).sha256 == original.sha256
    assert not documents["Already read"].files.filter(role=FileRole.ATTACHMENT).exists()


def test_an_incremental_sync_fetches_only_the_new_mails(imap_mailbox, imap_source, imap_commands):
    imap_mailbox.append_many("INBOX", [mail("one"), mail("two")])
    sync(imap_source)
    imap_mailbox.append_many("INBOX", [mail("three"), mail("four")])
    imap_commands.clear()

    run = sync(imap_source)

    assert fetched_uids(imap_commands) == [3, 4]
    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 2, 0)
    assert sorted(Document.objects.values_list("title", flat=True)) == ["four", "one", "three", "two"]
    assert originals_by_uid(imap_source) == server_messages(imap_mailbox)


def test_a_rerun_on_an_unchanged_mailbox_fetches_nothing_and_creates_no_rows(imap_mailbox, imap_source, imap_commands):
    imap_mailbox.append_many("INBOX", [mail(f"mail {i}") for i in range(5)])
    sync(imap_source)
    counts = archive_counts()
    cursor = FolderCursor.objects.get(source=imap_source).cursor
    imap_commands.clear()

    run = sync(imap_source)

    assert (run.status, run.new, run.duplicate, run.done) == (RunStatus.OK, 0, 0, 0)
    assert [c for c in imap_commands if "FETCH" in c[:2]] == []  # not even the sizes
    assert archive_counts() == counts
    assert FolderCursor.objects.get(source=imap_source).cursor == cursor


def test_the_same_mail_in_two_folders_is_one_document_with_two_locations(imap_mailbox, imap_source_factory):
    same = mail("Contract signed")
    imap_mailbox.append("INBOX", same)
    imap_mailbox.append("Projects", same)
    imap_mailbox.append("Projects", mail("Only here"))
    source = imap_source_factory(imap_mailbox, folders="")  # all folders

    run = sync(source)

    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 2, 1)
    assert Document.objects.count() == 2 and ArchivedMail.objects.count() == 2
    archived = ArchivedMail.objects.get(document__title="Contract signed")
    assert sorted(archived.locations.values_list("folder", "location")) == [("INBOX", "1"), ("Projects", "1")]
    assert archived_raws(source).count(server_messages(imap_mailbox)[1]) == 1


def test_a_uidvalidity_change_resyncs_by_content_without_duplicates(imap_mailbox, imap_source):
    imap_mailbox.append_many("INBOX", [mail("a"), mail("b"), mail("c")])
    sync(imap_source)
    old_epoch = str(imap_mailbox.uidvalidity())
    new_epoch = str(imap_mailbox.change_uidvalidity())
    imap_mailbox.append("INBOX", mail("d"))

    run = sync(imap_source)

    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 1, 3)
    assert Document.objects.count() == 4 and ArchivedMail.objects.count() == 4
    assert sorted(Document.objects.values_list("title", flat=True)) == ["a", "b", "c", "d"]
    ledger = sorted(MailLocation.objects.values_list("epoch", "location"))
    assert ledger == sorted([(old_epoch, u) for u in "123"] + [(new_epoch, u) for u in "1234"])
    cursor = FolderCursor.objects.get(source=imap_source).cursor
    assert (str(cursor["uidvalidity"]), cursor["last_uid"]) == (new_epoch, 4)
    assert "resyncing" not in cursor
    assert sorted(archived_raws(imap_source)) == sorted(server_messages(imap_mailbox).values())


def test_a_header_that_does_not_fit_its_mapped_field_is_left_out_and_the_mail_archived(
    imap_mailbox, imap_source_factory
):
    ticket = FieldDefinition.objects.create(name="ticket", label="Ticket", type=FieldType.NUMBER)
    source = imap_source_factory(imap_mailbox, subject_field=ticket)
    imap_mailbox.append_many("INBOX", [mail("4711"), mail("Re: your order")])

    run = sync(source)

    assert (run.status, run.new) == (RunStatus.OK, 2)
    assert Document.objects.get(title="4711").values["ticket"] == "4711"
    assert Document.objects.get(title="Re: your order").values.get("ticket", "") == ""


def test_a_missing_folder_is_reported_and_does_not_stop_the_others(imap_mailbox, imap_source_factory):
    imap_mailbox.append("INBOX", mail("still archived"))
    source = imap_source_factory(imap_mailbox, folders="INBOX, Does/Not/Exist")

    run = sync(source)

    assert run.status == RunStatus.PARTIAL
    assert "Does/Not/Exist" in run.errors and "not found" in run.errors
    assert Document.objects.get().title == "still archived"
    assert FolderCursor.objects.get(source=source, folder="Does/Not/Exist").status == "error"


# --------------------------------------------------------------------------- a cut connection


# Transactional, as in production: outside a transaction the pipeline downloads
# the next batch in a second thread while it commits this one.
@pytest.mark.django_db(transaction=True)
def test_a_connection_cut_in_the_middle_of_a_fetch_loses_and_doubles_nothing(
    dovecot, imap_mailbox, imap_source_factory, tcp_proxy_factory, imap_commands
):
    raws = [mail(f"report {i:02}", "x" * 20_000) for i in range(12)]
    imap_mailbox.append_many("INBOX", raws)
    size = len(server_messages(imap_mailbox)[1])  # all alike
    # Batches of 5 mails: past login and listing (a few KB), the line dies in the
    # middle of the second batch's download.
    proxy = tcp_proxy_factory("127.0.0.1", dovecot.tls_port, cut_after_server_bytes=int(7.5 * size) + 10_000)
    source = imap_source_factory(imap_mailbox, port=proxy.port)

    with pytest.raises(TransientSourceError) as exc_info:
        sync(source, client_factory=small_batches(5))

    assert proxy.cuts == 1 and exc_info.value.code == "connection_lost"
    source.refresh_from_db()
    assert source.status == SourceStatus.RETRYING and "lost" in source.status_message
    assert source.lease_owner == ""  # released for the retry
    failed = source.runs.get()
    assert failed.status == RunStatus.RETRY and failed.finished is not None
    assert (failed.new, Document.objects.count()) == (5, 5)  # the first batch is committed
    assert FolderCursor.objects.get(source=source).cursor["last_uid"] == 5

    proxy.cut_after_server_bytes = None  # the line is back
    imap_commands.clear()
    run = sync(source, client_factory=small_batches(5))

    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 7, 0)
    assert fetched_uids(imap_commands) == list(range(6, 13))  # the committed five not again
    assert Document.objects.count() == 12 and MailLocation.objects.count() == 12
    assert sorted(archived_raws(source)) == sorted(server_messages(imap_mailbox).values())
    source.refresh_from_db()
    assert source.status == SourceStatus.OK and source.archived_count == 12


# --------------------------------------------------------------------------- minimum age


def test_mails_younger_than_the_minimum_age_wait_for_a_later_run(imap_mailbox, imap_source_factory):
    now = datetime.now(UTC)
    imap_mailbox.append("INBOX", mail("old 1"), internal_date=now - timedelta(days=30))
    imap_mailbox.append("INBOX", mail("young"), internal_date=now - timedelta(days=1))
    imap_mailbox.append("INBOX", mail("old 2"), internal_date=now - timedelta(days=10))
    source = imap_source_factory(imap_mailbox, min_age_days=7)

    run = sync(source)

    assert run.new == 2
    assert sorted(Document.objects.values_list("title", flat=True)) == ["old 1", "old 2"]
    assert sync(source).new == 0  # still too young

    MailSource.objects.filter(pk=source.pk).update(min_age_days=0)
    assert sync(source).new == 1
    assert sorted(Document.objects.values_list("title", flat=True)) == ["old 1", "old 2", "young"]
    assert ArchivedMail.objects.count() == 3


# --------------------------------------------------------------------------- move / delete


def corrupt_before_acting(monkeypatch: pytest.MonkeyPatch, uid: str) -> list[str]:
    """Rot the stored copy of ``uid`` between its commit and the action on the server."""
    corrupted: list[str] = []
    act = pipeline.act_after_archive

    def rotting(
        client: Any, source: Any, mailbox: str, folder: str, epoch: str, archived: list[tuple[str, str]]
    ) -> int:
        for sha, location in archived:
            if location == uid and folder == "INBOX":
                path = storage.blob_path(sha)
                os.chmod(path, 0o644)
                path.write_bytes(path.read_bytes().replace(b"Subject:", b"Subjekt:"))
                corrupted.append(sha)
        return act(client, source, mailbox, folder, epoch, archived)

    monkeypatch.setattr(pipeline, "act_after_archive", rotting)
    return corrupted


def test_delete_after_archive_deletes_only_mails_whose_stored_copy_verifies(
    imap_mailbox, imap_source_factory, monkeypatch
):
    now = datetime.now(UTC)
    imap_mailbox.append_many("INBOX", [mail("one"), mail("two"), mail("three")], internal_date=now - timedelta(days=3))
    # Not ours to delete: too young, and flagged \Deleted by someone else's client.
    imap_mailbox.append("INBOX", mail("young"), internal_date=now, flags="\\Deleted")
    held = server_messages(imap_mailbox)
    source = imap_source_factory(imap_mailbox, after_archive="delete", min_age_days=1)
    corrupted = corrupt_before_acting(monkeypatch, uid="2")

    run = sync(source)

    assert len(corrupted) == 1
    assert imap_mailbox.uids("INBOX") == [2, 4]  # the unverified copy stays on the server
    assert run.status == RunStatus.PARTIAL and "failed verification" in run.errors
    assert run.failed == 1
    acted = dict(MailLocation.objects.values_list("location", "acted_at"))
    assert acted["1"] is not None and acted["3"] is not None and acted["2"] is None
    verified = dict(ArchivedMail.objects.values_list("document__title", "verified_at"))
    assert verified["two"] is None and verified["one"] is not None
    # The deleted ones are in the archive, byte for byte.
    assert originals_by_uid(source)[1] == held[1] and originals_by_uid(source)[3] == held[3]


@pytest.mark.parametrize("action", ["delete", "move"])
def test_an_action_never_touches_a_mail_whose_copy_fails_verification(
    action, imap_mailbox, imap_source_factory, monkeypatch
):
    imap_mailbox.append_many("INBOX", [mail("one"), mail("two")])
    imap_mailbox.create_folder("Archived")
    source = imap_source_factory(imap_mailbox, after_archive=action, move_to_folder="Archived")
    corrupt_before_acting(monkeypatch, uid="1")

    run = sync(source)

    assert imap_mailbox.uids("INBOX") == [1]
    assert len(imap_mailbox.uids("Archived")) == (1 if action == "move" else 0)
    assert run.status == RunStatus.PARTIAL and run.failed == 1


def test_move_after_archive_moves_verified_mails_and_never_archives_the_target(
    imap_mailbox, imap_source_factory, imap_commands
):
    imap_mailbox.append_many("INBOX", [mail("one"), mail("two")])
    imap_mailbox.append("Projects", mail("three"))
    imap_mailbox.create_folder("Archived")
    held = sorted(server_messages(imap_mailbox).values()) + list(server_messages(imap_mailbox, "Projects").values())
    source = imap_source_factory(imap_mailbox, folders="", after_archive="move", move_to_folder="Archived")

    run = sync(source)

    assert (run.status, run.new) == (RunStatus.OK, 3)
    assert imap_mailbox.uids("INBOX") == [] and imap_mailbox.uids("Projects") == []
    assert sorted(server_messages(imap_mailbox, "Archived").values()) == sorted(held)
    assert ArchivedMail.objects.filter(verified_at__isnull=False).count() == 3
    assert not MailLocation.objects.filter(folder="Archived").exists()
    # One UID MOVE per folder (INBOX's two mails, Projects' one), each to the target.
    assert [c[:2] for c in imap_commands if c[:2] == ("UID", "MOVE")] == [("UID", "MOVE")] * 2

    imap_commands.clear()
    assert sync(source).new == 0
    assert body_fetches(imap_commands) == []


def test_moving_into_a_folder_that_does_not_exist_keeps_the_mails_and_says_why(imap_mailbox, imap_source_factory):
    imap_mailbox.append_many("INBOX", [mail("one"), mail("two")])
    source = imap_source_factory(imap_mailbox, after_archive="move", move_to_folder="Nowhere")

    run = sync(source)

    assert run.status == RunStatus.PARTIAL and "'Nowhere' was not found" in run.errors
    assert run.new == 2 and Document.objects.count() == 2  # archived all the same
    assert imap_mailbox.uids("INBOX") == [1, 2]


@pytest.mark.parametrize("action, missing", [("delete", "UIDPLUS"), ("move", "MOVE")])
def test_move_and_delete_are_refused_on_a_server_without_move_or_uidplus(
    action, missing, imap_mailbox_factory, imap_source_factory
):
    mailbox = imap_mailbox_factory(capabilities="IMAP4rev1 LITERAL+ IDLE")
    mailbox.append("INBOX", mail("stays"))
    source = imap_source_factory(mailbox, after_archive=action, move_to_folder="Archived")

    run = sync(source)

    assert run.status == RunStatus.FAILED
    source.refresh_from_db()
    assert source.status == SourceStatus.ERROR and source.next_run_at is None
    assert f"does not support {missing}" in source.status_message
    assert "choose 'keep'" in source.status_message
    assert mailbox.uids("INBOX") == [1]
    assert Document.objects.count() == 0


@pytest.mark.django_db
def test_ledger_keys_compare_case_exactly(group_a):
    """Folders "Archive" and "archive" are two folders; ids differing in case are two ids."""
    from archive import services as archive_services
    from archive import storage as archive_storage
    from mailsources.models import ArchivedMail, MailLocation, MailSource

    source = MailSource.objects.create(kind="imap", name="case", owner_group=group_a, host="h", username="u")
    document = archive_services.document_create(owner_group=group_a, values={"title": "x"})
    blob = archive_storage.put_bytes(b"x")
    mail = ArchivedMail.objects.create(source=source, mailbox="u@h", sha256=blob.sha256, document=document, size=1)
    for folder, location in (("Archive", "AbC"), ("archive", "AbC"), ("Archive", "abc")):
        MailLocation.objects.create(
            source=source, mailbox="u@h", folder=folder, epoch="1", location=location, mail=mail
        )
    assert MailLocation.objects.filter(folder="archive").count() == 1
    assert MailLocation.objects.filter(location="abc").count() == 1


def test_processing_runs_under_the_task_name_it_was_queued_with(imap_mailbox, imap_source):
    """The processing task lives in archive.tasks now; messages queued under its first
    name (mailsources.tasks.process_mail_documents) still reach it."""
    from celery import current_app

    from archive import tasks as archive_tasks
    from mailsources import tasks as mailsources_tasks

    imap_mailbox.append("INBOX", mail("with attachment", attachment=("offerte.pdf", b"%PDF-1.4 fake\n")))
    sync(imap_source)
    document = Document.objects.get()

    task = current_app.tasks["mailsources.tasks.process_mail_documents"]
    assert task.run is archive_tasks.process_mail_documents.run is mailsources_tasks.process_mail_documents.run
    task([document.pk])

    assert list(document.files.filter(role=FileRole.ATTACHMENT).values_list("name", flat=True)) == ["offerte.pdf"]
