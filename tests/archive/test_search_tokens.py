"""The tokenizer's fast paths against their plain forms."""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from archive.search import tokens as tk

# Text as mail has it: mostly ASCII words, accented and non-Latin letters,
# combining marks on their own, compatibility forms (ligatures, full-width).
_PIECES = st.sampled_from(
    [
        "Müller",
        "Straße",
        "déjà",
        "naïve",
        "ﬁle",
        "Ｆｕｌｌ",
        "Ǆ",
        "e\u0301",
        "\u0301",
        "Ελλάδα",
        "日本語",
        "İstanbul",
        "ǅemal",
    ]
)
# Marks of every block (Hebrew, Arabic, symbols, musical…), not only U+0300–036F.
_MARKS = st.characters(categories=["Mn", "Mc", "Me"])
_MAILISH = st.lists(
    st.one_of(
        st.text(max_size=12),
        _PIECES,
        _MARKS,
        st.sampled_from([" ", "\n", "-", "_", "\u05d0\u0591", "a\u20d7", "o\u034f\u0308"]),
    ),
    max_size=40,
).map("".join)


@functools.cache
def _every_mark() -> dict[int, None]:
    return {cp: None for cp in range(0x300, 0x20000) if unicodedata.combining(chr(cp))}


def plain_fold(text: str) -> str:
    """What ``fold`` must give, in its plainest form: casefold, NFKD, every combining mark deleted."""
    return unicodedata.normalize("NFKD", text.casefold()).translate(_every_mark())


@given(_MAILISH)
def test_fold_is_the_plain_fold(text: str) -> None:
    assert tk.fold(text) == plain_fold(text)


def test_fold_folds_case_accents_and_compatibility_forms() -> None:
    assert tk.fold("Müller Straße ﬁle Ｆｕｌｌ e\u0301") == "muller strasse file full e"
    assert tk.words("Grüsse aus Zürich, déjà-vu") == ["grusse", "aus", "zurich", "deja", "vu"]


@given(st.lists(st.sampled_from(["the", "solar", "roof__tile", "from_alice", "ag_", "x" * 84]), max_size=300))
def test_capped_keeps_every_token_and_the_order_of_how_often(tokens: list[str]) -> None:
    capped = Counter(tk.capped(" ".join(tokens)).split())
    counts = Counter(tokens)
    assert set(capped) == set(counts)
    for token, n in counts.items():
        assert capped[token] == tk._kept(n) <= n
    # A token said more often is never kept fewer times (relevance keeps its order).
    kept = [tk._kept(n) for n in range(1, 400)]
    assert kept == sorted(kept)


def test_capped_figures() -> None:
    assert [tk._kept(n) for n in (1, 2, 3, 4, 5, 6, 11, 12, 100)] == [1, 2, 3, 3, 3, 4, 4, 5, 8]
    assert tk.capped("a b a c a a a") == "a a a b c"
    assert tk.capped("solar panels") == "solar panels"
    assert tk.capped("") == ""
