"""The query language, parsed (no database needed): what each kind of term
becomes, and the tokenizer both search engines share."""

from __future__ import annotations

import pytest

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
