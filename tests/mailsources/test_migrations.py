"""Migrations keep existing rows valid."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from mailsources.models import CursorStatus, FolderCursor

CURSOR_CHOICES = ("mailsources", "0003_foldercursor_status_choices")


@pytest.mark.django_db(transaction=True)
def test_free_text_cursor_statuses_become_choices(group_a):
    executor = MigrationExecutor(connection)
    before = sorted(executor.loader.graph.node_map[CURSOR_CHOICES].parents)[0].key
    latest = executor.loader.graph.leaf_nodes("mailsources")
    executor.migrate([before])
    try:
        apps = executor.loader.project_state([before]).apps
        Source = apps.get_model("mailsources", "MailSource")
        Cursor = apps.get_model("mailsources", "FolderCursor")
        source = Source.objects.create(kind="imap", name="old", owner_group_id=group_a.pk)
        for folder, status, message in [
            ("INBOX", "ok", ""),
            ("Gone", "error", "folder not found"),
            ("Odd", "stalled", "the server hung up"),
            ("Blank", "", ""),
        ]:
            Cursor.objects.create(source=source, mailbox="m", folder=folder, status=status, status_message=message)

        executor = MigrationExecutor(connection)
        executor.migrate([CURSOR_CHOICES])
        statuses = dict(FolderCursor.objects.values_list("folder", "status"))
    finally:
        MigrationExecutor(connection).migrate(latest)
    assert statuses == {
        "INBOX": CursorStatus.OK,
        "Gone": CursorStatus.ERROR,
        "Odd": CursorStatus.ERROR,  # with a message: something went wrong
        "Blank": CursorStatus.OK,
    }


DEDUP = ("mailsources", "0005_mailbox_key_and_processing_status")
BEFORE_DEDUP = [("mailsources", "0004_mailsource_queued_at"), ("archive", "0006_document_processing_status")]


@pytest.mark.django_db(transaction=True)
def test_duplicates_of_two_sources_on_one_account_merge_into_the_oldest_without_losing_a_location(group_a):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE_DEDUP)
    try:
        apps = executor.loader.project_state(BEFORE_DEDUP).apps
        Source = apps.get_model("mailsources", "MailSource")
        Mail = apps.get_model("mailsources", "ArchivedMail")
        Location = apps.get_model("mailsources", "MailLocation")
        Doc = apps.get_model("archive", "Document")
        File = apps.get_model("archive", "DocumentFile")

        def imap(name, host):
            return Source.objects.create(
                kind="imap", name=name, host=host, username="alice", owner_group_id=group_a.pk, archived_count=3
            )

        office, accounting = imap("office", "Mail.Example.com"), imap("accounting", "mail.example.com")
        other = Source.objects.create(
            kind="imap", name="bob", host="mail.example.com", username="bob", owner_group_id=group_a.pk
        )
        m365 = Source.objects.create(kind="m365", name="m365", mailboxes="Carol@Contoso.com", owner_group_id=group_a.pk)

        def archived(source, mailbox, sha, *, parse_error="", attachment=None, notes=""):
            doc = Doc.objects.create(kind="mail", owner_group_id=group_a.pk, parse_error=parse_error, notes=notes)
            File.objects.create(document=doc, role="original", name="m.eml", sha256=sha, size=10)
            if attachment:
                File.objects.create(
                    document=doc,
                    role="attachment",
                    name=attachment,
                    sha256="c" * 64,
                    size=3,
                    part="2",
                    extraction_status="done",
                )
            return Mail.objects.create(source=source, mailbox=mailbox, sha256=sha, document=doc, size=10)

        a, b = "a" * 64, "b" * 64
        kept = archived(office, "alice@Mail.Example.com", a)  # the oldest, not processed yet
        copy = archived(accounting, "alice@mail.example.com", a, attachment="invoice.pdf", notes="checked")
        Location.objects.create(
            source=office, mailbox="alice@Mail.Example.com", folder="INBOX", epoch="1", location="1", mail=kept
        )
        for folder, uid in [("INBOX", "7"), ("Archive", "3")]:
            Location.objects.create(
                source=accounting, mailbox="alice@mail.example.com", folder=folder, epoch="9", location=uid, mail=copy
            )
        only_accounting = archived(accounting, "alice@mail.example.com", b, attachment="scan.png")
        bobs = archived(other, "bob@mail.example.com", a)  # another account: not a duplicate
        full = archived(
            office,
            "alice@Mail.Example.com",
            "d" * 64,
            parse_error="processing failed: OSError: [Errno 28] No space left on device",
        )
        big = archived(
            office, "alice@Mail.Example.com", "e" * 64, parse_error="not parsed: 200 bytes is over the limit"
        )
        carol = archived(m365, "carol@contoso.com", a)
        upload = Doc.objects.create(kind="document", owner_group_id=group_a.pk)

        MigrationExecutor(connection).migrate([DEDUP])
        apps = MigrationExecutor(connection).loader.project_state([DEDUP]).apps
        Mail = apps.get_model("mailsources", "ArchivedMail")
        Location = apps.get_model("mailsources", "MailLocation")
        Doc = apps.get_model("archive", "Document")
        Source = apps.get_model("mailsources", "MailSource")

        mails = {m.pk: m for m in Mail.objects.all()}
        assert copy.pk not in mails and not Doc.objects.filter(pk=copy.document_id).exists()
        assert mails[kept.pk].mailbox_key == "imap:alice@mail.example.com"
        assert mails[only_accounting.pk].mailbox_key == "imap:alice@mail.example.com"
        assert mails[bobs.pk].mailbox_key == "imap:bob@mail.example.com"
        assert mails[carol.pk].mailbox_key == "m365:carol@contoso.com"
        # Every location survives, now on the kept mail.
        assert sorted(
            Location.objects.filter(mail_id=kept.pk).values_list("source_id", "folder", "location")
        ) == sorted([(office.pk, "INBOX", "1"), (accounting.pk, "INBOX", "7"), (accounting.pk, "Archive", "3")])
        assert Location.objects.count() == 3
        # The kept document has the duplicate's attachment and notes.
        kept_doc = Doc.objects.get(pk=kept.document_id)
        assert sorted(kept_doc.files.values_list("role", "name")) == [
            ("attachment", "invoice.pdf"),
            ("original", "m.eml"),
        ]
        assert kept_doc.notes == "checked"
        # To be extracted again, so that the kept document is indexed with it.
        assert kept_doc.files.get(role="attachment").extraction_status == "pending"
        assert Source.objects.get(pk=accounting.pk).archived_count == 2  # one of its three was a duplicate
        assert Source.objects.get(pk=office.pk).archived_count == 3

        statuses = dict(Doc.objects.values_list("pk", "processing_status"))
        assert statuses[kept.document_id] == "done"  # it has the attachment now
        assert statuses[only_accounting.document_id] == "done"
        assert statuses[bobs.document_id] == "pending"  # no parts: cannot tell, the sweep processes it
        assert statuses[full.document_id] == "pending"  # an outage, not the mail
        assert Doc.objects.get(pk=full.document_id).parse_error == ""
        assert statuses[big.document_id] == "failed_permanent"
        assert Doc.objects.get(pk=big.document_id).processing_error.startswith("not parsed: 200 bytes")
        assert statuses[upload.pk] == "none"
    finally:
        MigrationExecutor(connection).migrate(latest)
    # The new unique key holds: one row per mailbox and message.
    from mailsources.models import ArchivedMail

    assert ArchivedMail.objects.filter(mailbox_key="imap:alice@mail.example.com", sha256=a).count() == 1
