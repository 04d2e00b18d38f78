"""Showing an archived mail in the View tab: the header block, the body as
text or as sanitised HTML, inline (``cid:``) images and the attachments.

Everything is derived from the ``.eml`` original (the record). Processing
stores what the View tab needs (``MailView``: headers, the sanitised bodies,
the part list) and the parts as files, so a processed mail is shown without
parsing it; a mail not processed yet (or processed before ``MailView``
existed) is parsed per request, as before.

The HTML body is hostile input. Three independent layers keep it inert:
``nh3`` with an explicit e-mail allowlist (``archive.mailhtml``), an ``<iframe
sandbox>`` without scripts or same-origin (the template), and a strict CSP on
the body response (``body_csp``). Remote content (images, CSS ``url()``) is
blocked unless the user asks for it per message: loading it tells the sender
that, when and where the mail was read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core import signing
from django.http import HttpResponse
from django.template.defaultfilters import filesizeformat
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import escape
from django.utils.http import content_disposition_header
from django.utils.translation import gettext

from archive import storage
from archive.mail import MailHeaders, MailPart, NestedMail, ParsedMail, mail_limits, parse_headers, parse_message
from archive.mailhtml import REMOTE_PLACEHOLDER, frame_script, normalise_cid, sanitize_mail_html, text_to_html
from archive.models import Document, DocumentFile, FileRole, MailView, MailViewEncoder
from archive.serving import FILE_CSP, is_inline_type

HEAD_BYTES = 1024 * 1024


# --- Reading the message -------------------------------------------------------------------


def _view_max_bytes() -> int:
    return int(getattr(settings, "MAIL_MAX_MESSAGE_BYTES", 100 * 1024 * 1024))


@dataclasses.dataclass
class MailAttachment:
    part: str
    name: str
    content_type: str
    size: int
    inline: bool = False  # an image the body shows through its Content-ID
    url: str = ""  # where it downloads (set by ``mail_summary``)
    parent: str = ""  # the attached message it is in ("" for the mail's own)
    depth: int = 0  # how many attached messages deep


@dataclasses.dataclass
class LoadedMail:
    headers: MailHeaders
    parsed: ParsedMail | None
    # Why the mail cannot be shown (completely); empty when all is well.
    problem: str = ""
    # What processing stored (``mail_view_data``); then ``parsed`` is None.
    stored: dict[str, Any] | None = None

    @property
    def parts(self) -> list[MailPart]:
        return [] if self.parsed is None else self.parsed.attachments + self.parsed.inline

    @property
    def has_text(self) -> bool:
        if self.stored is not None:
            return bool(self.stored["body"]["has_text"])
        return self.parsed is not None and bool(self.parsed.text)


def _problem(document: Document, headers_error: str, parse_error: str) -> str:
    problems = []
    if document.parse_error:
        problems.append(
            gettext("When it was archived, the message could not be read: %(error)s.") % {"error": document.parse_error}
        )
    if headers_error and headers_error not in document.parse_error:
        problems.append(gettext("The message headers could not be read: %(error)s.") % {"error": headers_error})
    if parse_error and parse_error not in document.parse_error:
        problems.append(gettext("The message could not be read completely: %(error)s.") % {"error": parse_error})
    return " ".join(problems)


def mail_load(document: Document, original: DocumentFile, *, use_stored: bool = True) -> LoadedMail:
    """The mail's headers and body: what processing stored, else its MIME tree
    parsed from the ``.eml``; never raises on a bad message."""
    if use_stored:
        stored = (
            MailView.objects.filter(original=original, schema=MAIL_VIEW_SCHEMA).values_list("data", flat=True).first()
        )
        if stored is not None:
            headers = _headers_loads(stored["headers"])
            return LoadedMail(
                headers=headers, parsed=None, problem=_problem(document, headers.error, stored["error"]), stored=stored
            )
    try:
        if original.size > _view_max_bytes():
            # Parsing it would hold the request (and memory) for long; its
            # header block is at the start and still worth showing.
            with storage.open_blob(original.sha256) as fh:
                head = fh.read(HEAD_BYTES)
            return LoadedMail(
                headers=parse_headers(head),
                parsed=None,
                problem=gettext("The message is too large to show in the browser (%(size)s).")
                % {"size": filesizeformat(original.size)},
            )
        raw = storage.read_bytes(original.sha256)
    except storage.StorageError:
        return LoadedMail(
            headers=MailHeaders(),
            parsed=None,
            problem=gettext("The original message is missing from the archive store."),
        )
    headers = parse_headers(raw)
    parsed = parse_message(raw, mail_limits())
    return LoadedMail(headers=headers, parsed=parsed, problem=_problem(document, headers.error, parsed.error))


def is_inline_image(content_type: str) -> bool:
    """An image a browser may show from our origin (never SVG, which can script)."""
    return content_type.startswith("image/") and is_inline_type(content_type)


class _Part(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def content_id(self) -> str: ...


_P = TypeVar("_P", bound=_Part)


def _cid_map(parts: Sequence[_P]) -> dict[str, _P]:
    found: dict[str, _P] = {}
    for part in parts:
        if part.content_id:
            found.setdefault(normalise_cid(part.content_id), part)
    return found


@dataclasses.dataclass
class MailBody:
    html: str  # the inner HTML of the frame's <body>
    remote_blocked: int = 0
    cids_used: set[str] = dataclasses.field(default_factory=set)
    format: str = "empty"  # "html", "text" or "empty"

    @property
    def script(self) -> str:
        """The frame's one script (``static/mail-frame.js``): it posts the body's height."""
        return frame_script()[0]


def _empty_body() -> str:
    return f'<p class="mail-empty">{escape(gettext("This mail has no text to show."))}</p>'


def _render(
    text: str, html: str, *, cid_url: Callable[[str], str | None], allow_remote: bool, prefer_text: bool
) -> MailBody:
    if html and not (prefer_text and text):
        clean = sanitize_mail_html(html, cid_url=cid_url, allow_remote=allow_remote)
        return MailBody(html=clean.html, remote_blocked=clean.remote_blocked, cids_used=clean.cids_used, format="html")
    if text:
        return MailBody(html=text_to_html(text), format="text")
    return MailBody(html="")


def _nested_headers_html(headers: MailHeaders) -> str:
    rows = [(gettext("From"), headers.from_), (gettext("To"), headers.to)]
    if headers.cc:
        rows.append(("CC", headers.cc))
    rows.append((gettext("Date"), headers.date.strftime("%a, %d %b %Y %H:%M %z") if headers.date else ""))
    rows.append((gettext("Subject"), headers.subject or gettext("(no subject)")))
    cells = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value or '—')}</dd>" for name, value in rows)
    return f'<dl class="mail-nested-headers">{cells}</dl>'


def _nested_section(path: str, name: str, headers: MailHeaders, body_html: str) -> str:
    title = (
        escape(gettext("Attached message: %(name)s") % {"name": name}) if path else escape(gettext("Forwarded message"))
    )
    return (
        f'<section class="mail-nested" data-part="{escape(path)}"><p class="mail-nested-title">{title}</p>'
        f"{_nested_headers_html(headers)}{body_html or _empty_body()}</section>"
    )


def _combined(main: MailBody, nested: list[tuple[str, str, MailHeaders, MailBody]]) -> MailBody:
    """The mail's own body, then each attached message as mail (its headers and body)."""
    if not main.html and not nested:
        return MailBody(html=_empty_body())
    out = MailBody(
        html=main.html if main.html or not nested else "",
        remote_blocked=main.remote_blocked,
        cids_used=set(main.cids_used),
        format=main.format,
    )
    sections = []
    for path, name, headers, body in nested:
        sections.append(_nested_section(path, name, headers, body.html))
        out.remote_blocked += body.remote_blocked
        out.cids_used |= body.cids_used
        if out.format == "empty":
            out.format = body.format
    out.html += "".join(sections)
    return out


def mail_body(
    loaded: LoadedMail,
    *,
    part_url: Callable[[str], str],
    allow_remote: bool = False,
    prefer_text: bool = False,
) -> MailBody:
    """The body to show: sanitised HTML when the mail has it (unless the user
    asked for text), else its text; attached messages below it, as mail."""
    if loaded.stored is not None:
        return _stored_body(
            loaded.stored["body"], part_url=part_url, allow_remote=allow_remote, prefer_text=prefer_text
        )
    parsed = loaded.parsed
    if parsed is None:
        return MailBody(html=_empty_body())
    cids = _cid_map(loaded.parts)

    def cid_url(cid: str) -> str | None:
        part = cids.get(cid)
        # Only images are embedded; anything else stays an attachment.
        if part is None or not is_inline_image(part.content_type):
            return None
        return part_url(part.path)

    def render(text: str, html: str) -> MailBody:
        return _render(text, html, cid_url=cid_url, allow_remote=allow_remote, prefer_text=prefer_text)

    return _combined(
        render(parsed.text, parsed.html),
        [(n.path, n.name, n.headers, render(n.text, n.html)) for n in parsed.nested],
    )


def mail_attachments(loaded: LoadedMail, cids_used: set[str]) -> list[MailAttachment]:
    """What the attachment list shows: every part that is not the body, the
    parts of an attached message right after its ``.eml``; inline images that
    the body shows are marked so."""
    return _grouped(_attachments(loaded, cids_used))


def _grouped(attachments: list[MailAttachment]) -> list[MailAttachment]:
    by_parent: dict[str, list[MailAttachment]] = {}
    paths = {a.part for a in attachments}
    for attachment in attachments:
        # A part whose message is not listed (the whole body) is the mail's own.
        by_parent.setdefault(attachment.parent if attachment.parent in paths else "", []).append(attachment)
    out: list[MailAttachment] = []
    seen: set[str] = set()

    def add(parent: str, depth: int) -> None:
        for attachment in by_parent.get(parent, []):
            if attachment.part in seen:
                continue
            seen.add(attachment.part)
            attachment.depth = depth
            out.append(attachment)
            if attachment.part in by_parent and attachment.part != parent:
                add(attachment.part, depth + 1)

    add("", 0)
    out.extend(a for a in attachments if a.part not in seen)
    return out


def _attachments(loaded: LoadedMail, cids_used: set[str]) -> list[MailAttachment]:
    if loaded.stored is not None:
        return [
            MailAttachment(
                part=part["path"],
                name=part["name"],
                content_type=part["content_type"],
                size=part["size"],
                inline=bool(part["content_id"]) and normalise_cid(part["content_id"]) in cids_used,
                parent=part.get("parent", ""),
            )
            for part in loaded.stored["parts"]
        ]
    out = []
    for part in loaded.parts:
        inline = bool(part.content_id) and normalise_cid(part.content_id) in cids_used
        out.append(
            MailAttachment(
                part=part.path,
                name=part.filename or f"part-{part.path}",
                content_type=part.content_type,
                size=len(part.payload),
                inline=inline,
                parent=part.parent,
            )
        )
    return out


@dataclasses.dataclass
class PartContent:
    name: str
    content_type: str
    # Either a stored file (the mail was processed) or bytes from the .eml.
    file: DocumentFile | None = None
    payload: bytes = b""


_PART_PATH = re.compile(r"^[0-9]{1,4}(\.[0-9]{1,4}){0,40}$")


def mail_part_get(document: Document, original: DocumentFile, path: str) -> PartContent | None:
    """One MIME part of the mail by its path ("1.2"): the stored file when the
    pipeline has extracted it, else read from the ``.eml`` itself."""
    if not _PART_PATH.match(path):
        return None
    stored = document.files.filter(role=FileRole.ATTACHMENT, part=path, version=original.version).order_by("id").first()
    if stored is not None and storage.exists(stored.sha256):
        return PartContent(name=stored.name, content_type=stored.content_type, file=stored)
    loaded = mail_load(document, original, use_stored=False)
    for part in loaded.parts:
        if part.path == path:
            return PartContent(
                name=part.filename or f"part-{part.path}", content_type=part.content_type, payload=part.payload
            )
    return None


# --- Signed image URLs ----------------------------------------------------------------------
# The body frame has an opaque origin (sandbox without allow-same-origin), so
# browsers treat its image requests as cross-site and send no SameSite session
# cookie. The body view, after the access check, signs (document, user) into
# the URLs of the images it shows; the part view checks access again for that
# user. Short-lived, and only good for inline images (see views.mail_part).
_PART_TOKEN_SALT = "archive.mailview.part-token"
PART_TOKEN_MAX_AGE = 3600


def part_token(number: int, user_id: int) -> str:
    return signing.dumps([number, user_id], salt=_PART_TOKEN_SALT)


def part_token_user(token: str, number: int) -> AbstractBaseUser | None:
    """The user a valid token for document ``number`` was issued to."""
    try:
        signed_number, user_id = signing.loads(token, salt=_PART_TOKEN_SALT, max_age=PART_TOKEN_MAX_AGE)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if signed_number != number:
        return None
    return get_user_model().objects.filter(pk=user_id, is_active=True).first()


def part_url_builder(number: int, user: AbstractBaseUser | AnonymousUser | None) -> Callable[[str], str]:
    """URLs of the mail's parts for its body frame; signed for a logged-in user
    (a visitor of a published mail needs no session anyway)."""
    token = part_token(number, user.pk) if user is not None and user.is_authenticated else ""

    def build(path: str) -> str:
        url = reverse("archive:mail_part", args=[number, path])
        return f"{url}?t={token}" if token else url

    return build


def serve_part_bytes(content: PartContent, *, download: bool) -> HttpResponse:
    """A part read from the .eml, hardened like a stored file (``serve_file``)."""
    inline = not download and is_inline_image(content.content_type)
    response = HttpResponse(
        content.payload, content_type=content.content_type if inline else "application/octet-stream"
    )
    response["Content-Disposition"] = content_disposition_header(not inline, content.name) or "attachment"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = FILE_CSP
    response["Cache-Control"] = "private, max-age=3600"
    return response


# The View tab lists this many of a mail's parts; the rest behind "Show all N"
# (``mail_summary(all_parts=True)``): a list of hundreds of parts costs the
# page more than everything else on it.
PARTS_SHOWN = 50


@dataclasses.dataclass
class MailSummary:
    """What the View tab shows around the body frame."""

    headers: MailHeaders
    problem: str
    attachments: list[MailAttachment]  # the first ``PARTS_SHOWN`` unless all were asked for
    remote_blocked: int  # remote images the default rendering blocks
    body_format: str
    has_text_alternative: bool  # an HTML mail that also has a text part
    attachments_total: int = 0  # how many parts the mail lists in all

    @property
    def attachments_hidden(self) -> int:
        return self.attachments_total - len(self.attachments)


def mail_summary(document: Document, original: DocumentFile, *, all_parts: bool = False) -> MailSummary:
    loaded = mail_load(document, original)
    # The frame renders the body itself; this rendering only counts what it blocks.
    body = mail_body(loaded, part_url=lambda path: f"/{path}/")
    listed = mail_attachments(loaded, body.cids_used)
    attachments = listed if all_parts else listed[:PARTS_SHOWN]
    # One reverse() for all: a mail may list hundreds of parts.
    prefix = reverse("archive:mail_part", args=[document.pk, "1"]).removesuffix("1/")
    for attachment in attachments:
        attachment.url = f"{prefix}{attachment.part}/?download=1"
    return MailSummary(
        headers=loaded.headers,
        problem=loaded.problem,
        attachments=attachments,
        attachments_total=len(listed),
        remote_blocked=body.remote_blocked,
        body_format=body.format,
        has_text_alternative=body.format == "html" and loaded.has_text,
    )


# --- What processing stores for the view ----------------------------------------------------
# The sanitised bodies are rendered once, by processing, with marker URLs where
# the body's images go: the real part URLs carry a token signed per viewer and
# request, the placeholder's URL depends on the static files. A view swaps the
# markers for them; the marker's nonce is random per mail, so no mail can
# predict one (and a marker in the text would only become a URL as text).
# 2: attached messages (``nested``, parts' ``parent``), charsets guessed.
MAIL_VIEW_SCHEMA = 2
# A view row bigger than this (a giant HTML body) is not stored: such a mail is
# parsed per request, as before processing.
MAIL_VIEW_MAX_BYTES = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class PartInfo:
    """A part as the View tab lists it, without its bytes."""

    path: str
    content_type: str
    filename: str
    content_id: str
    size: int
    parent: str = ""


def _marker(nonce: str, target: str) -> str:
    return f"/mail-view-{nonce}/{target}/"


def _stored_bodies(
    text: str, html: str, parts: Sequence[PartInfo], nested: Sequence[NestedMail] = (), nonce: str | None = None
) -> dict[str, Any]:
    nonce = nonce or secrets.token_hex(16)
    body: dict[str, Any] = {"nonce": nonce, "has_text": bool(text), "has_html": bool(html)}
    if html:
        cids = _cid_map(parts)

        def cid_url(cid: str) -> str | None:
            part = cids.get(cid)
            if part is None or not is_inline_image(part.content_type):
                return None
            return _marker(nonce, part.path)

        placeholder = _marker(nonce, "remote")
        blocked = sanitize_mail_html(html, cid_url=cid_url, placeholder_url=placeholder)
        body.update(html=blocked.html, remote_blocked=blocked.remote_blocked, cids_used=sorted(blocked.cids_used))
        if blocked.remote_blocked:
            # Loading remote images differs only where one was blocked.
            body["html_remote"] = sanitize_mail_html(
                html, cid_url=cid_url, allow_remote=True, placeholder_url=placeholder
            ).html
    if text:
        body["text_html"] = text_to_html(text)
    if nested:
        body["nested"] = [
            {
                "path": n.path,
                "name": n.name,
                "headers": _headers_dumps(n.headers),
                "body": _stored_bodies(n.text, n.html, parts, nonce=nonce),
            }
            for n in nested
        ]
    return body


def _unmarked(html: str, nonce: str, part_url: Callable[[str], str]) -> str:
    def replace(match: re.Match[str]) -> str:
        target = match.group(1)
        return static(REMOTE_PLACEHOLDER) if target == "remote" else part_url(target)

    return re.sub(re.escape(f"/mail-view-{nonce}/") + r"(remote|[0-9.]+)/", replace, html)


def _stored_body(
    body: dict[str, Any], *, part_url: Callable[[str], str], allow_remote: bool, prefer_text: bool
) -> MailBody:
    def render(one: dict[str, Any]) -> MailBody:
        if one["has_html"] and not (prefer_text and one["has_text"]):
            remote = allow_remote and "html_remote" in one
            html = _unmarked(one["html_remote"] if remote else one["html"], body["nonce"], part_url)
            return MailBody(
                html=html,
                remote_blocked=0 if allow_remote else one["remote_blocked"],
                cids_used=set(one["cids_used"]),
                format="html",
            )
        if one["has_text"]:
            return MailBody(html=one["text_html"], format="text")
        return MailBody(html="")

    nested = [(n["path"], n["name"], _headers_loads(n["headers"]), render(n["body"])) for n in body.get("nested", [])]
    return _combined(render(body), nested)


def _headers_dumps(headers: MailHeaders) -> dict[str, Any]:
    fields = dataclasses.asdict(headers)
    fields["date"] = headers.date.isoformat() if headers.date else None
    return fields


def _headers_loads(fields: dict[str, Any]) -> MailHeaders:
    date = fields.get("date")
    return MailHeaders(**{**fields, "date": dt.datetime.fromisoformat(date) if date else None})


def mail_view_data(
    headers: MailHeaders,
    *,
    text: str,
    html: str,
    parts: Sequence[PartInfo],
    error: str,
    nested: Sequence[NestedMail] = (),
) -> dict[str, Any] | None:
    """What ``mail_load`` reads instead of the ``.eml``: built by processing from
    what it parsed (``parts``: the attachments, then the inline images, as
    ``ParsedMail`` lists them; ``nested``: its attached messages). None when
    it would be too big to keep."""
    data = {
        "headers": _headers_dumps(headers),
        "error": error,
        "body": _stored_bodies(text, html, parts, nested),
        "parts": [
            {
                "path": part.path,
                "name": part.filename or f"part-{part.path}",
                "content_type": part.content_type,
                "content_id": part.content_id,
                "size": part.size,
                "parent": part.parent,
            }
            for part in parts
        ],
    }
    if len(json.dumps(data, cls=MailViewEncoder).encode()) > MAIL_VIEW_MAX_BYTES:
        return None
    return data


def mail_view_store(original_id: int, data: dict[str, Any] | None) -> None:
    """Keep (or replace) the view of the mail in file ``original_id``; call in
    the transaction that records its parts."""
    if data is None:
        MailView.objects.filter(original_id=original_id).delete()
        return
    MailView.objects.update_or_create(original_id=original_id, defaults={"schema": MAIL_VIEW_SCHEMA, "data": data})
