"""Mails archived with their places (mailbox, folder) in mailsources' location
ledger, as a sync records them, and threads of replies (issue 15)."""

from __future__ import annotations

import datetime as dt
import hashlib
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, parsedate_to_datetime

from archive.models import Document
from mailsources.models import ArchivedMail, MailLocation, MailSource
from tests.archive.mail_samples import archive_mail


def thread_mail(
    subject: str,
    message_id: str,
    *,
    reply_to: str | None = None,
    references: tuple[str, ...] = (),
    sender: str = "juerg@example.com",
    day: int = 1,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "alice@example.com"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(dt.datetime(2024, 3, day, 9, 0, tzinfo=dt.UTC))
    msg["Message-ID"] = message_id
    if reply_to:
        msg["In-Reply-To"] = reply_to
    if references:
        msg["References"] = " ".join(references)
    msg.set_content(f"Body of {subject} ({message_id})\n")
    return msg.as_bytes()


def source_for(group, mailbox: str = "alice@imap.example.com") -> MailSource:
    user, _, host = mailbox.partition("@")
    source, _ = MailSource.objects.get_or_create(
        name=f"source {mailbox}", defaults={"kind": "imap", "owner_group": group, "host": host, "username": user}
    )
    return source


def mail_values(raw: bytes, subject: str, sender: str = "") -> dict[str, str]:
    """Title, subject, From and Date as a source's mapping fills them."""
    headers = BytesHeaderParser().parsebytes(raw)
    values = {"title": subject, "subject": subject, "from": sender or str(headers.get("From", ""))}
    if headers.get("Date"):
        values["date"] = parsedate_to_datetime(str(headers["Date"])).isoformat()
    return values


def archived_at(
    raw: bytes,
    group,
    places: list[tuple[str, str]],
    *,
    subject: str = "mail",
    message_id: str = "",
    sender: str = "",
) -> Document:
    """A mail document seen at each (mailbox, folder) of ``places``; From and
    Date from its headers, as a source's mapping fills them."""
    document = archive_mail(raw, group, values=mail_values(raw, subject, sender))
    sha = hashlib.sha256(raw).hexdigest()
    by_mailbox: dict[str, ArchivedMail] = {}
    for n, (mailbox, folder) in enumerate(places):
        source = source_for(group, mailbox)
        mail = by_mailbox.get(mailbox) or ArchivedMail.objects.create(
            source=source,
            mailbox=mailbox,
            mailbox_key=f"imap:{mailbox}",
            sha256=sha,
            document=document,
            message_id=message_id,
            size=len(raw),
        )
        by_mailbox[mailbox] = mail
        MailLocation.objects.create(
            source=source, mailbox=mailbox, folder=folder, epoch="1", location=f"{document.pk}-{n}", mail=mail
        )
    return document
