"""An import into a mailbox that an IMAP source archives (against the test Dovecot):
the mails the IMAP source archived get the import's locations, not second documents;
and an MBOX written by Dovecot itself (``doveadm backup`` to mbox) is read as
Python's own ``mailbox`` reader reads it."""

from __future__ import annotations

import mailbox
from email import message_from_bytes

from archive import storage
from archive.models import Document, FileRole
from mailsources import pipeline
from mailsources.imports import import_client, import_source_create
from mailsources.models import ArchivedMail, MailLocation, RunStatus
from tests.mailsources.imap_pipeline import mail, server_messages, sync
from tests.mailsources.import_files import write_mbox


def import_run(path, address, group):
    source = import_source_create(path, address, group)
    run = pipeline.source_sync(source.pk, client_factory=lambda s, a: import_client(s))
    assert run is not None
    return source, run


def test_an_import_into_an_imap_synced_mailbox_adds_locations_not_documents(tmp_path, imap_mailbox, imap_source):
    imap_mailbox.append_many("INBOX", [mail(f"synced {i}") for i in range(3)])
    assert sync(imap_source).new == 3
    held = list(server_messages(imap_mailbox).values())
    # An old export of the same mailbox: the three mails as the server holds them, and one more.
    write_mbox(tmp_path / "old.mbox", [*held, mail("only in the export")])

    source, run = import_run(tmp_path / "old.mbox", imap_mailbox.user.name, imap_source.owner_group)

    assert (run.new, run.duplicate, run.status) == (1, 3, RunStatus.OK), run.errors
    assert Document.objects.count() == 4 and ArchivedMail.objects.count() == 4
    assert source.mailbox_identity() == imap_source.mailbox_identity()
    for archived in ArchivedMail.objects.filter(source=imap_source):
        assert {loc.source_id for loc in archived.locations.all()} == {imap_source.pk, source.pk}
    # The IMAP source's next run finds nothing new either.
    assert sync(imap_source).new == 0


def test_an_mbox_written_by_dovecot_is_read_as_its_content_lengths_say(dovecot, imap_mailbox, group_a):
    """Dovecot writes mboxcl2: a Content-Length per message, ``From `` body lines left
    unquoted (the first mail's), and a "folder internal data" pseudo message first."""
    raws = [mail("dovecot 0", body="Line\nFrom the middle of the mail\n")]
    raws += [mail(f"dovecot {i}", body=f"Plain mail {i}\n") for i in (1, 2)]
    imap_mailbox.append_many("INBOX", raws)
    # Where the mail user (doveadm writes as it) may write: beside the server's own mail.
    export = dovecot.root / f"export-{imap_mailbox.user.name}"
    export.mkdir()
    export.chmod(0o777)
    dovecot.doveadm_run("backup", "-u", imap_mailbox.user.name, f"mbox:{export}:INBOX={export}/inbox:LAYOUT=maildir++")
    assert b"\nFrom the middle of the mail\n" in (export / "inbox").read_bytes()
    # Python's reader (which splits at every "From " line) agrees where no body has one.
    box = mailbox.mbox(str(export / "inbox"), create=False)
    theirs = [box.get_bytes(key) for key in box.keys()]
    box.close()

    source, run = import_run(export / "inbox", "someone@example.com", group_a)

    assert (run.new, run.status) == (3, RunStatus.OK), run.errors
    stored = [
        storage.read_bytes(loc.mail.document.files.get(role=FileRole.ORIGINAL).sha256)
        for loc in MailLocation.objects.filter(source=source).order_by("pk")
    ]
    assert stored[1:] == theirs[-2:]
    for original, archived in zip(raws, stored, strict=True):
        mine, server = message_from_bytes(archived), message_from_bytes(original)
        for header in ("Subject", "Message-ID", "From", "To", "Date"):
            assert mine[header] == server[header]
        assert mine.get_payload() == server.get_payload().replace("\r\n", "\n")
        assert "Content-Length" in mine  # Dovecot's own header, archived as in the file
