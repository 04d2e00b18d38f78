"""The query language, parsed (no database needed): what each kind of term
becomes, and the tokenizer both search engines share."""

from __future__ import annotations

import datetime as dt
import sys
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from archive.models import FieldDefinition
from archive.search import tokens as tk
from archive.search.backends import boolean_mode_expression, fts5_expression
from archive.search.query import SearchQueryError, TextTerm, parse_query

FIELDS = [
    FieldDefinition(name="from", label="From", type="text"),
    FieldDefinition(name="subject", label="Subject", type="text"),
    FieldDefinition(name="date", label="Date", type="date"),
    FieldDefinition(name="due", label="Due date", type="date"),
    FieldDefinition(name="amount", label="Amount", type="number"),
    FieldDefinition(name="paid", label="Paid", type="yesno"),
    FieldDefinition(name="number", label="Number", type="number", internal=True),
    FieldDefinition(name="owner", label="Owner", type="text", internal=True),
]


def terms(text: str) -> list[TextTerm]:
    return parse_query(text, FIELDS).terms


def test_words_are_folded_to_lower_case_without_accents():
    assert tk.tokens("Müller STRASSE Straße Crème") == ["muller", "strasse", "strasse", "creme"]


def test_short_words_are_padded_for_innodb_and_long_ones_cut():
    assert tk.tokens("AG a 12") == ["ag_", "a__", "12_"]
    assert len(tk.tokens("x" * 200)[0]) == tk.MAX_TOKEN_CHARS


def test_word_pairs_cannot_collide_with_field_or_padded_tokens():
    assert tk.shingles(["annual", "report", "x"]) == ["annual__report", "report__x"]
    assert tk.shingles(["from", "alice"]) == ["from__alice"]  # not the field token from_alice
    assert tk.shingles(["annual", "report"], "subject") == ["subject_annual__report"]


def test_underscores_separate_words_so_synthetic_tokens_cannot_be_typed():
    assert tk.tokens("from_alice") == ["from", "alice"]
    assert tk.field_tokens("from", "Alice <alice@example.com>") == [
        "from_alice",
        "from_alice",
        "from_example",
        "from_com",
    ]


def test_plain_words_must_all_match():
    assert [t.tokens for t in terms("Invoice  march")] == [("invoice",), ("march",)]
    assert not any(t.negate for t in terms("invoice march"))


def test_a_quoted_phrase_is_one_term():
    (term,) = terms('"Annual Report"')
    assert term.tokens == ("annual", "report")


def test_an_unclosed_quote_runs_to_the_end():
    (term,) = terms('"annual report')
    assert term.tokens == ("annual", "report")


def test_a_minus_excludes_a_word_or_a_phrase():
    parsed = terms('invoice -draft -"old offer"')
    assert [(t.tokens, t.negate) for t in parsed] == [
        (("invoice",), False),
        (("draft",), True),
        (("old", "offer"), True),
    ]


def test_a_star_makes_a_prefix_search_without_padding():
    (term,) = terms("invoi*")
    assert term.prefix and term.tokens == ("invoi",)
    (short,) = terms("ag*")
    assert short.tokens == ("ag",)  # matches the padded "ag_" as well as "agenda"


def test_a_field_term_matches_field_tokens():
    (term,) = terms("from:Alice")
    assert term.tokens == ("from_alice",)
    (phrase,) = terms('subject:"annual report"')
    assert phrase.tokens == ("subject_annual", "subject_report")
    (negated,) = terms("-from:bob")
    assert negated.negate and negated.tokens == ("from_bob",)


def test_a_field_can_be_named_by_its_label():
    parsed = parse_query("duedate:2024", FIELDS)
    assert parsed.filters and not parsed.terms


def test_an_unknown_field_is_searched_as_text():
    (term,) = terms("re:invoice")
    assert term.tokens == ("re_", "invoice")
    (url,) = terms("https://example.com/a")
    assert url.tokens == ("https", "example", "com", "a__")


def test_date_ranges_become_filters():
    parsed = parse_query("date:2024-01-01..2024-03-31", FIELDS)
    assert not parsed.terms and len(parsed.filters) == 1
    for value in ("2024", "2024-03", "31.3.2024", "..2024-06-30", "2024-01..", "3.2024"):
        assert parse_query(f"date:{value}", FIELDS).filters, value


def test_a_month_token_is_the_utc_month_and_no_text_can_produce_one():
    zurich = ZoneInfo("Europe/Zurich")
    assert tk.month_token(dt.datetime(2024, 3, 1, 0, 30, tzinfo=zurich)) == "_m202402"  # 23:30 UTC
    assert tk.month_token(dt.datetime(2024, 12, 31, 23, 0, tzinfo=dt.UTC)) == "_m202412"
    assert tk.tokens("_m202402 m202402") == ["m202402", "m202402"]
    assert all(not t.startswith("_") for t in tk.field_tokens("m", "_m202402") + tk.shingles(["x", "_m202402"]))


def test_month_tokens_cover_every_moment_of_a_range_in_any_time_zone():
    zurich = ZoneInfo("Europe/Zurich")
    march = (dt.datetime(2024, 3, 1, tzinfo=zurich), dt.datetime(2024, 4, 1, tzinfo=zurich))
    assert tk.month_tokens(*march) == ["_m202402", "_m202403"]  # 1 March 00:00 is 29 February in UTC
    utc = (dt.datetime(2018, 10, 1, tzinfo=dt.UTC), dt.datetime(2019, 5, 1, tzinfo=dt.UTC))
    assert tk.month_tokens(*utc) == [f"_m2018{m}" for m in ("10", "11", "12")] + [f"_m20190{m}" for m in range(1, 5)]
    assert tk.month_tokens(utc[1], utc[0]) == []  # empty
    decades = (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
    assert tk.month_tokens(*decades) == []  # 252 months: more than worth reading
    moments = [march[0] + dt.timedelta(hours=h) for h in range(0, 31 * 24, 7)]
    assert {tk.month_token(m) for m in moments} <= set(tk.month_tokens(*march))


def test_the_date_ranges_of_a_query_leave_their_months():
    with timezone.override("UTC"):
        assert parse_query("date:2018-10..2019-04 invoice", FIELDS).date_months() == tk.month_tokens(
            dt.datetime(2018, 10, 1, tzinfo=dt.UTC), dt.datetime(2019, 5, 1, tzinfo=dt.UTC)
        )
        assert parse_query("date:2024 date:2024-03", FIELDS).date_months() == ["_m202403"]  # both hold
        assert parse_query("date:2024-01..2024-06 date:2024-04..", FIELDS).date_months() == [
            "_m202404",
            "_m202405",
            "_m202406",
        ]
        for text in ("date:2024..", "date:..2024", "-date:2024", "due:2024", "created:2024", "date:2024 date:2023"):
            assert parse_query(text, FIELDS).date_months() == [], text


@pytest.mark.parametrize("value", ["2024-13-01", "yesterday", "..", "2024-02-30"])
def test_a_bad_date_is_a_query_error(value):
    with pytest.raises(SearchQueryError):
        parse_query(f"date:{value}", FIELDS)


def test_numbers_yes_no_owner_and_kind_become_filters():
    for text in (
        "amount:100..250",
        "number:8441",
        "number:10..20",
        "paid:yes",
        "paid:no",
        "owner:sales",
        "kind:mail",
        "-kind:document",
    ):
        parsed = parse_query(text, FIELDS)
        assert parsed.filters and not parsed.terms, text
    with pytest.raises(SearchQueryError):
        parse_query("paid:maybe", FIELDS)
    with pytest.raises(SearchQueryError):
        parse_query("number:abc", FIELDS)


def test_an_exact_number_in_a_number_field_matches_its_normalised_tokens():
    (term,) = terms("amount:100.50")
    assert term.tokens == ("amount_100", "amount_5")


def test_punctuation_only_terms_are_ignored():
    assert parse_query('- "" ... !!', FIELDS).is_empty()


def test_the_engines_get_the_same_terms_in_their_own_syntax():
    parsed = terms('invoice "annual report" -draft invoi*')
    assert fts5_expression([t for t in parsed if not t.negate]) == ('"invoice" AND "annual report" AND "invoi" *')
    # MariaDB matches a phrase by its word pairs (tokens.shingles).
    assert boolean_mode_expression(parsed) == "+invoice +annual__report -draft +invoi*"
    three = terms('"a b c" -"x y z" subject:"annual report"')
    assert boolean_mode_expression(three) == "+a__b +b__c -(+x__y +y__z) +subject_annual__report"


def test_a_passage_marks_prefixes_and_phrases_and_escapes_the_rest():
    from archive.search.snippets import passage

    score, html = passage(
        "Invoices & invoicing: the annual report <now>", [(("invoic",), True), (("annual", "report"), False)]
    )
    assert score == 2
    assert html == (
        "<mark>Invoices</mark> &amp; <mark>invoicing</mark>: the <mark>annual</mark> <mark>report</mark> &lt;now&gt;"
    )
    assert passage("nothing here", [(("invoice",), False)]) is None


# --- bounds (issue 11): a search cannot ask for unbounded work --------------------------


def test_repeated_terms_are_merged():
    assert terms("a* " * 300) == [TextTerm(tokens=("a",), prefix=True, words=("a",))]
    assert len(terms('invoice "annual report" invoice INVOICE "Annual Report" -draft -draft')) == 3
    assert len(parse_query("date:2024 date:2024 date:2024", FIELDS).filters) == 1


def test_a_query_too_long_or_with_too_many_terms_is_refused_with_a_clear_message():
    from archive.search.query import MAX_QUERY_CHARS, MAX_TERMS

    with pytest.raises(SearchQueryError, match=f"at most {MAX_QUERY_CHARS:,} are allowed — narrow it"):
        parse_query("a" * (MAX_QUERY_CHARS + 1), FIELDS)
    parse_query(" ".join(f"w{i}" for i in range(MAX_TERMS)), FIELDS)
    with pytest.raises(SearchQueryError, match=f"{MAX_TERMS + 1} terms .* at most {MAX_TERMS}"):
        parse_query(" ".join(f"w{i}" for i in range(MAX_TERMS + 1)), FIELDS)
    with pytest.raises(SearchQueryError, match="each word of a phrase counts"):
        parse_query('"' + " ".join(f"w{i}" for i in range(MAX_TERMS + 1)) + '"', FIELDS)


@pytest.mark.parametrize(
    "query",
    [
        "date:9999-12-31",
        "date:9999",
        "date:..9999-12-31",
        "date:0001-01-01..",
        "due:9999-12",
        "date:31.12.9999",
        "number:" + "9" * 30,
        "number:-" + "9" * 30 + "..",
        "amount:" + "9" * 40 + "..",
    ],
)
def test_dates_and_numbers_no_database_can_compare_are_refused(query):
    with pytest.raises(SearchQueryError, match="year must be between|out of range"):
        parse_query(query, FIELDS)


def test_a_huge_exponent_is_not_expanded_into_digits():
    with pytest.raises(SearchQueryError, match="not a number"):
        parse_query("amount:1e999999999..", FIELDS)
    (term,) = terms("amount:1e999999999")  # searched as text, not as a billion zeros
    assert len(term.tokens[0]) < 40


def _lines_run(function, *args) -> int:
    """Python lines executed by one call of ``function`` (comprehensions and key
    functions included): a step count, the same on a busy machine as on a quiet one."""
    steps = 0

    def local(frame, event, arg):
        nonlocal steps
        steps += event == "line"
        return local

    sys.settrace(lambda frame, event, arg: local)
    try:
        function(*args)
    finally:
        sys.settrace(None)
    return steps


def _pairwise_window(hits, owner):  # the old way: every hit against every other
    best = -1
    for i, _, _ in hits:
        shown = {h for j, n, h in hits if owner[j] >= owner[i] - 5 and owner[j + n - 1] < owner[i] + 30}
        best = max(best, len(shown))
    return best


def test_snippets_take_linear_time_in_the_number_of_matches():
    """The penetration test's 1,300 ``a*`` spent 78 % of 37 s here: every hit
    was compared with every other. Now the best window is one sweep: twice the
    hits, about twice the steps (the pairwise search takes four times as many)."""
    from archive.search.snippets import _best_window, passage

    def hits(n):
        return [(i, 1, i % 16) for i in range(n)], list(range(n + 1))

    linear = _lines_run(_best_window, *hits(6400)) / _lines_run(_best_window, *hits(3200))
    pairwise = _lines_run(_pairwise_window, *hits(800)) / _lines_run(_pairwise_window, *hits(400))
    assert 1.9 < linear < 2.1
    assert pairwise > 3.5  # the measure tells the two apart

    text = " ".join(f"a{i % 16} b{i % 16}" for i in range(5000))  # 200 hits (the cap) per highlight
    highlights = [((f"a{i}",), False) for i in range(16)] + [((f"b{i}",), True) for i in range(16)]
    score, html = passage(text, highlights)
    assert score > 16 and "<mark>a" in html and "<mark>b" in html


def test_the_best_window_is_the_one_the_quadratic_search_found():
    import random

    from archive.search.snippets import LEAD_WORDS, WINDOW_WORDS, _best_window

    def quadratic(hits, owner):
        best_start, best_score = 0, -1
        for i, _, _ in hits:
            start = max(0, owner[i] - LEAD_WORDS)
            shown = {h for j, n, h in hits if owner[j] >= start and owner[j + n - 1] < start + WINDOW_WORDS}
            if len(shown) > best_score:
                best_start, best_score = start, len(shown)
        return best_start, best_score

    rng = random.Random(11)
    for _ in range(500):
        owner, at = [], 0
        for _ in range(rng.randint(1, 200)):
            owner.append(at)
            at += rng.random() < 0.8  # a written word may fold into several words
        hits = sorted(
            (j, n, rng.randrange(5))
            for n in (rng.randint(1, 4) for _ in range(rng.randint(1, 40)))
            if len(owner) >= n
            for j in [rng.randrange(len(owner) - n + 1)]
        )
        if hits:
            assert _best_window(hits, owner) == quadratic(hits, owner)


def test_prefixes_are_bounded_apart_from_words():
    from archive.search.query import MAX_PREFIX_TERMS

    parse_query(" ".join(f"p{i}*" for i in range(MAX_PREFIX_TERMS)), FIELDS)
    with pytest.raises(SearchQueryError, match=f"{MAX_PREFIX_TERMS + 1} words ending in \\*; at most"):
        parse_query(" ".join(f"p{i}*" for i in range(MAX_PREFIX_TERMS + 1)), FIELDS)


def test_the_token_lists_are_the_tokens_of_each_word():
    """``padded``, ``prefixed`` and ``shingles`` build whole lists at once: the
    same tokens as ``pad``, ``field_token`` and ``shingle`` word by word."""
    long = "x" * 90
    cases = [[], ["a"], ["ab", "abc", "abcd"], [long, "é", "z"], tk.words("Straße Müller 42 a b c d " + long + " fin")]
    for folded in cases:
        assert tk.padded(folded) == [tk.pad(w) for w in folded]
        assert tk.prefixed("subject", folded) == [tk.field_token("subject", w) for w in folded]
        for prefix in ("", "from", "x" * 80):
            expected = [tk.shingle(a, b, prefix) for a, b in zip(folded, folded[1:], strict=False)]
            assert tk.shingles(folded, prefix) == expected
    assert tk.padded(["a", "ab", long]) == ["a__", "ab_", "x" * tk.MAX_TOKEN_CHARS]


def test_a_mariadb_entry_begins_with_its_month_where_no_cap_can_cut_it(settings):
    from archive.models import Document
    from archive.search.indexing import entry_text

    settings.SEARCH_MAX_INDEX_CHARS = 200
    document = Document(values={"title": "Offer"}, notes="", date=dt.datetime(2018, 11, 5, tzinfo=dt.UTC))
    text = entry_text(document, [("mail.eml", "word " * 1000)], {}, shingles=True, months=True)
    assert text.split()[0] == "_m201811" and len(text) <= 200
    assert not _months(entry_text(document, [("mail.eml", "word")], {}))  # SQLite's: no months
    document.date = None
    assert not _months(entry_text(document, [("mail.eml", "word")], {}, shingles=True, months=True))


def _months(stream: str) -> list[str]:
    return [token for token in stream.split() if token.startswith(tk.MONTH_PREFIX)]
