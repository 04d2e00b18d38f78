"""Showing an archived mail in the View tab: the header block, the body as
text or as sanitised HTML, inline (``cid:``) images and the attachments.

Everything is derived from the ``.eml`` original (the record). Processing
stores what the View tab needs (``MailView``: headers, the sanitised bodies,
the part list) and the parts as files, so a processed mail is shown without
parsing it; a mail not processed yet (or processed before ``MailView``
existed) is parsed per request, as before.

The HTML body is hostile input. Three independent layers keep it inert:
``nh3`` with an explicit e-mail allowlist (this module), an ``<iframe
sandbox>`` without scripts or same-origin (the template), and a strict CSP on
the body response (``body_csp``). Remote content (images, CSS ``url()``) is
blocked unless the user asks for it per message: loading it tells the sender
that, when and where the mail was read.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

import nh3
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core import signing
from django.http import HttpResponse
from django.template.defaultfilters import filesizeformat
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import escape, urlize
from django.utils.http import content_disposition_header

from archive import storage
from archive.mail import MailHeaders, MailPart, NestedMail, ParsedMail, mail_limits, parse_headers, parse_message
from archive.models import Document, DocumentFile, FileRole, MailView, MailViewEncoder
from archive.serving import FILE_CSP, is_inline_type

# --- The allowlist -------------------------------------------------------------------------
# What mail clients need to lay out a message; nothing that runs, submits, embeds
# or fetches. Tags not listed are dropped with their markup but keep their text.
MAIL_TAGS = frozenset(
    {
        "a",
        "abbr",
        "acronym",
        "address",
        "article",
        "aside",
        "b",
        "bdi",
        "bdo",
        "big",
        "blockquote",
        "br",
        "caption",
        "center",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "font",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "main",
        "mark",
        "nav",
        "ol",
        "p",
        "pre",
        "q",
        "rp",
        "rt",
        "ruby",
        "s",
        "samp",
        "section",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "time",
        "tr",
        "tt",
        "u",
        "ul",
        "var",
        "wbr",
    }
)
# Dropped together with their content: code, stylesheets (ammonia cannot filter
# whole stylesheets, and they may @import or url() remote content), embedded
# documents and foreign markup whose text would only be noise.
MAIL_DROP_WITH_CONTENT = frozenset(
    {
        "script",
        "style",
        "title",
        "svg",
        "math",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "noscript",
        "noembed",
        "noframes",
        "template",
        "textarea",
        "select",
        "xmp",
        "plaintext",
        "button",
        "datalist",
        "audio",
        "video",
        "canvas",
        "map",
    }
)
_LAYOUT = {"align", "valign", "width", "height", "bgcolor", "border"}
MAIL_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "class", "dir", "lang", "title", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "border", "align", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": _LAYOUT | {"cellpadding", "cellspacing", "summary", "frame", "rules"},
    "tr": _LAYOUT,
    "td": _LAYOUT | {"colspan", "rowspan", "nowrap", "scope", "abbr"},
    "th": _LAYOUT | {"colspan", "rowspan", "nowrap", "scope", "abbr"},
    "thead": _LAYOUT,
    "tbody": _LAYOUT,
    "tfoot": _LAYOUT,
    "col": _LAYOUT | {"span"},
    "colgroup": _LAYOUT | {"span"},
    "div": _LAYOUT,
    "p": _LAYOUT,
    "center": _LAYOUT,
    "hr": {"align", "color", "noshade", "size", "width"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"type", "value"},
    "time": {"datetime"},
    "details": {"open"},
}
# Inline CSS that shapes text and boxes. Not listed, so removed: anything that
# loads (background-image, list-style-image, border-image, cursor, mask,
# filter, content) and anything that lets a mail draw over the page
# (position, z-index, transform).
MAIL_STYLE_PROPERTIES = frozenset(
    {
        "background",
        "background-color",
        "border",
        "border-bottom",
        "border-bottom-color",
        "border-bottom-left-radius",
        "border-bottom-right-radius",
        "border-bottom-style",
        "border-bottom-width",
        "border-collapse",
        "border-color",
        "border-left",
        "border-left-color",
        "border-left-style",
        "border-left-width",
        "border-radius",
        "border-right",
        "border-right-color",
        "border-right-style",
        "border-right-width",
        "border-spacing",
        "border-style",
        "border-top",
        "border-top-color",
        "border-top-left-radius",
        "border-top-right-radius",
        "border-top-style",
        "border-top-width",
        "border-width",
        "box-sizing",
        "caption-side",
        "clear",
        "color",
        "direction",
        "display",
        "empty-cells",
        "float",
        "font",
        "font-family",
        "font-size",
        "font-style",
        "font-variant",
        "font-weight",
        "height",
        "letter-spacing",
        "line-height",
        "list-style",
        "list-style-position",
        "list-style-type",
        "margin",
        "margin-bottom",
        "margin-left",
        "margin-right",
        "margin-top",
        "max-height",
        "max-width",
        "min-height",
        "min-width",
        "opacity",
        "overflow",
        "overflow-wrap",
        "padding",
        "padding-bottom",
        "padding-left",
        "padding-right",
        "padding-top",
        "table-layout",
        "text-align",
        "text-decoration",
        "text-indent",
        "text-transform",
        "vertical-align",
        "white-space",
        "width",
        "word-break",
        "word-spacing",
        "word-wrap",
    }
)
# CSS functions a declaration may call; anything else (expression(), image-set(),
# image(), element(), var(), env()…) drops the declaration.
_CSS_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "calc", "min", "max", "clamp", "url"})
_CSS_FUNCTION = re.compile(r"([a-z0-9_-]+)\s*\(", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"')]*))\s*\)", re.IGNORECASE)
# Escapes and comments could hide a url( or an expression( from the checks
# (ammonia decodes escapes after our filter has run): such declarations go.
_CSS_SUSPICIOUS = ("\\", "/*", "*/", "javascript", "vbscript", "expression", "behavior", "binding")
_SAFE_CSS_URL = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!$&*+,=%-]+$")

REMOTE_PLACEHOLDER = "mail-remote-image.svg"
_URLIZE_MAX = 512 * 1024
HEAD_BYTES = 1024 * 1024

BODY_STYLE = (
    "html{background:#fff;color:#1b1f24}"
    "body{margin:12px;font:15px/1.45 system-ui,sans-serif;overflow-wrap:anywhere}"
    "pre.mail-text{white-space:pre-wrap;font:14px/1.45 ui-monospace,monospace;margin:0}"
    "img{max-width:100%;height:auto}"
    ".mail-empty{color:#59636e;font-style:italic}"
    ".mail-nested{margin:18px 0 0;padding:10px 0 0 12px;border-top:1px solid #d0d7de;border-left:3px solid #d0d7de}"
    ".mail-nested-title{margin:0 0 6px;font-weight:600;color:#59636e}"
    ".mail-nested-headers{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0 0 10px;"
    "padding:6px 10px;background:#f6f8fa;border-radius:4px}"
    ".mail-nested-headers dt{color:#59636e;font-weight:600}.mail-nested-headers dd{margin:0}"
)


@dataclasses.dataclass
class SanitizedHtml:
    html: str
    remote_blocked: int = 0
    # Content-IDs the HTML referenced (their images are shown in the body).
    cids_used: set[str] = dataclasses.field(default_factory=set)


def _is_remote(url: str) -> bool:
    lowered = url.lower()
    return lowered.startswith(("http://", "https://", "//"))


def _remote_url(url: str) -> str:
    # A scheme-relative URL would inherit our scheme; say which one it is.
    return "https:" + url if url.startswith("//") else url


def normalise_cid(value: str) -> str:
    """A Content-ID or a ``cid:`` URL's target, comparable: RFC 2392 URLs are
    %-encoded, headers carry angle brackets."""
    return unquote(value.strip()).strip().strip("<>").strip().lower()


def sanitize_mail_html(
    html: str,
    *,
    cid_url: Callable[[str], str | None],
    allow_remote: bool = False,
    placeholder_url: str | None = None,
) -> SanitizedHtml:
    """``html`` (a whole mail body, hostile) as a safe fragment.

    ``cid_url`` maps a normalised Content-ID to the URL serving that part, or
    None when the message has no such part. Remote images become
    ``placeholder_url`` unless ``allow_remote``; remote CSS backgrounds are
    removed unless ``allow_remote``.
    """
    result = SanitizedHtml(html="")
    placeholder = placeholder_url if placeholder_url is not None else static(REMOTE_PLACEHOLDER)
    # Relative URLs in the output are only the ones produced here: a mail's own
    # relative link would resolve against our site.
    produced: set[str] = set()

    def local(url: str) -> str:
        produced.add(url)
        return url

    def image_url(value: str) -> str | None:
        value = value.strip()
        if value.lower().startswith("cid:"):
            cid = normalise_cid(value[4:])
            url = cid_url(cid)
            if url is None:
                return None
            result.cids_used.add(cid)
            return local(url)
        if _is_remote(value):
            if allow_remote:
                return _remote_url(value)
            result.remote_blocked += 1
            return local(placeholder)
        return None  # data:, javascript:, relative, file:…

    def style_value(value: str) -> str | None:
        kept = []
        for declaration in value.split(";"):
            name, sep, rest = declaration.partition(":")
            name = name.strip().lower()
            rest = rest.strip()
            if not sep or not name or not rest:
                continue
            lowered = rest.lower()
            if name not in MAIL_STYLE_PROPERTIES or any(s in lowered for s in _CSS_SUSPICIOUS):
                continue
            if any(f.lower() not in _CSS_FUNCTIONS for f in _CSS_FUNCTION.findall(rest)):
                continue
            if "url" in lowered:
                rewritten = _style_urls(rest)
                if rewritten is None:
                    continue
                rest = rewritten
            kept.append(f"{name}:{rest}")
        return ";".join(kept) or None

    def _style_urls(value: str) -> str | None:
        # Every url( must be one we understand; count each as one url() token.
        if value.lower().count("url(") != len(_CSS_URL.findall(value)):
            return None
        blocked = False

        def replace(match: re.Match[str]) -> str:
            nonlocal blocked
            url = next((g for g in match.groups() if g is not None), "")
            target = image_url(url)
            if target is None or target == placeholder or not _SAFE_CSS_URL.match(target):
                blocked = True
                return ""
            return f'url("{target}")'

        rewritten = _CSS_URL.sub(replace, value)
        return None if blocked else rewritten

    def attribute(tag: str, name: str, value: str) -> str | None:
        if name == "style":
            return style_value(value)
        if tag == "img" and name == "src":
            return image_url(value)
        if tag == "a" and name == "href":
            scheme = value.strip().lower()
            return value.strip() if scheme.startswith(("http://", "https://", "mailto:")) else None
        return value

    result.html = nh3.clean(
        html,
        tags=set(MAIL_TAGS),
        clean_content_tags=set(MAIL_DROP_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in MAIL_ATTRIBUTES.items()},
        attribute_filter=attribute,
        url_schemes={"http", "https", "mailto", "cid"},
        url_relative=lambda url: url if url in produced else None,
        filter_style_properties=set(MAIL_STYLE_PROPERTIES),
        # Links leave the sandboxed frame for a new tab, without telling the
        # target where they came from.
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    return result


def text_to_html(text: str) -> str:
    """A text/plain body as HTML: escaped, web and mail addresses linked (the
    links, too, open in a new tab)."""
    # urlize is slow on huge inputs; a giant text body is shown unlinked.
    linked = urlize(text, nofollow=False, autoescape=True) if len(text) < _URLIZE_MAX else escape(text)
    cleaned = nh3.clean(
        linked,
        tags={"a"},
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
        url_relative="deny",
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    return f'<pre class="mail-text">{cleaned}</pre>'


FRAME_SCRIPT = "mail-frame.js"


@functools.cache
def frame_script() -> tuple[str, str]:
    """The frame-height script (a static file of ours) and its CSP hash source."""
    path = settings.BASE_DIR / "static" / FRAME_SCRIPT
    text = path.read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return text, f"'sha256-{digest}'"


def body_csp(*, allow_remote: bool) -> str:
    """The body frame's own policy. The one script it runs is ours, allowed by
    its hash (it reports the body's height to the View tab): no script of the
    mail, inline, external, in an event handler or a ``javascript:`` URL, can
    run. ``sandbox`` repeats the iframe's sandbox (scripts, but an opaque
    origin: no cookies, no access to the page) so the body stays inert when
    opened on its own."""
    images = "'self' https: http:" if allow_remote else "'self'"
    return (
        f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; script-src {frame_script()[1]}; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; "
        "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox"
    )


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
        problems.append(f"When it was archived, the message could not be read: {document.parse_error}.")
    if headers_error and headers_error not in document.parse_error:
        problems.append(f"The message headers could not be read: {headers_error}.")
    if parse_error and parse_error not in document.parse_error:
        problems.append(f"The message could not be read completely: {parse_error}.")
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
                problem=f"The message is too large to show in the browser ({filesizeformat(original.size)}).",
            )
        raw = storage.read_bytes(original.sha256)
    except storage.StorageError:
        return LoadedMail(
            headers=MailHeaders(), parsed=None, problem="The original message is missing from the archive store."
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


_EMPTY_BODY = '<p class="mail-empty">This mail has no text to show.</p>'


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
    rows = [("From", headers.from_), ("To", headers.to)]
    if headers.cc:
        rows.append(("CC", headers.cc))
    rows.append(("Date", headers.date.strftime("%a, %d %b %Y %H:%M %z") if headers.date else ""))
    rows.append(("Subject", headers.subject or "(no subject)"))
    cells = "".join(f"<dt>{name}</dt><dd>{escape(value or '—')}</dd>" for name, value in rows)
    return f'<dl class="mail-nested-headers">{cells}</dl>'


def _nested_section(path: str, name: str, headers: MailHeaders, body_html: str) -> str:
    title = f"Attached message: {escape(name)}" if path else "Forwarded message"
    return (
        f'<section class="mail-nested" data-part="{escape(path)}"><p class="mail-nested-title">{title}</p>'
        f"{_nested_headers_html(headers)}{body_html or _EMPTY_BODY}</section>"
    )


def _combined(main: MailBody, nested: list[tuple[str, str, MailHeaders, MailBody]]) -> MailBody:
    """The mail's own body, then each attached message as mail (its headers and body)."""
    if not main.html and not nested:
        return MailBody(html=_EMPTY_BODY)
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
        return MailBody(html=_EMPTY_BODY)
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


@dataclasses.dataclass
class MailSummary:
    """What the View tab shows around the body frame."""

    headers: MailHeaders
    problem: str
    attachments: list[MailAttachment]
    remote_blocked: int  # remote images the default rendering blocks
    body_format: str
    has_text_alternative: bool  # an HTML mail that also has a text part


def mail_summary(document: Document, original: DocumentFile) -> MailSummary:
    loaded = mail_load(document, original)
    # The frame renders the body itself; this rendering only counts what it blocks.
    body = mail_body(loaded, part_url=lambda path: f"/{path}/")
    attachments = mail_attachments(loaded, body.cids_used)
    # One reverse() for all: a mail may list hundreds of parts.
    prefix = reverse("archive:mail_part", args=[document.pk, "1"]).removesuffix("1/")
    for attachment in attachments:
        attachment.url = f"{prefix}{attachment.part}/?download=1"
    return MailSummary(
        headers=loaded.headers,
        problem=loaded.problem,
        attachments=attachments,
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
