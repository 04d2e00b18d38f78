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


# --- Real-world shapes (issue 15): each one as the mails that showed it were built -----------


def _inner_report() -> EmailMessage:
    """A bounced message as a mailer attaches it: a text, a named report, an empty part."""
    inner = EmailMessage()
    inner["From"] = "MAILER-DAEMON@mx.example.com"
    inner["To"] = "juerg@example.com"
    inner["Subject"] = "Undelivered Mail Returned to Sender"
    inner["Date"] = format_datetime(dt.datetime(2015, 11, 29, 8, 45, 18, tzinfo=dt.UTC))
    inner.set_content("The mail could not be delivered.\nSee the attached report.\n")
    inner.add_attachment(
        b"Reporting-MTA: dns; mx.example.com\nStatus: 5.1.1\n", "text", "plain", filename="DSN57BAC498.txt"
    )
    empty = EmailMessage()
    empty.set_content("")
    inner.attach(empty)  # a 0-byte text part: nothing to offer
    return inner


def nested_mail() -> bytes:
    """multipart/mixed[ text, message/rfc822 "originalmail.eml"[ text, DSN57BAC498.txt, empty ],
    message/rfc822 without a name, Subject "original message"[ text, draft-ietf-mboned-mix-00.txt ] ]"""
    msg = EmailMessage()
    msg["From"] = "Helpdesk <helpdesk@example.com>"
    msg["To"] = "alice@example.com"
    msg["Subject"] = "Fwd: two messages"
    msg["Date"] = format_datetime(dt.datetime(2015, 11, 29, 9, 0, tzinfo=dt.UTC))
    msg.set_content("Both messages are attached.\n")
    msg.add_attachment(_inner_report(), filename="originalmail.eml")
    second = EmailMessage()
    second["From"] = "Bob <bob@example.com>"
    second["To"] = "alice@example.com"
    second["Subject"] = "original message"
    second.set_content("Here is the draft.\n")
    second.add_attachment(b"Internet-Draft: MIX\n", "text", "plain", filename="draft-ietf-mboned-mix-00.txt")
    msg.add_attachment(second)
    return msg.as_bytes()


def forward_as_body() -> bytes:
    """A forward whose whole body is the forwarded message (top-level message/rfc822)."""
    inner = EmailMessage()
    inner["From"] = "Carol <carol@example.com>"
    inner["To"] = "bob@example.com"
    inner["Subject"] = "Quarterly figures"
    inner["Date"] = format_datetime(dt.datetime(2016, 1, 4, 10, 0, tzinfo=dt.UTC))
    inner.set_content("The figures are up 4 %.\n")
    inner.add_attachment(b"q;value\n1;4\n", "text", "csv", filename="figures.csv")
    return (
        b"From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: Fwd: Quarterly figures\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" + inner.as_bytes().replace(b"\n", b"\r\n")
    )


def raw_subject_mail(subject: str, charset: str, body_charset: str | None = None) -> bytes:
    """A Subject in raw 8-bit bytes, no RFC 2047 (what old mailers sent)."""
    ctype = f"text/plain; charset={body_charset}" if body_charset else "text/plain"
    return (
        b"From: sender@example.com\r\nTo: alice@example.com\r\nSubject: "
        + subject.encode(charset)
        + f"\r\nMIME-Version: 1.0\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".encode()
        + b"body\r\n"
    )


def sibling_charset_mail() -> bytes:
    """multipart/alternative: text/plain declares iso-8859-1, text/html declares nothing."""
    text = "Ci vediamo martedì.\r\n".encode("iso-8859-1")
    html = "<p>Ci vediamo <b>martedì</b>.</p>\r\n".encode("iso-8859-1")
    return (
        b"From: it@example.com\r\nTo: alice@example.com\r\nSubject: Riunione\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + text
        + b"--b1\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + html
        + b"--b1--\r\n"
    )


def labelled_mail(text: str, label: str, written_in: str, subtype: str = "plain") -> bytes:
    """A body that says it is in ``label`` and is written in ``written_in``."""
    return (
        b"From: sender@example.com\r\nTo: alice@example.com\r\nSubject: Charset\r\nMIME-Version: 1.0\r\n"
        + f"Content-Type: text/{subtype}; charset={label}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".encode()
        + text.encode(written_in)
        + b"\r\n"
    )
