"""MBOX files per mailbox (mboxrd), for mail clients.

Each message: a ``From `` separator line (``MAILER-DAEMON`` and the archive
time), the original bytes with every line matching ``^>*From `` quoted by one
more ``>`` (mboxrd: reversible, unlike mboxo), a newline if the message lacks
a final one, and an empty line. A reader removes one ``>`` from such lines and
gets the original bytes back."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator

from django.apps import apps
from django.db.models import QuerySet

from archive import storage
from archive.models import Document, DocumentKind

from .sink import Sink, Written

FROM_LINE = re.compile(rb"^>*From ")
NO_MAILBOX = "uploaded"  # mail documents that came by upload, not from a source
_CHUNK = 200


def quoted_lines(lines: Iterable[bytes]) -> Iterator[bytes]:
    last = b""
    for line in lines:
        yield b">" + line if FROM_LINE.match(line) else line
        last = line
    if not last.endswith(b"\n"):
        yield b"\n"


def message_chunks(document: Document) -> Iterator[bytes]:
    original = document.original()
    if original is None:
        return
    yield f"From MAILER-DAEMON {time.asctime(document.created.utctimetuple())}\n".encode()
    with storage.open_blob(original.sha256) as fh:
        yield from quoted_lines(fh)
    yield b"\n"


def mailboxes(documents: QuerySet[Document]) -> dict[str, QuerySet[Document]]:
    """{mailbox: its mail documents} for the selected documents (a mail seen in two
    mailboxes is in both files)."""
    mails = documents.filter(kind=DocumentKind.MAIL)
    result: dict[str, QuerySet[Document]] = {}
    if apps.is_installed("mailsources"):
        location = apps.get_model("mailsources", "MailLocation")._default_manager
        names = location.filter(mail__document__in=mails.order_by().values("pk")).values_list("mailbox", flat=True)
        for name in sorted(set(names)):
            numbers = location.filter(mailbox=name).values("mail__document_id")
            result[name] = mails.filter(pk__in=numbers)
        unassigned = mails.exclude(pk__in=location.values("mail__document_id"))
    else:
        unassigned = mails
    if unassigned.exists():
        result[NO_MAILBOX] = unassigned
    return result


def mbox_name(mailbox: str) -> str:
    return "mbox/" + re.sub(r"[^A-Za-z0-9@._+-]", "_", mailbox)[:200] + ".mbox"


def write_mboxes(sink: Sink, documents: QuerySet[Document]) -> list[Written]:
    written = []
    for mailbox, mails in mailboxes(documents).items():

        def chunks(mails: QuerySet[Document] = mails) -> Iterator[bytes]:
            for document in mails.order_by("pk").iterator(chunk_size=_CHUNK):
                yield from message_chunks(document)

        written.append(sink.write(mbox_name(mailbox), chunks()))
    return written
