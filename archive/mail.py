"""Reading archived mail: header fields for the archive (fast, headers only) and
the full MIME structure (body, attachments, inline images) under limits.

The raw ``.eml`` bytes are always the record; everything here is derived from
them and may fail without losing anything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.errors
import email.feedparser
import email.policy
import io
import re
from collections.abc import Callable, Iterator
from email.generator import BytesGenerator
from email.header import Header, decode_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

from archive.charsets import charset_codec, decode_bytes

# The feed parser's own rules (``read_headers``): a header line, a line's end.
_HEADER_LINE: re.Pattern[str] = email.feedparser.headerRE  # type: ignore[attr-defined]
_LINE_END: re.Pattern[str] = email.feedparser.NLCRE_eol  # type: ignore[attr-defined]
_BLANK_LINE = re.compile(rb"\n\r?\n")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_EXTENSIONS = {
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
    "text/plain": ".txt",
    "text/html": ".html",
}


class MailLimitExceeded(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class MailLimits:
    max_depth: int = 20
    max_parts: int = 500


@dataclasses.dataclass
class MailHeaders:
    from_: str = ""
    to: str = ""
    cc: str = ""
    subject: str = ""
    date: dt.datetime | None = None
    message_id: str = ""
    error: str = ""  # set when the header block itself could not be read


def _header_str(value: object, hint: str | None = None) -> str:
    """A header value as an unfolded str (RFC 5322 §2.2.3). compat32 wraps raw
    8-bit header bytes in an "unknown-8bit" Header whose str() turns each such
    byte into U+FFFD; take them as UTF-8 (RFC 6532), else as ``decode_bytes``
    guesses (``hint`` first)."""
    if not isinstance(value, Header):
        return _FOLD.sub("", str(value))
    parts = [
        decode_bytes(chunk, hint=hint) if isinstance(chunk, bytes) else chunk
        for chunk, _charset in decode_header(value)
    ]
    return _FOLD.sub("", "".join(parts))


def decode_text(value: object, *, hint: str | None = None) -> str:
    """A header value as text: RFC 2047 encoded words and raw 8-bit bytes
    through ``decode_bytes`` (``hint``: the charset the mail declares for its
    body); undecodable pieces are kept, replaced."""
    if value is None:
        return ""
    raw = _header_str(value, hint)
    if raw.isascii():
        try:
            chunks = decode_header(raw)
        except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
            return _without_surrogates(raw.strip())
        if all(isinstance(chunk, str) for chunk, _charset in chunks):
            return _without_surrogates(raw.strip())
        parts: list[str] = []
        previous_encoded = False
        for chunk, charset in chunks:
            encoded = charset is not None
            if isinstance(chunk, bytes):
                text = decode_bytes(chunk, charset) if encoded else chunk.decode("ascii", errors="replace")
            else:
                text = chunk
            # make_header's rule: a space between an encoded word and plain text
            # that has none.
            if parts and encoded != previous_encoded and text and not text[0].isspace():
                if not parts[-1][-1:].isspace():
                    parts.append(" ")
            parts.append(text)
            previous_encoded = encoded
        return _without_surrogates("".join(parts).strip())
    # Non-ASCII text beside an encoded-word (decode_header hands that back
    # raw-unicode-escaped).
    out = []
    for chunk, charset in decode_header(raw):
        if isinstance(chunk, bytes):
            if charset:
                out.append(decode_bytes(chunk, charset))
            else:
                out.append(chunk.decode("raw-unicode-escape", errors="replace"))
        else:
            out.append(chunk)
    return _without_surrogates("".join(out).strip())


def _without_surrogates(text: str) -> str:
    # A hostile header can decode to a lone surrogate ("=?unicode-escape?q?=5Cudc80?=",
    # a literal "\\udc80" beside 8-bit text), which no database accepts: it
    # must not make a whole batch fail again and again.
    return text.encode("utf-8", "replace").decode("utf-8")


# The common cases, split without the address parser (a third of the header parse):
# "addr", "Name <addr>", "=?utf-8?q?N=C3=A4me?= <addr>", '"Name" <addr>' (ASCII, no
# comments, groups or escapes). Anything else goes to ``getaddresses``.
_WS = "[ \t\r\n]"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SIMPLE_ADDRESS = re.compile(
    rf'{_WS}*(?:(?:({_ATOM}(?:{_WS}+{_ATOM})*)|"([^"\\\r\n]*)")?{_WS}*<({_ADDR})>|({_ADDR})){_WS}*'
)


def _simple_addresses(texts: list[str]) -> list[tuple[str, str]] | None:
    """``getaddresses(texts)`` for simple values; None for any other (ask it)."""
    pairs = []
    for text in texts:
        for piece in text.split(","):
            match = _SIMPLE_ADDRESS.fullmatch(piece)
            if match is None:
                return None
            phrase, quoted, bracketed, bare = match.groups()
            name = " ".join(phrase.split()) if phrase else quoted or ""
            pairs.append((name, bracketed or bare))
    return pairs


def _addresses(values: list[str], hint: str | None = None) -> str:
    # Split on the raw header first: an encoded display name may decode to a comma.
    texts = [_header_str(v, hint) for v in values if v]
    pairs = _simple_addresses(texts)
    if pairs is None:
        pairs = getaddresses(texts)
    out = []
    for raw_name, addr in pairs:
        name = decode_text(raw_name, hint=hint)
        if name and any(c in name for c in ',;<>@"'):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if name and addr:
            out.append(f"{name} <{addr}>")
        elif addr or name:
            out.append(addr or name)
    return ", ".join(out)


def header_block(raw: bytes) -> bytes:
    """The header block up to and including its first empty line (the whole mail
    if it has none): the header parser reads the whole body otherwise."""
    # "\n\n" and "\n\r\n" always end a line with an empty one (also for CRLF);
    # a lone-CR empty line is caught by the parser itself in the longer slice.
    # One search for the first of the two (two finds read all of a mail without one).
    found = _BLANK_LINE.search(raw)
    return raw[: found.start() + 1] if found else raw


def read_headers(block: bytes) -> Message:
    """The headers (and envelope line) of ``BytesHeaderParser(policy=compat32).parsebytes(block)``,
    without the feed parser's buffering and generators (a third of the archive
    step's header parsing): the lines split as its buffer splits them, read by
    the rules of ``email.feedparser`` (``_parsegen``: the header lines end at the
    first line that is none; ``_parse_headers``: continuations, the envelope
    line, a missing name). Defects are not recorded and the rest is not kept as
    the payload. ``tests/archive/test_header_fastpath.py`` holds the two equal."""
    msg = Message(policy=email.policy.compat32)
    lines = []
    for line in io.StringIO(block.decode("ascii", "surrogateescape"), newline="").readlines():
        if not _HEADER_LINE.match(line):
            break
        lines.append(line)
    value: list[str] = []  # the lines of the header being read
    for number, line in enumerate(lines):
        if line[0] in " \t":
            if value:  # a continuation (of nothing, at the start: dropped)
                value.append(line)
            continue
        if value:
            msg.set_raw(*email.policy.compat32.header_source_parse(value))
            value = []
        if line.startswith("From "):
            if number == 0:
                msg.set_unixfrom(_LINE_END.sub("", line, count=1))
            continue  # elsewhere: misplaced (or, last, the body's first line), ignored
        if line.find(":") > 0:  # at 0: no name, ignored
            value = [line]
    if value:
        msg.set_raw(*email.policy.compat32.header_source_parse(value))
    return msg


def parse_headers(raw: bytes) -> MailHeaders:
    """Only the header block: ~4× faster than a full parse; never raises."""
    try:
        msg = read_headers(header_block(raw))
        # Raw 8-bit header bytes are most likely in the charset the body declares.
        hint = msg.get_content_charset()
        headers = MailHeaders(
            from_=_addresses(msg.get_all("From", []), hint),
            to=_addresses(msg.get_all("To", []), hint),
            cc=_addresses(msg.get_all("Cc", []), hint),
            subject=decode_text(msg.get("Subject"), hint=hint),
            message_id=str(msg.get("Message-ID", "") or "").strip()[:500],
        )
        date = msg.get("Date")
        if date:
            try:
                parsed = parsedate_to_datetime(str(date))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=dt.UTC)
                # Stored in UTC, in years 1000–9999 (MariaDB DATETIME): a bogus date
                # beyond (OverflowError at the calendar's ends) is no date at all.
                if 1000 <= parsed.astimezone(dt.UTC).year <= 9998:
                    headers.date = parsed
            except (TypeError, ValueError, IndexError, OverflowError):
                pass
        if not msg.keys():
            headers.error = "no mail headers found"
        return headers
    except Exception as exc:  # noqa: BLE001 - hostile input; the raw mail stays archived
        return MailHeaders(error=f"headers unreadable: {exc.__class__.__name__}: {exc}")


# --- The MIME walk ---------------------------------------------------------------------------
# One walk for processing (``parse_message``), viewing (``archive.mailview``) and text
# extraction (``archive.extractors``): the limits are applied here and nowhere else.


def mail_limits() -> MailLimits:
    """The limits configured for this installation (``MAIL_MAX_MIME_*``)."""
    from django.conf import settings  # here: the extractor's child process has no Django

    return MailLimits(
        max_depth=getattr(settings, "MAIL_MAX_MIME_DEPTH", MailLimits.max_depth),
        max_parts=getattr(settings, "MAIL_MAX_MIME_PARTS", MailLimits.max_parts),
    )


@dataclasses.dataclass(slots=True)
class MimeNode:
    """One node of a MIME tree as the walk meets it (containers too)."""

    message: Message
    path: str  # "1.2.3": position in the tree; "" for the root
    depth: int
    content_type: str

    @property
    def disposition(self) -> str:
        """``inline``, ``attachment``…, lower-case; "" when the part has none."""
        return (self.message.get_content_disposition() or "").lower()

    @property
    def is_multipart(self) -> bool:
        return self.message.is_multipart()

    @property
    def children(self) -> list[Message]:
        payload = self.message.get_payload() if self.message.is_multipart() else None
        return [child for child in payload if isinstance(child, Message)] if isinstance(payload, list) else []

    @property
    def raw_filename(self) -> str:
        """The filename parameter as the header has it (RFC 2231 joined, not RFC 2047 decoded)."""
        return str(self.message.get_filename() or "")

    @property
    def filename(self) -> str:
        """The filename parameter decoded (RFC 2231 and RFC 2047); "" when it is unreadable."""
        try:
            return decode_text(self.message.get_filename() or "")
        except Exception:  # noqa: BLE001 - a hostile parameter is no name
            return ""

    @property
    def content_id(self) -> str:
        return str(self.message.get("Content-ID", "") or "").strip().strip("<>")

    def payload(self) -> bytes | None:
        """The body with its transfer encoding undone (None for a container)."""
        payload = self.message.get_payload(decode=True)
        return payload if isinstance(payload, bytes) else None

    def text(self, hint: str | None = None) -> str:
        """The body as text, in its declared charset (``decode_bytes``; ``hint``:
        what the mail's other text parts declare, for a part that does not)."""
        return decode_bytes(self.payload() or b"", self.message.get_content_charset(), hint=hint)


def charset_hint(message: Message, limit: int = 50) -> str | None:
    """The first charset declared by a text part of ``message`` (or by the
    message itself): how its undeclared parts and raw 8-bit headers are most
    likely written. Looks at ``limit`` parts at most."""
    for count, part in enumerate(message.walk()):
        if count >= limit:
            break
        charset = part.get_content_charset() if part.get_content_maintype() in ("text", "multipart") else None
        if charset and charset_codec(charset) not in (None, "ascii"):
            return charset
    return None


# Which children of a container to descend into (default: all); the paths keep
# the children's positions.
ChildFilter = Callable[[MimeNode, list[Message]], list[Message]]


def walk_mime(
    message: Message,
    limits: MailLimits,
    *,
    children: ChildFilter | None = None,
    skip_too_deep: bool = False,
) -> Iterator[MimeNode]:
    """Every node of the tree, depth first, parents before their children.

    Raises ``MailLimitExceeded`` at the part past ``limits.max_parts`` and at a
    part nested deeper than ``limits.max_depth`` — or, with ``skip_too_deep``,
    leaves such a part (and what it contains) out and goes on with the rest."""
    count = 0
    stack: list[tuple[Message, str, int]] = [(message, "", 0)]
    while stack:
        part, path, depth = stack.pop()
        count += 1
        if count > limits.max_parts:
            raise MailLimitExceeded(f"more than {limits.max_parts} MIME parts")
        if depth > limits.max_depth:
            if skip_too_deep:
                continue
            raise MailLimitExceeded(f"MIME nesting deeper than {limits.max_depth}")
        node = MimeNode(
            message=part,
            path=path,
            depth=depth,
            content_type=part.get_content_type(),
        )
        yield node
        below = node.children
        picked = below if children is None or not below else children(node, below)
        chosen = None if picked is below else {id(c) for c in picked}
        numbered = [
            (f"{path}.{i}" if path else str(i), child)
            for i, child in enumerate(below, 1)
            if chosen is None or id(child) in chosen
        ]
        stack.extend((child, child_path, depth + 1) for child_path, child in reversed(numbered))


# --- The full MIME structure -------------------------------------------------------------------


@dataclasses.dataclass
class MailPart:
    path: str  # "1.2.3": position in the MIME tree
    content_type: str
    filename: str
    content_id: str
    disposition: str
    payload: bytes
    # The path of the attached message this part is in ("" for the mail's own
    # parts; "" also for the parts of a message that is the whole body).
    parent: str = ""


@dataclasses.dataclass
class NestedMail:
    """An attached message (``message/rfc822``), or the message that is the
    whole body of a forward: shown as mail below the body, offered as ``name``."""

    path: str  # of the message/* part; "" when it is the whole body
    name: str
    headers: MailHeaders
    text: str = ""
    html: str = ""


@dataclasses.dataclass
class ParsedMail:
    message: Message | None
    text: str = ""
    html: str = ""
    attachments: list[MailPart] = dataclasses.field(default_factory=list)
    inline: list[MailPart] = dataclasses.field(default_factory=list)
    nested: list[NestedMail] = dataclasses.field(default_factory=list)
    defects: list[str] = dataclasses.field(default_factory=list)
    error: str = ""


_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def eml_name(subject: str, path: str) -> str:
    """The name an attached message without a filename is offered under: its Subject."""
    base = _UNSAFE_NAME.sub("_", subject).strip(" ._")[:120]
    return f"{base}.eml" if base else default_filename(path or "1", "message/rfc822")


def message_bytes(message: Message) -> bytes:
    """A parsed message as bytes again, as close to how it came as the parser
    allows (no ">From" mangling, no refolding)."""
    out = io.BytesIO()
    generator = BytesGenerator(out, mangle_from_=False, policy=email.policy.compat32.clone(max_line_length=0))
    generator.flatten(message)
    return out.getvalue()


def is_attached_message(node: MimeNode) -> bool:
    """A ``message/*`` part holding a message (RFC 2046 §5.2), as the parser
    reads every ``message/*`` but delivery status."""
    return node.message.get_content_maintype() == "message" and node.content_type != "message/delivery-status"


def _no_delivery_status_blocks(node: MimeNode, below: list[Message]) -> list[Message]:
    # A delivery status is one part (its blocks of fields are no parts of their own).
    return [] if node.content_type == "message/delivery-status" else below


@dataclasses.dataclass
class _Scope:
    prefix: str  # the paths of its nodes start so
    parent: str  # what its parts name as their parent
    target: ParsedMail | NestedMail
    hint: str | None


def parse_message(
    raw: bytes, limits: MailLimits | None = None, *, policy: email.policy.Policy = email.policy.default
) -> ParsedMail:
    """Body, attachments, inline images and attached messages within
    ``limits``; never raises on bad input.

    An attached message is one part (its ``.eml``) and a ``NestedMail`` with
    its headers and body; its own attachments are listed with it as their
    ``parent``. ``policy=email.policy.compat32`` finds the same parts about 2×
    faster (no structured header objects): for callers that only want the parts."""
    limits = limits or MailLimits()
    try:
        msg = BytesParser(policy=policy).parsebytes(raw)
    except Exception as exc:  # noqa: BLE001 - the raw mail stays archived
        return ParsedMail(message=None, error=f"unparseable: {exc.__class__.__name__}: {exc}")
    result = ParsedMail(message=msg)
    scopes = [_Scope(prefix="", parent="", target=result, hint=charset_hint(msg))]
    try:
        for node in walk_mime(msg, limits, children=_no_delivery_status_blocks):
            while len(scopes) > 1 and not node.path.startswith(scopes[-1].prefix):
                scopes.pop()
            scope = _add_node(result, scopes[-1], node)
            if scope is not None:
                scopes.append(scope)
    except MailLimitExceeded as exc:
        result.error = f"limit exceeded: {exc}"
    except Exception as exc:  # noqa: BLE001 - hostile input
        result.error = f"unparseable: {exc.__class__.__name__}: {exc}"
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class LeafRole:
    """What a leaf of the tree is to the archive: ``kind`` is "text" or "html"
    (the first such body), "inline" (an image the HTML may show by its
    Content-ID) or "attachment"."""

    kind: str
    content_type: str
    filename: str
    content_id: str
    disposition: str


def leaf_role(node: MimeNode, *, have_text: bool, have_html: bool) -> LeafRole:
    """The role of a leaf from its headers alone (``archive.mimestream`` streams
    the body of the same leaf elsewhere): one rule for both readers."""
    ctype = node.content_type
    disposition = node.disposition
    filename = node.filename
    if ctype == "message/rfc822" and not disposition:
        disposition = "attachment"
    if disposition != "attachment" and not filename and ctype in ("text/plain", "text/html"):
        if ctype == "text/plain" and not have_text:
            return LeafRole("text", ctype, filename, "", disposition)
        if ctype == "text/html" and not have_html:
            return LeafRole("html", ctype, filename, "", disposition)
    cid = node.content_id
    path = node.path or "1"
    if cid and disposition != "attachment" and ctype.startswith("image/"):
        return LeafRole("inline", ctype, filename, cid, disposition)
    return LeafRole("attachment", ctype, filename or default_filename(path, ctype), cid, disposition)


def default_filename(path: str, content_type: str) -> str:
    """The name of an attachment that has none: ``part-1.2.pdf``-like."""
    return f"part-{path}{_EXTENSIONS.get(content_type, '.bin')}"


def _add_node(result: ParsedMail, scope: _Scope, node: MimeNode) -> _Scope | None:
    """The first text and HTML body of each message; every other leaf an
    attachment or an inline image; an attached message a part and a new scope."""
    path = node.path
    for defect in getattr(node.message, "defects", []):
        result.defects.append(f"{path}: {defect.__class__.__name__}")
    if is_attached_message(node) and node.children:
        inner = node.children[0]
        data = message_bytes(inner)
        headers = parse_headers(data)
        name = node.filename or eml_name(headers.subject, path)
        if path:
            result.attachments.append(
                MailPart(
                    path=path,
                    content_type="message/rfc822",
                    filename=name,
                    content_id=node.content_id,
                    disposition=node.disposition or "attachment",
                    payload=data,
                    parent=scope.parent,
                )
            )
        nested = NestedMail(path=path, name=name, headers=headers)
        result.nested.append(nested)
        return _Scope(
            prefix=f"{path}." if path else "", parent=path, target=nested, hint=charset_hint(inner) or scope.hint
        )
    if node.is_multipart and node.content_type != "message/delivery-status":
        return None
    role = leaf_role(node, have_text=bool(scope.target.text), have_html=bool(scope.target.html))
    if role.kind == "text":
        scope.target.text = node.text(scope.hint)
        return None
    if role.kind == "html":
        scope.target.html = node.text(scope.hint)
        return None
    try:
        if node.content_type == "message/delivery-status":
            payload: bytes | None = b"".join(message_bytes(block) for block in node.children)
        else:
            payload = node.payload()
        if payload is None:
            inner_payload = node.message.get_payload()
            payload = inner_payload.as_bytes() if isinstance(inner_payload, Message) else str(inner_payload).encode()
    except Exception as exc:  # noqa: BLE001
        result.defects.append(f"{path}: payload unreadable ({exc.__class__.__name__})")
        return None
    if not node.filename and not payload.strip():
        return None  # an empty (or blank) part without a name is nothing to offer
    item = MailPart(
        path=path or "1",
        content_type=role.content_type,
        filename=role.filename,
        content_id=role.content_id,
        disposition=role.disposition,
        payload=payload,
        parent=scope.parent,
    )
    (result.inline if role.kind == "inline" else result.attachments).append(item)
    return None
