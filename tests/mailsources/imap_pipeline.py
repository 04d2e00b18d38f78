"""Helpers and fixtures for the ingestion tests against the test Dovecot.

Loaded by the pipeline test modules with ``pytest_plugins``: IMAP sources as
WebAdmin stores them (password encrypted via ``source_set_secret``), a run of
the real ``pipeline.source_sync`` with the real client factory, what the server
holds byte for byte, and a record of the IMAP commands a run sent.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import pytest

from tests.imap_server import Mailbox, quote_folder_name

_counter = itertools.count(1)


def mail(
    subject: str,
    body: str = "Hello.",
    *,
    sender: str = "Sender <sender@example.com>",
    to: str = "alice@example.com",
    cc: str = "",
    attachment: tuple[str, bytes] | None = None,
    date: datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """A well-formed message with CRLF line ends, unique unless ``message_id`` is given."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2025, 1, 6, 9, 0, tzinfo=UTC))
    msg["Message-ID"] = message_id or f"<test-{next(_counter)}@example.com>"
    msg.set_content(body)
    if attachment is not None:
        name, data = attachment
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def raw_mail(headers: bytes | str, body: bytes | str = b"Body.\r\n") -> bytes:
    """A message from literal header lines (``\\n`` becomes CRLF) and a body."""
    lines = headers.encode() if isinstance(headers, str) else headers
    head = b"\r\n".join(lines.strip(b"\n").split(b"\n"))
    payload = body.encode() if isinstance(body, str) else body
    return head + b"\r\n\r\n" + payload


def server_messages(mailbox: Mailbox, folder: str = "INBOX") -> dict[int, bytes]:
    """{uid: raw} exactly as the server delivers them (``BODY.PEEK[]``, its own connection)."""
    result: dict[int, bytes] = {}
    with mailbox.connect() as conn:
        typ, data = conn.select(quote_folder_name(folder), readonly=True)
        assert typ == "OK", data
        typ, data = conn.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
        assert typ == "OK", data
        for item in data:
            if isinstance(item, tuple):
                head = item[0].decode()
                uid = int(head.split("UID ", 1)[1].split()[0])
                result[uid] = item[1]
    return result


def sync(source: Any, **kwargs: Any) -> Any:
    """One run of the real service with the real client factory, as the task does."""
    from mailsources import pipeline, services  # Django is set up only in Django test runs

    kwargs.setdefault("client_factory", services.client_for_source)
    return pipeline.source_sync(source.pk, **kwargs)


def small_batches(size: int) -> Callable[..., Any]:
    """The real client factory, with batches of ``size`` mails (to see batch boundaries)."""
    from mailsources import services

    def factory(source: Any, mailbox: str = "") -> Any:
        client = services.client_for_source(source, mailbox)
        client.batch_size = size
        return client

    return factory


@pytest.fixture
def imap_source_factory(db: Any, dovecot: Any) -> Callable[..., Any]:
    """make(mailbox, **fields) -> a saved IMAP MailSource for that test mailbox."""
    from django.contrib.auth.models import Group

    from archive.models import FieldDefinition
    from mailsources import services
    from mailsources.models import MailSource

    def make(mailbox: Mailbox, *, password: str | None = None, **fields: Any) -> MailSource:
        group = fields.pop("owner_group", None) or Group.objects.get_or_create(name="Mail")[0]
        mapped = {name: FieldDefinition.objects.get(name=name) for name in ("from", "to", "cc", "subject")}
        values: dict[str, Any] = {
            "kind": "imap",
            "name": f"{mailbox.user.name} mail",
            "host": dovecot.host,
            "port": dovecot.tls_port,
            "security": "tls",
            "username": mailbox.user.name,
            "ca_file": dovecot.ca_file,
            "folders": "INBOX",
            "owner_group": group,
            "from_field": mapped["from"],
            "to_field": mapped["to"],
            "cc_field": mapped["cc"],
            "subject_field": mapped["subject"],
        }
        values.update(fields)
        source = MailSource(**values)
        services.source_set_secret(source, mailbox.user.password if password is None else password)
        source.save()
        return source

    return make


@pytest.fixture
def imap_source(imap_source_factory: Callable[..., Any], imap_mailbox: Mailbox) -> Any:
    return imap_source_factory(imap_mailbox)


def body_fetches(sent: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [c for c in sent if c[:2] == ("UID", "FETCH") and "BODY.PEEK[]" in " ".join(c)]


def fetched_uids(sent: list[tuple[str, ...]]) -> list[int]:
    """The UIDs whose bodies the commands asked for (sets like 1:3,7 expanded)."""
    uids: list[int] = []
    for command in body_fetches(sent):
        for part in command[2].split(","):
            first, _, last = part.partition(":")
            uids.extend(range(int(first), int(last or first) + 1))
    return uids


def archive_counts() -> dict[str, int]:
    """Rows that ingestion creates (the run history aside)."""
    from archive.models import Document, DocumentFile
    from mailsources.models import ArchivedMail, MailLocation

    return {
        "documents": Document.objects.count(),
        "files": DocumentFile.objects.count(),
        "mails": ArchivedMail.objects.count(),
        "locations": MailLocation.objects.count(),
    }


def archived_raws(source: Any) -> list[bytes]:
    """The stored originals of every document of ``source``, in document order."""
    from archive import storage
    from archive.models import FileRole
    from mailsources.models import ArchivedMail

    raws = []
    for archived in ArchivedMail.objects.filter(source=source).select_related("document").order_by("pk"):
        original = archived.document.files.get(role=FileRole.ORIGINAL)
        raws.append(storage.read_bytes(original.sha256))
    return raws
