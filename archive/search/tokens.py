"""One tokenizer for the index, the query and the snippets.

Both databases only ever see text this module produced: tokens separated by
spaces. So SQLite FTS5 and MariaDB FULLTEXT match the same words, and the
database's own rules matter little:

- case and accents are folded here (``Müller`` = ``muller``, ``Straße`` = ``strasse``);
- a word is a run of letters and digits; ``_`` separates words in the source
  text, so it is free for the two kinds of synthetic token below;
- words shorter than ``MIN_TOKEN_CHARS`` are padded with ``_`` (``ag`` → ``ag_``)
  because InnoDB does not index tokens below ``innodb_ft_min_token_size`` (3);
  a prefix query ``ag*`` still matches the padded token;
- tokens are cut at ``MAX_TOKEN_CHARS`` (``innodb_ft_max_token_size``, 84);
- a field value is indexed twice: as plain words, and as field tokens
  ``<field>_<word>`` (``from_alice``) which ``from:alice`` matches;
- on MariaDB, pairs of adjacent words are indexed too (``annual__report``),
  for phrases (see ``shingles``), and a token's repeats beyond a few are
  dropped (``capped``): nothing there uses word positions;
- on MariaDB, the month of the document date is a token too (``_m201810``:
  ``month_token``), so that the full-text index can answer a date range
  together with the words. It starts with ``_``, which no word or field token
  does, so no query text can produce it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator

MIN_TOKEN_CHARS = 3
MAX_TOKEN_CHARS = 84
_WORD = re.compile(r"[^\W_]+")


@functools.cache
def _combining_marks() -> dict[int, None]:
    """A str.translate table deleting every combining mark (accents after NFKD)."""
    return {cp: None for cp in range(0x300, 0x20000) if unicodedata.combining(chr(cp))}


def fold(text: str) -> str:
    """Lower case without accents, as the tokens are."""
    return _fold(text)


# An accented Latin letter's mark after NFKD: U+0300–036F, less U+034F (the
# grapheme joiner, which has no combining class and stays, as in the table).
_LATIN_MARKS = re.compile("[\u0300-\u034e\u0350-\u036f]+")
_ABOVE_MARKS = re.compile("[\u0370-\U0010ffff]+")  # where the other blocks' marks are


def _fold(text: str) -> str:
    if text.isascii():
        return text.lower()
    # ``translate`` over the whole text costs ~60 ns a character: the marks of
    # accented Latin letters (most of a European mail's) go by one expression,
    # and only runs of characters above them are looked up one by one.
    folded = _LATIN_MARKS.sub("", unicodedata.normalize("NFKD", text.casefold()))
    if folded.isascii():
        return folded
    marks = _combining_marks()
    return _ABOVE_MARKS.sub(lambda run: run.group().translate(marks), folded)


def words(text: str) -> list[str]:
    """The folded words of ``text``, unpadded."""
    return _WORD.findall(_fold(text))


def word_spans(text: str) -> Iterator[tuple[int, int, list[str]]]:
    """(start, end, folded words) for each word of ``text`` as written: lets a
    snippet highlight the original characters of a matching word."""
    if text.isascii():  # folding keeps every position: one pass
        for match in _WORD.finditer(text.lower()):
            yield match.start(), match.end(), [match.group()]
        return
    for match in _WORD.finditer(text):
        word = match.group()
        folded = [word.lower()] if word.isascii() else _WORD.findall(_fold(word))
        if folded:
            yield match.start(), match.end(), folded


def pad(word: str) -> str:
    if len(word) < MIN_TOKEN_CHARS:
        word = word + "_" * (MIN_TOKEN_CHARS - len(word))
    return word[:MAX_TOKEN_CHARS]


def padded(folded: list[str]) -> list[str]:
    """``[pad(w) for w in folded]`` without a call per word (every word of every
    text the index holds goes through here)."""
    short, cut, fill = MIN_TOKEN_CHARS, MAX_TOKEN_CHARS, "_" * MIN_TOKEN_CHARS
    return [w[:cut] if len(w) >= short else (w + fill)[:short] for w in folded]


@functools.lru_cache(maxsize=4096)
def field_prefix(field_name: str) -> str:
    """``from`` → ``from``, ``e-mail_2`` → ``email2``: letters and digits only."""
    return "".join(_WORD.findall(_fold(field_name))) or "field"


def field_token(prefix: str, word: str) -> str:
    return f"{prefix}_{word}"[:MAX_TOKEN_CHARS]


def shingle(first: str, second: str, prefix: str = "") -> str:
    """The token of two adjacent words, ``annual__report`` (``subject_annual__report``
    in a field): what a phrase is matched by on MariaDB (see ``shingles``)."""
    return (f"{prefix}_{first}__{second}" if prefix else f"{first}__{second}")[:MAX_TOKEN_CHARS]


def shingles(folded: list[str], prefix: str = "") -> list[str]:
    """Tokens of each pair of adjacent words. InnoDB checks a phrase by reading
    and re-parsing every document that has all its words — for common words,
    most of the archive. A phrase is matched by its word pairs instead: one
    index lookup per pair (exact for two words; for longer phrases every pair
    must occur, in practice the phrase)."""
    cut = MAX_TOKEN_CHARS  # shingle() for each pair, without a call per pair
    if prefix:
        return [f"{prefix}_{a}__{b}"[:cut] for a, b in zip(folded, folded[1:], strict=False)]
    return [f"{a}__{b}"[:cut] for a, b in zip(folded, folded[1:], strict=False)]


def _kept(count: int) -> int:
    """How many of a token's ``count`` occurrences an entry keeps (``capped``):
    all up to three, then one more for each doubling (6 → 4, 12 → 5, 100 → 8)."""
    if count <= 3:
        return count
    return 3 + (count // 3).bit_length() - 1


def capped(stream: str) -> str:
    """A token stream with each token's repeats cut to ``_kept`` of them, the
    repeats side by side, in the order of first occurrence. For an engine that
    matches by the tokens' presence only (MariaDB: phrases by word pairs, the
    row check by LIKE): what matches is unchanged, a word said more often never
    ranks lower (up to three times exactly as before), and InnoDB, which
    indexes every occurrence, indexes fewer (the word "the" 100 times becomes
    8; 18 % fewer tokens in the IMAP bench's mails)."""
    tokens = stream.split()
    counts = Counter(tokens)
    if len(counts) == len(tokens):
        return stream
    return " ".join([token if n == 1 else " ".join([token] * _kept(n)) for token, n in counts.items()])


MONTH_PREFIX = "_m"
MAX_MONTH_TOKENS = 240  # a longer range is not worth reading by its month tokens


def month_token(moment: dt.datetime) -> str:
    """The token of the month (UTC) of an aware ``moment``: ``_m201810``."""
    utc = moment.astimezone(dt.UTC)
    return _month(utc.year, utc.month)


def _month(year: int, month: int) -> str:
    return f"{MONTH_PREFIX}{year:04d}{month:02d}"


def month_tokens(start: dt.datetime, end: dt.datetime) -> list[str]:
    """The month tokens of every moment in ``[start, end)`` (aware), oldest
    first: UTC months, so that they agree with ``month_token`` whatever the
    time zone of the bounds. Empty for an empty range, or one of more than
    ``MAX_MONTH_TOKENS`` months."""
    if end <= start:
        return []
    first = start.astimezone(dt.UTC)
    last = (end - dt.timedelta(microseconds=1)).astimezone(dt.UTC)
    count = (last.year - first.year) * 12 + last.month - first.month + 1
    if count > MAX_MONTH_TOKENS:
        return []
    months = (divmod(first.month - 1 + i, 12) for i in range(count))
    return [_month(first.year + years, month + 1) for years, month in months]


def tokens(text: str) -> list[str]:
    """Index/query tokens of free text."""
    return padded(words(text))


def field_tokens(field_name: str, text: str) -> list[str]:
    return prefixed(field_prefix(field_name), words(text))


def prefixed(prefix: str, folded: list[str]) -> list[str]:
    """``[field_token(prefix, w) for w in folded]`` without a call per word."""
    cut = MAX_TOKEN_CHARS
    return [f"{prefix}_{w}"[:cut] for w in folded]
