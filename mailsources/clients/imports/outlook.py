"""Outlook items (.msg files, PST/OST folders) to a generated .eml: they have no
original MIME. The item itself is kept as the original (the .msg bytes; for a PST
item, which libpff cannot write out as a .msg, a JSON dump of all the MAPI property
records of the message, its recipients and its attachments), and the .eml made from
its fields with the standard library is the mail that is viewed and searched. Both
are hashed; the location says it was converted."""

from __future__ import annotations

import codecs
import dataclasses
import json
import mimetypes
from collections.abc import Iterator
from datetime import UTC, datetime
from email.headerregistry import Address, Group
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr, getaddresses
from pathlib import Path
from typing import Any

from mailsources.clients.base import PermanentSourceError

# The headers of a transport-header block that the generated .eml takes over as they are.
_TAKEN_HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To", "References")


@dataclasses.dataclass
class OutlookItem:
    subject: str = ""
    sender: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""
    # {"to"|"cc"|"bcc": names} of recipients with no SMTP address (Exchange-only): each
    # is written as an empty group ("Name:;"), so the name is kept and no address made up.
    unaddressed: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    date: datetime | None = None
    message_id: str = ""
    transport_headers: str = ""
    text: str = ""
    html: str = ""
    attachments: list[tuple[str, bytes]] = dataclasses.field(default_factory=list)


def _addresses(value: str) -> list[Address]:
    found = []
    for name, address in getaddresses([value.replace(";", ",")]):
        if "@" not in address:  # an Exchange name or DN alone is no address
            continue
        user, _, domain = address.partition("@")
        try:
            found.append(Address(display_name=name, username=user, domain=domain))
        except (ValueError, IndexError):
            continue
    return found


def eml_from_item(item: OutlookItem, seed: str) -> bytes:
    """The item as an RFC 5322 message: the original transport headers where the
    item has them, else its fields; its plain and HTML bodies, its attachments.
    The same item (``seed``: its hash) always gives the same bytes — MIME boundaries
    are made from it, not drawn at random — so importing it again is a duplicate."""
    message = EmailMessage(policy=default_policy)
    taken: set[str] = set()
    if item.transport_headers.strip():
        parsed = BytesHeaderParser(policy=default_policy).parsebytes(item.transport_headers.encode("utf-8", "replace"))
        for name in _TAKEN_HEADERS:
            value = parsed.get(name)
            if value is not None:
                try:
                    # The parsed header itself, not its str(): that would lose the quotes
                    # of a display name ("Puthigai  Savita") and so change the name.
                    message[name] = value
                    taken.add(name)
                except (ValueError, TypeError):
                    continue
    fallbacks = {
        "From": _addresses(item.sender),
        "To": [*_addresses(item.to), *(Group(name) for name in item.unaddressed.get("to", []))],
        "Cc": [*_addresses(item.cc), *(Group(name) for name in item.unaddressed.get("cc", []))],
        "Bcc": [*_addresses(item.bcc), *(Group(name) for name in item.unaddressed.get("bcc", []))],
        "Subject": item.subject,
        "Date": format_datetime(item.date.astimezone(UTC)) if item.date else "",
        "Message-ID": item.message_id.strip(),
    }
    for name, value in fallbacks.items():
        if name not in taken and value:
            message[name] = value
    message["X-Archive-Converted-From"] = "Outlook item (no original MIME)"
    if item.html and not item.text:
        message.set_content(item.html, subtype="html")  # no empty plain part before it
    else:
        message.set_content(item.text or "")
        if item.html:
            message.add_alternative(item.html, subtype="html")
    for name, data in item.attachments:
        # The type by the file's name (an item's own MIME-type property is often missing).
        guessed, encoding = mimetypes.guess_type(name or "", strict=False)
        maintype, _, subtype = (guessed if guessed and not encoding else "application/octet-stream").partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name or "attachment")
    for number, part in enumerate(message.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_archive_{seed[:32]}_{number}")
    return message.as_bytes()


def msg_read(data: bytes) -> OutlookItem:
    """The fields of an Outlook .msg file; PermanentSourceError when it is not one."""
    import extract_msg

    try:
        msg = extract_msg.openMsg(data, delayAttachments=False)
    except Exception as exc:  # noqa: BLE001 - a hostile file: extract_msg raises many kinds
        raise PermanentSourceError(f"not a readable Outlook .msg file: {exc}", code="file_unreadable") from None
    try:
        item = OutlookItem(
            subject=str(getattr(msg, "subject", "") or ""),
            sender=str(getattr(msg, "sender", "") or ""),
            to=str(getattr(msg, "to", "") or ""),
            cc=str(getattr(msg, "cc", "") or ""),
            date=getattr(msg, "date", None),
            message_id=str(getattr(msg, "messageId", "") or ""),
            transport_headers=str(getattr(msg, "headerText", "") or ""),
            text=str(getattr(msg, "body", "") or ""),
        )
        html = getattr(msg, "htmlBody", None)
        if isinstance(html, bytes):
            item.html = html.decode("utf-8", "replace")
        for attachment in getattr(msg, "attachments", []):
            payload = getattr(attachment, "data", None)
            if isinstance(payload, bytes):
                name = getattr(attachment, "longFilename", None) or getattr(attachment, "shortFilename", None)
                item.attachments.append((str(name or "attachment"), payload))
        return item
    except Exception as exc:  # noqa: BLE001
        raise PermanentSourceError(f"Outlook .msg file unreadable: {exc}", code="file_unreadable") from None
    finally:
        msg.close()


# --------------------------------------------------------------------------- PST


@dataclasses.dataclass
class PstItem:
    index: int  # position in the walk (the checkpoint)
    identifier: str  # libpff's item id (the location)
    folder_path: str
    original: bytes  # the JSON dump of its property records
    item: OutlookItem | None  # None: unreadable (``error`` says why)
    error: str = ""


def pst_open(path: Path) -> Any:
    try:
        import pypff
    except ImportError:
        raise PermanentSourceError(
            "PST/OST import is not available: the libpff-python package is not installed", code="file_unreadable"
        ) from None
    pst = pypff.file()
    try:
        pst.open(str(path))
    except Exception as exc:  # noqa: BLE001 - libpff raises IOError/OSError/... for bad files
        raise PermanentSourceError(
            f"not a readable PST/OST file (corrupt, encrypted or password-protected): {exc}", code="file_unreadable"
        ) from None
    return pst


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _record_set(record_set: Any) -> list[dict[str, Any]]:
    records = []
    for entry in record_set.entries:
        data = entry.data
        records.append(
            {
                "entry_type": entry.entry_type,
                "value_type": entry.value_type,
                "data": data.hex() if isinstance(data, bytes) else None,
            }
        )
    return records


def _records(item: Any) -> list[dict[str, Any]]:
    return [record for record_set in getattr(item, "record_sets", []) or [] for record in _record_set(record_set)]


def _original(message: Any, path: str) -> bytes:
    """The item's MSG-equivalent original: every property record of the message, of
    each recipient and of each attachment (its data included), as JSON."""
    dump: dict[str, Any] = {
        "folder": path,
        "records": _records(message),
        "attachments": [_records(message.get_attachment(n)) for n in range(message.number_of_attachments)],
    }
    try:
        recipients = message.recipients
        record_sets = getattr(recipients, "record_sets", []) if recipients is not None else []
        dump["recipients"] = [_record_set(record_set) for record_set in record_sets or []]
    except OSError as exc:
        # A damaged recipient table: the message, its headers and attachments are still archived.
        dump["recipients_error"] = f"{exc.__class__.__name__}: {exc}"
    return json.dumps(dump, sort_keys=True).encode()


# MAPI properties of an attachment's name: PR_ATTACH_LONG_FILENAME, PR_ATTACH_FILENAME,
# PR_DISPLAY_NAME; 0x1F: UTF-16LE string, 0x1E: 8-bit string.
_ATTACHMENT_NAME_PROPERTIES = (0x3707, 0x3704, 0x3001)


def _attachment_name(attachment: Any) -> str:
    name = _text(getattr(attachment, "long_filename", None)).rstrip("\x00")
    if name:
        return name
    found: dict[int, str] = {}
    for record_set in getattr(attachment, "record_sets", []) or []:
        for entry in record_set.entries:
            data = entry.data
            if entry.entry_type in _ATTACHMENT_NAME_PROPERTIES and isinstance(data, bytes) and data:
                codec = "utf-16-le" if entry.value_type == 0x1F else "cp1252"
                found.setdefault(entry.entry_type, data.decode(codec, "replace").rstrip("\x00"))
    return next((found[key] for key in _ATTACHMENT_NAME_PROPERTIES if found.get(key)), "")


def _strings(record_sets: Any) -> dict[int, str]:
    """The string properties of record sets: {MAPI property id: value}."""
    found: dict[int, str] = {}
    for record_set in record_sets or []:
        for entry in record_set.entries:
            data = entry.data
            if entry.value_type in (0x1F, 0x1E) and isinstance(data, bytes):
                codec = "utf-16-le" if entry.value_type == 0x1F else "cp1252"
                found.setdefault(entry.entry_type, data.decode(codec, "replace").rstrip("\x00"))
    return found


def _mailbox(name: str, *candidates: str) -> str:
    """``"name" <address>`` with the first candidate that is an SMTP address, else ""."""
    address = next((c for c in candidates if "@" in c), "")
    if not address:
        return ""
    # formataddr does not check the address: _addresses drops those that are none.
    return formataddr((name, address)) if name and name != address else address


# MAPI properties: PR_RECIPIENT_TYPE, PR_DISPLAY_NAME, PR_SMTP_ADDRESS, PR_EMAIL_ADDRESS;
# PR_SENDER_NAME, PR_SENDER_SMTP_ADDRESS, PR_SENDER_EMAIL_ADDRESS; PR_INTERNET_MESSAGE_ID.
_RECIPIENT_KINDS = {1: "to", 2: "cc", 3: "bcc"}


def _recipients(message: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    """({"to"|"cc"|"bcc": "a, b"}, {kind: names without an address}) from the recipient
    table (items without transport headers, e.g. Outlook's own sent items); nothing
    when the table cannot be read."""
    found: dict[str, list[str]] = {}
    unaddressed: dict[str, list[str]] = {}
    try:
        recipients = message.recipients
        record_sets = getattr(recipients, "record_sets", []) if recipients is not None else []
        for record_set in record_sets or []:
            strings = _strings([record_set])
            kind = next(
                (e.data for e in record_set.entries if e.entry_type == 0x0C15 and isinstance(e.data, bytes)), b""
            )
            where = _RECIPIENT_KINDS.get(int.from_bytes(kind[:4], "little"), "to")
            mailbox = _mailbox(strings.get(0x3001, ""), strings.get(0x39FE, ""), strings.get(0x3003, ""))
            if mailbox:
                found.setdefault(where, []).append(mailbox)
            elif strings.get(0x3001, "").strip():
                unaddressed.setdefault(where, []).append(strings[0x3001].strip())
    except OSError:
        return {}, {}
    return {kind: ", ".join(mailboxes) for kind, mailboxes in found.items()}, unaddressed


# Windows code page numbers (PR_INTERNET_CPID, PR_MESSAGE_CODEPAGE) that are not "cp<n>".
_CODE_PAGES = {65001: "utf-8", 20127: "ascii", 50220: "iso2022_jp", 51932: "euc_jp", 52936: "hz", 54936: "gb18030"}
_CODE_PAGES.update({28590 + n: f"iso8859_{n}" for n in range(1, 16)})


def _html_codec(record_sets: Any) -> str:
    """The codec of PR_HTML, which is bytes in the item's Internet code page."""
    for property_id in (0x3FDE, 0x3FFD):  # PR_INTERNET_CPID, PR_MESSAGE_CODEPAGE
        for record_set in record_sets or []:
            for entry in record_set.entries:
                if entry.entry_type == property_id and isinstance(entry.data, bytes) and len(entry.data) >= 4:
                    number = int.from_bytes(entry.data[:4], "little")
                    name = _CODE_PAGES.get(number, f"cp{number}")
                    try:
                        return codecs.lookup(name).name
                    except LookupError:
                        continue
    return "utf-8"


def _pst_item(message: Any) -> OutlookItem:
    strings = _strings(message.record_sets)
    html = message.html_body
    recipients, unaddressed = _recipients(message)
    item = OutlookItem(
        subject=_text(message.subject),
        sender=_mailbox(_text(message.sender_name), strings.get(0x5D01, ""), strings.get(0x0C1F, "")),
        to=recipients.get("to", ""),
        cc=recipients.get("cc", ""),
        bcc=recipients.get("bcc", ""),
        unaddressed=unaddressed,
        message_id=strings.get(0x1035, ""),
        transport_headers=_text(message.transport_headers),
        text=_text(message.plain_text_body),
        html=html.decode(_html_codec(message.record_sets), "replace") if isinstance(html, bytes) else _text(html),
        date=message.delivery_time or message.client_submit_time,
    )
    if item.date is not None and item.date.tzinfo is None:
        item.date = item.date.replace(tzinfo=UTC)
    for number in range(message.number_of_attachments):
        attachment = message.get_attachment(number)
        size = attachment.get_size() or 0
        if size:
            attachment.seek_offset(0)  # reading its records (the original) may have moved it
        data = attachment.read_buffer(size) if size else b""
        item.attachments.append((_attachment_name(attachment) or f"attachment-{number + 1}", data))
    return item


def pst_items(pst: Any, start: int) -> Iterator[PstItem]:
    """Every message of every folder, depth first in the file's order, from the
    ``start``-th on. An item libpff cannot read is yielded with its error."""
    index = 0

    def walk(folder: Any, path: str) -> Iterator[PstItem]:
        nonlocal index
        for number in range(folder.number_of_sub_messages):
            current = index
            index += 1
            if current < start:
                continue
            try:
                message = folder.get_sub_message(number)
                identifier = str(message.identifier)
                original = _original(message, path)
                yield PstItem(current, identifier, path, original, _pst_item(message))
            except Exception as exc:  # noqa: BLE001 - one damaged item must not stop the file
                yield PstItem(current, f"index-{current}", path, b"", None, f"{exc.__class__.__name__}: {exc}")
        for number in range(folder.number_of_sub_folders):
            sub = folder.get_sub_folder(number)
            yield from walk(sub, f"{path}/{_text(sub.name)}" if path else _text(sub.name))

    yield from walk(pst.get_root_folder(), "")
