"""Mails for the viewer tests: built with the standard library, archived the
way the ingestion pipeline archives them (the .eml as the original file)."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from email.utils import format_datetime

from archive import services, storage
from archive.models import Document, DocumentKind, FileRole

# A 1×1 transparent PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def html_mail(
    html: str,
    *,
    text: str | None = "plain text version",
    subject: str = "Grüße aus Zürich",
    inline_cid: str | None = "logo@example.com",
    attachment: tuple[str, str, bytes] | None = ("report.pdf", "application/pdf", b"%PDF-1.4 report"),
) -> bytes:
    """multipart/mixed[ multipart/related[ multipart/alternative[text, html], image ], attachment ]"""
    msg = EmailMessage()
    # Non-ASCII names and subject: the policy writes them as RFC 2047 encoded words.
    msg["From"] = "Jürg Müller <juerg@example.com>"
    msg["Subject"] = subject
    msg["To"] = "Alice <alice@example.com>, bob@example.com"
    msg["Cc"] = "Carol <carol@example.com>"
    msg["Date"] = format_datetime(dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC))
    msg["Message-ID"] = "<viewer-test@example.com>"
    if text is not None:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html, subtype="html")
    if inline_cid:
        html_part = msg.get_body(("html",))
        assert html_part is not None
        html_part.add_related(PNG, "image", "png", cid=f"<{inline_cid}>")
    if attachment:
        name, ctype, data = attachment
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def text_mail(text: str, subject: str = "Plain") -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = "alice@example.com"
    msg["Subject"] = subject
    msg.set_content(text)
    return msg.as_bytes()


def archive_mail(raw: bytes, owner_group, *, parse_error: str = "", values: dict | None = None) -> Document:
    blob = storage.put_bytes(raw)
    return services.document_create(
        owner_group=owner_group,
        values={"title": "mail", **(values or {})},
        kind=DocumentKind.MAIL,
        parse_error=parse_error,
        files=[services.NewFile(name="mail.eml", blob=blob, content_type="message/rfc822", role=FileRole.ORIGINAL)],
    )
