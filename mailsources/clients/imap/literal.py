"""Huge mails from the socket straight into the store, never whole in memory.

imaplib reads every literal of a response with one ``read(size)``: the body of a
100 MB mail becomes one 100 MB bytes object, held until it is stored. For a mail
the client knows to be big (RFC822.SIZE at least the client's ``stream_bytes``),
the connection is *armed* with a ``LiteralSpool`` for that one ``UID FETCH``;
imaplib's ``read`` of its ``BODY[] {N}`` literal then hands the socket's file to
the spool, which reads the N bytes in 1 MiB chunks into the raw sink (the
store's temporary file, hashed as it goes; see ``archive.storage.put_chunks``);
imaplib then records that response line as ``BODY[] {0}`` with an empty
literal, and IMAPClient parses it as an empty BODY[]. Everything else (commands,
tags, parsing the rest of the FETCH response, TLS, timeouts) stays IMAPClient's
and imaplib's.

Why this and not ``BODY.PEEK[]<offset.length>`` partial fetches: one command, so
the mail is one consistent read (no re-seeking of Dovecot's CRLF-converted
stream per chunk, no chunk boundary to get wrong when the server's size differs
from RFC822.SIZE), and a short read is plain to see: the literal's length was
announced before its first byte.

A connection lost in the middle leaves no blob: the sink only names a blob once
its last byte is written and fsynced, and removes its temporary file when the
chunks stop with an error. The connection is unusable then (the rest of the
literal may still be on its way) and is dropped.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

CHUNK = 1024 * 1024
# imaplib matched the response line with its literal marker just before it reads
# the literal; only a BODY[] literal (the mail) is streamed.
_BODY_LITERAL = re.compile(rb"BODY\[\] \{(\d+)\}$")

RawSink = Callable[[Iterable[bytes]], Any]


class SpoolFailed(Exception):
    """The sink could not store the literal (e.g. a full disk): ``__cause__`` says why.
    Not a network failure, but the connection is mid-literal and must be dropped."""


class _Lost(Exception):
    """The socket failed while the sink was reading from it; ``__cause__`` says how."""


class LiteralSpool:
    """Armed on a connection for one FETCH: BODY[] literals of at least ``threshold``
    bytes go to ``sink``; ``stored`` collects what the sink returned for each."""

    def __init__(self, sink: RawSink, threshold: int) -> None:
        self.sink = sink
        self.threshold = threshold
        self.stored: list[Any] = []

    def wants(self, line: bytes | None, size: int) -> bool:
        match = _BODY_LITERAL.search(line or b"")
        return size >= self.threshold and match is not None and int(match.group(1)) == size

    def take(self, file: Any, size: int) -> None:
        """Read exactly ``size`` bytes from ``file`` into the sink."""
        try:
            self.stored.append(self.sink(_chunks(file, size)))
        except _Lost as lost:
            raise lost.__cause__ from None  # type: ignore[misc]  # always set by _chunks
        except Exception as exc:
            raise SpoolFailed(f"storing a mail of {size} bytes as it arrived failed: {exc}") from exc


def _chunks(file: Any, size: int) -> Iterator[bytes]:
    left = size
    while left:
        try:
            chunk: bytes = file.read(min(CHUNK, left))
        except OSError as exc:  # a timeout too: the caller reports it as such
            raise _Lost() from exc
        if not chunk:
            cut = imaplib.IMAP4.abort(f"socket error: EOF after {size - left} of the {size} bytes of a mail")
            raise _Lost() from cut
        left -= len(chunk)
        yield chunk


class SpoolingReads:
    """imaplib's ``read`` and ``_append_untagged`` for connection classes: an armed spool
    takes the BODY[] literal, and the response line records an empty one instead."""

    file: Any
    mo: Any  # imaplib's last regular expression match: the line ending in {size}
    spool: LiteralSpool | None = None
    _spooled_line: bytes | None = None

    def read(self, size: int) -> bytes:
        spool = self.spool
        match = getattr(self, "mo", None)
        if spool is not None and match is not None and spool.wants(match.string, size):
            spool.take(self.file, size)
            self._spooled_line = match.string
            return b""
        data: bytes = self.file.read(size)
        return data

    def _append_untagged(self, typ: str, dat: Any) -> None:
        # imaplib stores (line, literal) right after reading the literal.
        line = self._spooled_line
        if line is not None and isinstance(dat, tuple) and dat[0] is line:
            self._spooled_line = None
            dat = (_BODY_LITERAL.sub(b"BODY[] {0}", line), b"")
        super()._append_untagged(typ, dat)  # type: ignore[misc]  # imaplib's, next in the MRO
