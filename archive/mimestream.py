"""Reading a big mail in bounded memory: a boundary scanner over the stored
``.eml`` that decodes each leaf's base64 or quoted-printable body as it reads
it and stores it in the blob store, never holding the message or a decoded
attachment.

``email.parser`` builds the whole tree in memory (a 100 MB mail costs the
worker ~800 MB), so processing uses this reader for mails of
``STREAM_MIN_BYTES`` and more. It follows ``email.feedparser``'s rules for what
the parts are and where they end (boundaries of enclosing multiparts end inner
parts too, the line break before a boundary belongs to the boundary, doubled
boundaries make no part, a multipart without its start boundary is one leaf),
classifies leaves with ``mail.leaf_role`` and applies the same
``MailLimits``: for a well-formed mail it finds exactly what
``mail.parse_message`` finds — except that a text or HTML body over
``BODY_MAX`` becomes an attachment. It reads lines up to ``LINE_MAX`` bytes (longer
ones in pieces) and ends lines at LF only (a lone CR ends no line here).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import quopri
import re
import tempfile
from collections.abc import Callable, Iterator
from email.message import Message
from typing import IO, BinaryIO

from archive import storage
from archive.charsets import decode_bytes
from archive.mail import (
    LeafRole,
    MailLimitExceeded,
    MailLimits,
    MimeNode,
    NestedMail,
    default_filename,
    eml_name,
    leaf_role,
    parse_headers,
    read_headers,
)

# Mails smaller than this are parsed by ``email.parser`` (memory ~8× the mail).
STREAM_MIN_BYTES = 4 * 1024 * 1024
LINE_MAX = 64 * 1024
# A text or HTML body longer than this (decoded) is kept as an attachment, not
# shown as the body: the view stores the sanitised body in one database row.
BODY_MAX = 1024 * 1024
# A header block is at most this long; the rest of an endless one is dropped.
HEADER_MAX = 1024 * 1024
# A preamble is held in memory up to this, then spooled to a temporary file.
_SPOOL_BYTES = 1024 * 1024
_DECODE_BYTES = 1024 * 1024

# email.feedparser.headerRE, on bytes.
_HEADER_LINE = re.compile(rb"^(From |[\041-\071\073-\176]*:|[\t ])")
_EMPTY_LINE = re.compile(rb"^(\r\n|\r|\n)")
_EOL = re.compile(rb"(\r\n|\r|\n)\Z")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


@dataclasses.dataclass
class StoredPart:
    """A leaf stored as a blob: what ``mail.MailPart`` is, without the bytes."""

    path: str
    content_type: str
    filename: str
    content_id: str
    disposition: str
    blob: storage.StoredBlob
    parent: str = ""  # as ``mail.MailPart.parent``

    @property
    def size(self) -> int:
        return self.blob.size


@dataclasses.dataclass
class StreamedMail:
    text: str = ""
    html: str = ""
    attachments: list[StoredPart] = dataclasses.field(default_factory=list)
    inline: list[StoredPart] = dataclasses.field(default_factory=list)
    # The message that is the whole body of a forward (its headers and body);
    # an attached message deeper in is stored as its .eml, not read here.
    nested: list[NestedMail] = dataclasses.field(default_factory=list)
    error: str = ""


class _Lines:
    """Lines of the file (LF-terminated pieces of at most ``LINE_MAX`` bytes),
    with push-back and the stack of boundaries that end the current entity."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._pushed: list[tuple[bytes, bool]] = []
        self._at_start = True  # the next piece starts a line
        self.boundaries: list[re.Pattern[bytes]] = []
        self.starts_line = True  # of the piece last returned
        # Files that get a copy of every piece returned (attached messages being read).
        self.copies: list[IO[bytes]] = []

    def _next(self) -> tuple[bytes, bool]:
        if self._pushed:
            return self._pushed.pop()
        piece = self._fh.readline(LINE_MAX)
        start = self._at_start
        self._at_start = piece.endswith(b"\n") or not piece
        return piece, start

    def unread(self, piece: bytes, starts_line: bool) -> None:
        """Give back the piece ``readline`` returned last."""
        for copy in self.copies:
            copy.seek(-len(piece), 2)
            copy.truncate()
        self._pushed.append((piece, starts_line))

    def readline(self) -> bytes:
        """The next piece, or b"" at the end of the file or at a line that is a
        boundary of an enclosing multipart (left to be read by its owner)."""
        piece, start = self._next()
        if piece and start and any(b.match(piece) for b in reversed(self.boundaries)):
            self._pushed.append((piece, start))
            return b""
        self.starts_line = start
        for copy in self.copies:
            copy.write(piece)
        return piece


def _boundary_pattern(boundary: str) -> re.Pattern[bytes]:
    # email.feedparser's boundaryre; the header value was read as ASCII with
    # surrogate escapes, as the lines of the body are.
    separator = re.escape(("--" + boundary).encode("ascii", "surrogateescape"))
    return re.compile(rb"(?P<sep>" + separator + rb")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$")


class _Decoder:
    """A transfer encoding undone piece by piece, as ``Message.get_payload(decode=True)``
    undoes it (compat32) for a well-formed body."""

    def __init__(self, cte: str) -> None:
        self._cte = cte
        self._pending: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> bytes:
        if self._cte == "base64":
            clean = _NOT_BASE64.sub(b"", data)
            self._pending.append(clean)
            self._size += len(clean)
            if self._size < _DECODE_BYTES:
                return b""
            joined = b"".join(self._pending)
            whole = len(joined) - len(joined) % 4
            self._pending, self._size = [joined[whole:]], len(joined) - whole
            return base64.b64decode(joined[:whole])
        if self._cte == "quoted-printable":
            return quopri.decodestring(data)  # line by line: QP's soft breaks are per line
        return data

    def end(self) -> bytes:
        if self._cte != "base64":
            return b""
        rest = b"".join(self._pending)
        self._pending, self._size = [], 0
        whole = len(rest) - len(rest) % 4
        out = base64.b64decode(rest[:whole]) if whole else b""
        tail = rest[whole:]
        if len(tail) >= 2:
            try:
                out += base64.b64decode(tail + b"=" * (4 - len(tail)))
            except binascii.Error:
                pass
        return out


class _Walk:
    def __init__(self, fh: BinaryIO, limits: MailLimits, put: Callable[[Iterator[bytes]], storage.StoredBlob]):
        self.lines = _Lines(fh)
        self.limits = limits
        self.put = put
        self.count = 0
        self.result = StreamedMail()
        # Where the first text and HTML body go: the mail, or the message it forwards.
        self.body: StreamedMail | NestedMail = self.result
        self.parent = ""
        self.hint: str | None = None

    # --- one entity: headers, then its body by type

    def entity(
        self,
        path: str,
        depth: int,
        *,
        in_multipart: bool,
        digest: bool = False,
        message_of: MimeNode | None = None,
    ) -> None:
        """``message_of``: the message/* part this entity is the message of."""
        message, block = self._headers()
        if message_of is not None:
            headers = parse_headers(block)
            name = message_of.filename or eml_name(headers.subject, message_of.path)
            nested = NestedMail(path=message_of.path, name=name, headers=headers)
            self.result.nested.append(nested)
            self.body = nested
            self.parent = message_of.path
            self.hint = None
        if self.hint is None and message.get_content_maintype() == "text":
            self.hint = message.get_content_charset()
        if digest:
            message.set_default_type("message/rfc822")  # RFC 2046 §5.1.5
        self.count += 1
        if self.count > self.limits.max_parts:
            raise MailLimitExceeded(f"more than {self.limits.max_parts} MIME parts")
        if depth > self.limits.max_depth:
            raise MailLimitExceeded(f"MIME nesting deeper than {self.limits.max_depth}")
        ctype = message.get_content_type()
        if ctype == "message/delivery-status":
            self.leaf(message, path, self._body(), strip=in_multipart)
        elif message.get_content_maintype() == "message":
            self.attached_message(message, path, depth, in_multipart=in_multipart)
        elif message.get_content_maintype() == "multipart" and message.get_boundary() is not None:
            self.multipart(message, path, depth, in_multipart=in_multipart)
        else:
            self.leaf(message, path, self._body(), strip=in_multipart)

    def _headers(self) -> tuple[Message, bytes]:
        """The entity's header fields, and their bytes with the empty line that ends them."""
        block: list[bytes] = []
        size = 0
        while True:
            line = self.lines.readline()
            if not line:
                break
            if self.lines.starts_line and not _HEADER_LINE.match(line):
                if not _EMPTY_LINE.match(line):
                    self.lines.unread(line, True)  # the body starts without an empty line
                else:
                    block.append(line)
                break
            size += len(line)
            if size <= HEADER_MAX:
                block.append(line)
        data = b"".join(block)
        return read_headers(data), data

    def attached_message(self, message: Message, path: str, depth: int, *, in_multipart: bool) -> None:
        """An attached message: read as mail (its body and parts, as
        ``mail.parse_message`` reads them) while a copy of it becomes its .eml
        part — but not for the message that is the whole body."""
        node = MimeNode(message=message, path=path, depth=depth, content_type=message.get_content_type())
        saved = (self.body, self.parent, self.hint)
        at = len(self.result.attachments)
        copy = tempfile.SpooledTemporaryFile(_SPOOL_BYTES)  # noqa: SIM115 - closed below
        try:
            self.lines.copies.append(copy)
            try:
                self.entity(f"{path}.1" if path else "1", depth + 1, in_multipart=in_multipart, message_of=node)
            finally:
                self.lines.copies.remove(copy)
                self.body, self.parent, self.hint = saved
            if not path:
                return
            nested = next((n for n in self.result.nested if n.path == path), None)
            name = nested.name if nested is not None else default_filename(path, "message/rfc822")
            copy.seek(0)
            lines = iter(lambda: copy.readline(LINE_MAX), b"")
            part = StoredPart(
                path=path,
                content_type="message/rfc822",
                filename=name,
                content_id=node.content_id,
                disposition=node.disposition or "attachment",
                blob=self.put(_stripped(lines) if in_multipart else lines),
                parent=self.parent,
            )
            self.result.attachments.insert(at, part)
        finally:
            copy.close()

    def _body(self) -> Iterator[bytes]:
        """The rest of this entity, up to the next boundary of an enclosing multipart."""
        while line := self.lines.readline():
            yield line

    def multipart(self, message: Message, path: str, depth: int, *, in_multipart: bool) -> None:
        boundary = message.get_boundary()
        assert boundary is not None
        own = _boundary_pattern(boundary)
        preamble = tempfile.SpooledTemporaryFile(_SPOOL_BYTES)  # noqa: SIM115 - closed below
        try:
            number = 0
            while True:
                line = self.lines.readline()
                if not line:
                    break
                match = own.match(line) if self.lines.starts_line else None
                if match is None:
                    if number == 0:
                        preamble.write(line)
                    continue  # after a part only a boundary can come; a piece of an epilogue
                if match.group("end"):
                    self._skip_epilogue()
                    break
                # Doubled boundaries make no part.
                while True:
                    line = self.lines.readline()
                    if not (line and self.lines.starts_line and own.match(line)):
                        if line:
                            self.lines.unread(line, self.lines.starts_line)
                        break
                number += 1
                self.lines.boundaries.append(own)
                try:
                    self.entity(
                        f"{path}.{number}" if path else str(number),
                        depth + 1,
                        in_multipart=True,
                        digest=message.get_content_subtype() == "digest",
                    )
                finally:
                    self.lines.boundaries.pop()
            if number == 0:
                # No start boundary: the whole body is one leaf (StartBoundaryNotFoundDefect).
                preamble.seek(0)
                self.leaf(message, path, iter(lambda: preamble.readline(LINE_MAX), b""), strip=in_multipart)
        finally:
            preamble.close()

    def _skip_epilogue(self) -> None:
        for _ in self._body():
            pass

    # --- a leaf: classified by its headers, its body decoded as it is read

    def leaf(self, message: Message, path: str, body: Iterator[bytes], *, strip: bool) -> None:
        node = MimeNode(message=message, path=path, depth=0, content_type=message.get_content_type())
        result = self.result
        target = self.body
        role = leaf_role(node, have_text=bool(target.text), have_html=bool(target.html))
        decoder = _Decoder(str(message.get("content-transfer-encoding", "")).lower())
        decoded = _decoded(decoder, _stripped(body) if strip else body)
        if role.kind in ("text", "html"):
            held: list[bytes] = []
            size = 0
            for chunk in decoded:
                held.append(chunk)
                size += len(chunk)
                if size > BODY_MAX:
                    # Too big to show in a browser: kept as a part (a download), not as the body.
                    name = default_filename(path or "1", role.content_type)
                    role = LeafRole("attachment", role.content_type, name, "", role.disposition)
                    decoded = itertools.chain(held, decoded)
                    break
            else:
                text = decode_bytes(b"".join(held), message.get_content_charset(), hint=self.hint)
                if role.kind == "text":
                    target.text = text
                else:
                    target.html = text
                return
        seen = _Content()
        part = StoredPart(
            path=path or "1",
            content_type=role.content_type,
            filename=role.filename,
            content_id=role.content_id,
            disposition=role.disposition,
            blob=self.put(seen.watch(decoded)),
            parent=self.parent,
        )
        if not seen.any and not node.filename:
            return  # an empty (or blank) part without a name is nothing to offer
        (result.inline if role.kind == "inline" else result.attachments).append(part)


class _Content:
    """Whether the chunks passed through ``watch`` held more than white space."""

    def __init__(self) -> None:
        self.any = False

    def watch(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if not self.any and chunk.strip():
                self.any = True
            yield chunk


def _stripped(lines: Iterator[bytes]) -> Iterator[bytes]:
    """``lines`` without the final line break (it belongs to the boundary that follows)."""
    previous = None
    for line in lines:
        if previous is not None:
            yield previous
        previous = line
    if previous is not None:
        match = _EOL.search(previous)
        yield previous[: match.start()] if match else previous


def _decoded(decoder: _Decoder, lines: Iterator[bytes]) -> Iterator[bytes]:
    for line in lines:
        out = decoder.feed(line)
        if out:
            yield out
    out = decoder.end()
    if out:
        yield out


def stream_parse(
    fh: BinaryIO,
    limits: MailLimits,
    put: Callable[[Iterator[bytes]], storage.StoredBlob] = storage.put_chunks,
) -> StreamedMail:
    """The body texts and the stored parts of the mail in ``fh``; never raises
    on bad input (``error`` says what stopped the walk; the parts found before
    are kept, as ``parse_message`` keeps them)."""
    walk = _Walk(fh, limits, put)
    try:
        walk.entity("", 0, in_multipart=False)
    except MailLimitExceeded as exc:
        walk.result.error = f"limit exceeded: {exc}"
    except storage.StorageError:
        raise
    except OSError:
        raise  # the store or the file, not the mail: for the caller to retry
    except Exception as exc:  # noqa: BLE001 - hostile input
        walk.result.error = f"unparseable: {exc.__class__.__name__}: {exc}"
    return walk.result
