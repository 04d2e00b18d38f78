"""Dedup per mailbox across sources (SPEC §2 rule 2): one document per distinct
raw message per mailbox. A second source on the same IMAP account (same host
and username) adds locations to the first one's documents, never documents;
another account's copy of the same bytes is a document of its own. Against
the test Dovecot."""

from __future__ import annotations

from django.contrib.auth.models import Group

from archive.models import Document, DocumentFile, FileRole, ProcessingStatus
from mailsources.models import ArchivedMail, MailLocation, SourceKind, mailbox_identity
from tests.mailsources.imap_pipeline import mail, server_messages, sync


def locations(source) -> dict[str, int]:
    """{UID: ArchivedMail id} of the source's ledger."""
    return dict(MailLocation.objects.filter(source=source).values_list("location", "mail_id"))


def test_a_second_source_on_the_same_account_adds_locations_not_documents(imap_mailbox, imap_source_factory):
    raws = [mail(f"order {i}", attachment=(f"order-{i}.csv", f"{i};EUR\n".encode())) for i in range(4)]
    imap_mailbox.append_many("INBOX", raws)
    held = server_messages(imap_mailbox)
    first = imap_source_factory(imap_mailbox, name="Office")
    second = imap_source_factory(
        imap_mailbox, name="Office (accounting)", owner_group=Group.objects.create(name="Accounting")
    )

    run = sync(first)
    assert (run.new, run.duplicate) == (4, 0)
    run = sync(second)
    assert (run.new, run.duplicate) == (0, 4), run.errors

    assert Document.objects.count() == 4 and ArchivedMail.objects.count() == 4
    assert set(ArchivedMail.objects.values_list("source", flat=True)) == {first.pk}
    # Both sources know where each mail is; their locations name the same archived mail.
    assert sorted(int(uid) for uid in locations(second)) == sorted(held)
    assert locations(second) == locations(first)
    second.refresh_from_db()
    assert second.archived_count == 0

    # A new mail: whichever source sees it first archives it, the other adds its location.
    imap_mailbox.append_many("INBOX", [mail("order 4")])
    assert sync(second).new == 1
    run = sync(first)
    assert (run.new, run.duplicate) == (0, 1)
    assert Document.objects.count() == 5 and locations(second) == locations(first)
    assert set(Document.objects.values_list("processing_status", flat=True)) == {ProcessingStatus.PENDING}


def test_the_same_bytes_in_another_account_are_a_document_of_their_own(imap_mailbox_factory, imap_source_factory):
    raw = mail("the same newsletter", message_id="<newsletter-1@example.com>")
    alice, bob = imap_mailbox_factory(), imap_mailbox_factory()
    alice.append_many("INBOX", [raw])
    bob.append_many("INBOX", [raw])
    assert sync(imap_source_factory(alice)).new == 1
    assert sync(imap_source_factory(bob)).new == 1
    assert Document.objects.count() == 2
    assert DocumentFile.objects.filter(role=FileRole.ORIGINAL).values("sha256").distinct().count() == 1


def test_the_mailbox_identity_ignores_case_where_servers_do():
    assert mailbox_identity(SourceKind.IMAP, "alice@Mail.Example.COM.") == "imap:alice@mail.example.com"
    # A server may tell "Alice" from "alice": usernames are compared as given.
    assert mailbox_identity(SourceKind.IMAP, "Alice@mail.example.com") != mailbox_identity(
        SourceKind.IMAP, "alice@mail.example.com"
    )
    assert mailbox_identity(SourceKind.IMAP, "alice@example.com@imap.example.com") == (
        "imap:alice@example.com@imap.example.com"
    )
    assert mailbox_identity(SourceKind.M365, "Bob@Contoso.com") == "m365:bob@contoso.com"
    # An IMAP account and a Microsoft 365 mailbox never share a key.
    assert mailbox_identity(SourceKind.IMAP, "bob@contoso.com") != mailbox_identity(SourceKind.M365, "bob@contoso.com")
    long = mailbox_identity(SourceKind.IMAP, "u" * 300 + "@example.com")
    assert len(long) <= 255 and long.startswith("imap:sha256:")
