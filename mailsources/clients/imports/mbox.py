"""A streaming MBOX reader: one message at a time from a byte offset, with memory
bounded by the largest message, never by the file (``mailbox.mbox`` indexes the
whole file first).

A message is the bytes after its ``From `` separator line up to the next separator,
without the blank line that precedes it; they are archived exactly as in the file,
except in an mboxrd file, whose writer quoted ``From `` lines by one more ``>`` and
whose reader takes it off again (the count is recorded). A ``Content-Length`` header
(mboxcl/mboxcl2, Solaris and old Netscape) is honoured when it ends exactly at a
separator or at the end of the file, so ``From `` lines inside such a body stay body.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import BinaryIO

SEPARATOR = b"From "
# Lines longer than this are read in pieces (a binary file has no newlines).
LINE_LIMIT = 1 << 20
_QUOTED_FROM = re.compile(rb"^>+From ")
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,15})[ \t]*\r?$", re.IGNORECASE)
_RD_MARK = b"\n>>From "
_INTERNAL_SUBJECT = b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA"


class NotMbox(ValueError):
    """The bytes at an offset are not the start of an MBOX message."""


@dataclasses.dataclass
class MboxMessage:
    offset: int  # where its separator line starts: the location, and a checkpoint
    end: int  # where the next message's separator starts (or the file's end)
    raw: bytes
    unquoted: int = 0  # mboxrd ">From " lines given back their "From "
    content_length: bool = False  # delimited by its Content-Length header
    truncated: bool = False  # the file ends inside it

    @property
    def internal(self) -> bool:
        """The "folder internal data" pseudo message UW-IMAP, Pine and Dovecot put first
        in an mbox they write (its X-IMAP header holds their UID state): no mail."""
        head = self.raw[:2000]
        return self.offset == 0 and b"\nX-IMAP: " in b"\n" + head and _INTERNAL_SUBJECT in head


def detect_variant(stream: BinaryIO, chunk_size: int = 8 << 20) -> str:
    """ "mboxrd" when some line is a ``From `` quoted twice (only mboxrd writers make
    those), else "mboxo": its quoted lines stay as the file has them."""
    stream.seek(0)
    tail = b"\n"
    while chunk := stream.read(chunk_size):
        if _RD_MARK in tail + chunk:
            return "mboxrd"
        tail = chunk[-(len(_RD_MARK) - 1) :]
    return "mboxo"


def _body_by_length(stream: BinaryIO, length: int) -> tuple[bytes, int] | None:
    """The body of ``length`` bytes and the bytes after it up to the next separator
    (its blank line), when it ends at a separator or the file's end; the stream then
    stands at that separator. None, stream unmoved, when the header does not fit."""
    start = stream.tell()
    body = stream.read(length)
    if len(body) == length:
        after = stream.tell()
        following = stream.readline(LINE_LIMIT)
        gap = 0
        if following in (b"\n", b"\r\n"):
            gap = len(following)
            following = stream.readline(LINE_LIMIT)
        if following == b"" or following.startswith(SEPARATOR):
            stream.seek(after + gap)
            return body, gap
    stream.seek(start)
    return None


def read_messages(stream: BinaryIO, start: int, *, variant: str) -> Iterator[MboxMessage]:
    """The messages from ``start`` (0 or a checkpoint: a separator's offset) to the end.
    NotMbox when ``start`` is not at a separator line."""
    stream.seek(start)
    line = stream.readline(LINE_LIMIT)
    if not line:
        return
    if not line.startswith(SEPARATOR):
        raise NotMbox(f"no MBOX separator line ('From ...') at byte {start}")
    pos = start
    while line:
        message = MboxMessage(offset=pos, end=pos, raw=b"")
        pos += len(line)
        lines: list[bytes] = []
        length: int | None = None
        # The header block, to find a Content-Length.
        while (line := stream.readline(LINE_LIMIT)) and line not in (b"\n", b"\r\n"):
            lines.append(line)
            pos += len(line)
            if (match := _CONTENT_LENGTH.match(line)) is not None:
                length = int(match.group(1))
        by_length = None
        if line:  # the blank line ending the headers
            lines.append(line)
            pos += len(line)
            if length is not None:
                by_length = _body_by_length(stream, length)
        if by_length is not None:
            body, gap = by_length
            lines.append(body)
            pos += len(body) + gap
            message.content_length = True
            line = stream.readline(LINE_LIMIT)
        elif line:
            body_start = pos
            line, pos = _scan_body(stream, lines, line, pos)
            if lines and lines[-1] in (b"\n", b"\r\n"):
                lines.pop()  # the blank line before the next separator is the format's
            # The file ends before the length its header announces: cut off.
            message.truncated = not line and length is not None and pos - body_start < length
        raw = b"".join(lines)
        if variant == "mboxrd":
            raw, message.unquoted = _unquote(raw)
        message.raw = raw
        message.end = pos
        message.truncated = message.truncated or (not line and not raw.endswith(b"\n"))
        yield message


def _scan_body(stream: BinaryIO, lines: list[bytes], line: bytes, pos: int) -> tuple[bytes, int]:
    """Read body lines up to the next separator (one after a blank line, or any at the
    start of a line right after the headers); returns that separator line and its end."""
    previous_blank = line in (b"\n", b"\r\n")
    at_line_start = True
    while line := stream.readline(LINE_LIMIT):
        if at_line_start and previous_blank and line.startswith(SEPARATOR):
            return line, pos
        lines.append(line)
        pos += len(line)
        # A piece of an over-long line is neither blank nor the start of a line.
        previous_blank = at_line_start and line in (b"\n", b"\r\n")
        at_line_start = line.endswith(b"\n")
    return b"", pos


def _unquote(raw: bytes) -> tuple[bytes, int]:
    if b">From " not in raw:
        return raw, 0
    count = 0
    out = []
    for piece in raw.splitlines(keepends=True):
        if _QUOTED_FROM.match(piece):
            piece = piece[1:]
            count += 1
        out.append(piece)
    return b"".join(out), count
