"""The one byte decoder of the archive: the charset a mail declares when the
bytes really are in it, else what the bytes look like (charset-normalizer's
mess measure, a sibling part's declared charset as the first guess), with the
labels mailers write mapped as browsers map them. Viewing, processing, search
text and header fields all decode through ``decode_bytes``."""

from __future__ import annotations

import codecs
import re

from charset_normalizer.md import mess_ratio

_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
# Charset labels that mailers write but Python does not know, or knows as a
# narrower set than what such mails contain (as the WHATWG Encoding Standard
# maps them for browsers). None: the label says nothing; guess.
_CHARSET_ALIASES: dict[str, str | None] = {
    "ansi_x3.110-1983": "cp1252",  # a 1983 teletext set; what carries the label is Latin-1
    "ansi_x3.4-1968": "ascii",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "ascii",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "cn-gb": "gb18030",
    "big5": "big5hkscs",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "tis-620": "cp874",
    "x-mac-roman": "mac-roman",
    "macintosh": "mac-roman",
    "x-user-defined": None,
    "unknown-8bit": None,
    "x-unknown": None,
    "unknown": None,
    "default": None,
    "charset": None,
}
# What an undeclared 8-bit text is tried as, most likely first (a tie goes to
# the earlier): the charsets of mail in Western and Central Europe, Cyrillic,
# Chinese, Japanese, Korean, Greek, Turkish, Hebrew, Arabic, Baltic.
_GUESSES = (
    "cp1252",
    "cp1251",
    "gb18030",
    "cp932",
    "big5hkscs",
    "cp949",
    "koi8-r",
    "cp1253",
    "cp1250",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
)
# A guess this much messier than the least messy one is not taken over an earlier one.
_MESS_MARGIN = 0.05
# A declared charset whose text is this messy, where a guess is clean, is a lie.
_MESS_LIE = 0.3
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")


def charset_codec(charset: str | None) -> str | None:
    """The Python codec for a declared charset label; None when the label is
    absent, says nothing, or is unknown."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    if label in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[label]
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _mess(text: str) -> float:
    return float(mess_ratio(text, maximum_threshold=1.0))


def _guess(data: bytes, hint: str | None) -> str:
    """Undeclared (or wrongly declared) 8-bit text: the least messy of the
    likely charsets (charset-normalizer's measure), the hint first."""
    candidates = [hint] if hint and hint not in ("ascii", "utf-8") else []
    candidates += [c for c in _GUESSES if c != hint]
    scored: list[tuple[float, str]] = []
    for codec in candidates:
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        scored.append((_mess(text), text))
    if not scored:
        return data.decode("cp1252", errors="replace")
    least = min(mess for mess, _text in scored)
    return next(text for mess, text in scored if mess <= least + _MESS_MARGIN)


def decode_bytes(data: bytes, charset: str | None = None, *, hint: str | None = None) -> str:
    """Text from bytes, never raising — the one decoder of the archive (view,
    processing, text extraction, 8-bit headers).

    In ``charset`` when one is declared and known (aliases as browsers read
    them) and the bytes are in it: strictly decodable, and not valid UTF-8 of
    non-ASCII text under another label (a "GB2312" body written in UTF-8), and
    not far messier than a guess. Otherwise by its byte order mark, as UTF-8,
    else guessed: ``hint`` (the charset a sibling part declares) first, then
    the likely charsets of mail, by charset-normalizer's mess measure."""
    codec = charset_codec(charset)
    hint_codec = charset_codec(hint)
    if data.isascii():
        return data.decode("ascii")
    if codec is not None and codec.startswith(("utf-16", "utf-32")):
        return data.decode(codec, errors="replace")
    for bom, bom_codec in _BOMS:
        if data.startswith(bom):
            return data.decode(bom_codec, errors="replace")
    try:
        utf8: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        utf8 = None
    if utf8 is not None:
        return utf8  # non-ASCII valid UTF-8 is next to never an accident
    if codec == "utf-8":
        # Declared, and mostly UTF-8: a broken sequence is replaced, not guessed.
        if _UTF8_MULTIBYTE.search(data):
            return data.decode("utf-8", errors="replace")
        codec = None
    if codec is not None and codec != "ascii":
        try:
            declared = data.decode(codec)
        except UnicodeDecodeError:
            declared = None
        except LookupError:
            declared = None
        if declared is not None:
            if _mess(declared) < _MESS_LIE:
                return declared
            guessed = _guess(data, hint_codec)
            return guessed if _mess(guessed) + _MESS_MARGIN < _mess(declared) else declared
    return _guess(data, hint_codec)
