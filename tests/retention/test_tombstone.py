"""A mail deleted by retention while it is still on the server is not archived
again: its dedup row and locations stay as a tombstone (document NULL). Against
the test Dovecot, with the real sync."""

from __future__ import annotations

import datetime as dt

from archive.models import Document
from archive.retention import expiry, tasks
from mailsources.models import ArchivedMail, MailLocation
from tests.mailsources.imap_pipeline import mail, sync
from tests.retention.conftest import NOW


def test_a_mail_deleted_by_retention_is_not_archived_again_from_the_server(
    imap_mailbox, imap_source_factory, policy, admin_user, django_capture_on_commit_callbacks, settings
):
    settings.RETENTION_BLOB_GRACE_SECONDS = 0
    old = mail("offer 2001", date=dt.datetime(2001, 2, 3, 9, 0, tzinfo=dt.UTC))
    young = mail("offer 2035", date=dt.datetime(2035, 2, 3, 9, 0, tzinfo=dt.UTC))
    imap_mailbox.append_many("INBOX", [old, young])
    source = imap_source_factory(imap_mailbox)
    assert sync(source).new == 2
    policy()  # CH, 10 years from the end of the year

    expiry_list = expiry.expiry_list_build(NOW)
    assert expiry_list is not None and expiry_list.items.count() == 1
    expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.execute_expiry_list(expiry_list.pk)
    assert list(Document.objects.values_list("title", flat=True)) == ["offer 2035"]
    tombstone = ArchivedMail.objects.get(document__isnull=True)
    assert MailLocation.objects.filter(mail=tombstone).count() == 1

    # The next sync sees the old mail where it was, and a second copy of it delivered
    # again (a new UID): neither becomes a document again.
    imap_mailbox.append_many("INBOX", [old])
    run = sync(source)
    assert (run.new, run.duplicate) == (0, 1), run.errors
    assert Document.objects.count() == 1
    assert MailLocation.objects.filter(mail=tombstone).count() == 2
    # The reconciliation names it as deleted by retention, not as missing from the archive.
    from mailsources import reconcile

    states = [row.state for folder in reconcile.reconcile_source(source) for row in folder.rows]
    assert states == [reconcile.State.DELETED, reconcile.State.DELETED]
