"""IMAP wire helpers: folder-name encoding, response parsing, dates, sequence sets.

Pure functions over bytes and strings (plus imaplib subclasses that accept
long lines), used by ``imap.py``; nothing here talks to a server by itself.
"""

from __future__ import annotations

import base64
import imaplib
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

# imaplib refuses lines over 1 MB; a UID SEARCH answer for a big folder is longer.
_MAX_LINE = 64 * 1024 * 1024


def encode_folder_name(name: str) -> str:
    """Encode a folder name in IMAP's modified UTF-7 (RFC 3501 §5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(utf16).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode_folder_name(raw: bytes | str) -> str:
    """Decode modified UTF-7; a name that is not valid mUTF-7 is returned as is."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw

    def decode_run(match: re.Match[str]) -> str:
        body = match.group(1)
        if not body:
            return "&"
        b64 = body.replace(",", "/")
        b64 += "=" * (-len(b64) % 4)
        try:
            return base64.b64decode(b64, validate=True).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            return match.group(0)

    return re.sub(r"&([A-Za-z0-9+,]*)-", decode_run, text)


def quote_folder_name(name: str) -> str:
    """The folder as an IMAP quoted string, ready for a command line."""
    encoded = encode_folder_name(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_set(uids: Iterable[int]) -> str:
    """Compress UIDs into an IMAP sequence set: [1, 2, 3, 7] -> "1:3,7"."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


class Literal:
    """A literal ({n} + n bytes) inside a response, kept apart from the text around it."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def group_responses(data: list[Any]) -> list[list[bytes | Literal]]:
    """Split imaplib's flat response list into one segment list per response.

    imaplib stores a response with literals as (text, literal) tuples followed
    by the trailing text as plain bytes; a response without literal is one bytes.
    """
    responses: list[list[bytes | Literal]] = []
    in_literal_response = False
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            if not in_literal_response:
                responses.append([])
            responses[-1] += [item[0], Literal(item[1])]
            in_literal_response = True
        elif in_literal_response:
            responses[-1].append(item)
            in_literal_response = False
        else:
            responses.append([item])
    return responses


_TOKEN = re.compile(
    rb"""[ \r\n]*(?:
        (?P<open>\()
      | (?P<close>\))
      | "(?P<quoted>(?:[^"\\]|\\.)*)"
      | (?P<literal>\{\d+\+?\}$)          # the literal itself is the next segment
      | (?P<atom>[^ \r\n()\[]+(?:\[[^\]]*\][^ \r\n()]*)?|\[[^\]]*\][^ \r\n()]*)
    )""",
    re.VERBOSE,
)
_UNESCAPE = re.compile(rb"\\(.)")


def parse_segments(segments: list[bytes | Literal]) -> list[Any]:
    """Parse IMAP response data into nested lists.

    Atoms become ``str`` (NIL becomes None), quoted strings and literals ``bytes``.
    An atom may hold a bracketed section with spaces: ``BODY[HEADER.FIELDS (SUBJECT)]``.
    """
    stack: list[list[Any]] = [[]]
    for segment in segments:
        if isinstance(segment, Literal):
            stack[-1].append(segment.data)
            continue
        pos, end = 0, len(segment.rstrip(b" \r\n"))
        while pos < end:
            match = _TOKEN.match(segment, pos)
            if match is None or match.end() == pos:
                raise ValueError(f"unexpected IMAP response text {segment[pos : pos + 40]!r}")
            pos = match.end()
            kind = match.lastgroup
            if kind == "open":
                stack.append([])
            elif kind == "close":
                if len(stack) == 1:
                    raise ValueError("unbalanced ')' in IMAP response")
                done = stack.pop()
                stack[-1].append(done)
            elif kind == "quoted":
                stack[-1].append(_UNESCAPE.sub(rb"\1", match.group("quoted")))
            elif kind == "atom":
                atom = match.group("atom").decode("ascii", "replace")
                stack[-1].append(None if atom.upper() == "NIL" else atom)
    if len(stack) != 1:
        raise ValueError("unbalanced '(' in IMAP response")
    return stack[0]


def fetch_items(segments: list[bytes | Literal]) -> dict[str, Any]:
    """``1 (UID 5 BODY[] {n} ...)`` -> {"UID": "5", "BODY[]": b"..."}."""
    parsed = parse_segments(segments)
    if len(parsed) < 2 or not isinstance(parsed[1], list):
        raise ValueError("malformed FETCH response")
    pairs = parsed[1]
    return {str(pairs[k]).upper(): pairs[k + 1] for k in range(0, len(pairs) - 1, 2)}


_MONTHS = {
    m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)
}
_INTERNALDATE = re.compile(r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\s*")


def parse_internaldate(value: bytes | str | None) -> datetime | None:
    """``"17-Jul-1996 02:44:25 -0700"`` -> aware datetime (locale-independent)."""
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    match = _INTERNALDATE.fullmatch(text)
    if not match or match.group(2).lower() not in _MONTHS:
        return None
    day, mon, year, hh, mm, ss, sign, tzh, tzm = match.groups()
    offset = timedelta(hours=int(tzh), minutes=int(tzm)) * (-1 if sign == "-" else 1)
    try:
        return datetime(int(year), _MONTHS[mon.lower()], int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset))
    except ValueError:
        return None


def response_code(text: str) -> str | None:
    match = re.match(r"\s*\[([A-Za-z-]+)", text)
    return match.group(1).upper() if match else None


class _LongLinesMixin:
    file: Any

    def readline(self) -> bytes:
        line: bytes = self.file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise imaplib.IMAP4.error(f"got more than {_MAX_LINE} bytes in one line")
        return line


class IMAP4Connection(_LongLinesMixin, imaplib.IMAP4):
    pass


class IMAP4SSLConnection(_LongLinesMixin, imaplib.IMAP4_SSL):
    pass


def mailbox_name(value: Any) -> str:
    if isinstance(value, bytes):
        return decode_folder_name(value)
    return decode_folder_name(str(value))


def status_value(items: list[Any], key: str) -> int | None:
    for k in range(0, len(items) - 1, 2):
        if str(items[k]).upper() == key:
            try:
                return int(items[k + 1])
            except (TypeError, ValueError):
                return None
    return None


def quote_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
