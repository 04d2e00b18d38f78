"""Test messages: one made to order (:func:`make_mime`) or many small ones (:func:`iter_mime_batch`)."""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage

from .model import (
    _now,
)


def make_mime(
    subject: str = "Test message",
    *,
    sender: str = "Sender <sender@example.org>",
    to: str = "alice@contoso.com",
    body: str = "Hello.\n",
    date: datetime | None = None,
    message_id: str | None = None,
    attachments: Iterable[tuple[str, bytes]] = (),
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """Build an RFC 822 message like the ones Exchange hands out from ``$value``."""
    msg = EmailMessage()
    msg["Received"] = "from mail.example.org (10.0.0.1) by EXCH01.contoso.com; " + (
        email.utils.format_datetime(date or _now())
    )
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date or _now())
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="example.org")
    msg["X-MS-Exchange-Organization-AuthAs"] = "Anonymous"
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, content in attachments:
        msg.add_attachment(content, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes()


def iter_mime_batch(
    count: int, *, start: datetime | None = None, size: int = 2_000
) -> Iterator[tuple[bytes, datetime]]:
    """``count`` distinct small messages with increasing received times (for benches)."""
    start = start or (_now() - timedelta(days=30))
    filler = ("Lorem ipsum dolor sit amet. " * (size // 28 + 1))[:size]
    for i in range(count):
        received = start + timedelta(seconds=i)
        raw = (
            f"From: Sender {i % 97} <sender{i % 97}@example.org>\r\n"
            f"To: alice@contoso.com\r\n"
            f"Subject: Bench message {i}\r\n"
            f"Date: {email.utils.format_datetime(received)}\r\n"
            f"Message-ID: <bench-{i}@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{filler}\r\n"
        ).encode()
        yield raw, received
