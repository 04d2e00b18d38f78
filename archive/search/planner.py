"""The full-text index, or documents newest first?

MariaDB (``plan``):

InnoDB answers a FULLTEXT query by reading the complete posting list of every
term (about 2 µs per document that has the term) before it returns a row. For a
rare word that is nothing; for a word in 30 % of a million documents it is
0.6 s. Reading documents newest first and matching their token stream with
LIKE costs about 45 µs per document, but stops as soon as a page's worth of
hits (the count window) is found — for a common word, after a few thousand.
A small date range bounds it the same way. The token figures come from
``statistics.py``; the costs were measured with ``bench/search_bench.py``
(MariaDB 10.11, the tables in the buffer pool).

An excluded word that is common is checked on the row rather than in the
index, for the same reason.

A word and a date range: InnoDB cannot intersect its full-text index with the
date index, so without help it ranks every match of the word and reads rows
until enough of them fall in the range (for a word in 13 % of the documents
and a range of 5 %: 0.76 s at a million). Every entry also holds the month
of its document date as a token (``tokens.month_token``), so the range can be
asked of the index as "one of these months", at the cost of reading the
months' posting lists; the plan takes whichever costs less, and the exact
date condition stays on the row either way.

InnoDB does not stop reading posting lists when a statement runs out of time
(``max_statement_time`` takes effect only between rows), so the search's time
budget (``budget.py``) cannot cut an index read short. Where the posting lists
alone would outlast the budget, the plan reads documents one by one instead
(which the budget does stop) or, when relevance was asked for, the search is
"too complex" before it starts.

SQLite (``plan_fts5``): FTS5 finds the documents of a word quickly (~0.5 µs
each), but ranking them by relevance costs ~1.2 µs more per document, all of
them before the first row: 0.7 s for a word in 57 % of a million documents. For
a common word the date index is walked instead, newest first, each document
looked up in the word's matches (~1 µs per document walked), until the count
window is full: 0.2 s for that word (bench/search_bench.py, SQLite 3.40).
A prefix stands for all its words, whose lists FTS5 merges inside one step of
the statement, which the budget's progress handler cannot interrupt: ``s*``
is 2.9 s at a million documents. A search under a time budget whose prefixes
would outlast it is "too complex" before it starts, either way.
"""

from __future__ import annotations

import dataclasses
import math

from django.db.models import QuerySet

from archive.models import Document
from archive.search import statistics, upgrade
from archive.search import tokens as tk
from archive.search.budget import SearchTooComplex, budget_seconds, remaining_seconds
from archive.search.query import ParsedQuery, TextTerm

SECONDS_PER_POSTING = 2e-6
# A hit's document row, in relevance order: rows all over the table, seldom in
# the buffer pool (with a quarter of the data in it, ~39 µs a row against
# ~1.2 µs a posting: bench/README.md).
SECONDS_PER_HIT_ROW = 60e-6
# A document read newest first and its entry matched with LIKE: ~25 µs where
# the newest entries are in the pool (a quarter of the data in it), ~200 µs
# where they are not (128 MB): between the two, since a wrong choice costs the
# scan far more than it costs the index.
SECONDS_PER_SCANNED_DOCUMENT = 90e-6
# The same inside a date range, whose rows are seldom in the pool (~85 µs a
# document against ~1.2 µs a posting).
SECONDS_PER_SCANNED_RANGE_DOCUMENT = 140e-6
UNKNOWN_FRACTION = 0.0005  # not in the figures: rarer than the sample can tell
LATE_EXCLUSION_FRACTION = 0.01
RANGE_PROBE = 20_000  # documents of a date range counted to size it
# SQLite FTS5 (plan_fts5)
SECONDS_PER_RANKED_HIT = 1.2e-6  # bm25 and the sort, per matching document
SECONDS_PER_WALKED_DOCUMENT = 1e-6  # the date index, a document probed in the matches
SECONDS_PER_PREFIX_POSTING = 0.3e-6  # a prefix's words merged (0.2-0.33 µs measured at 1M)


@dataclasses.dataclass(frozen=True)
class Plan:
    scan: bool = False  # documents newest first, matched one by one
    late_exclusions: tuple[TextTerm, ...] = ()  # excluded terms checked on the row
    months: tuple[str, ...] = ()  # one of these month tokens required in the index (a date range)


def _index_tokens(term: TextTerm) -> list[str]:
    """The tokens InnoDB looks up for a term (word pairs for a phrase)."""
    if len(term.tokens) > 1 and not term.prefix:
        return tk.shingles(list(term.words), term.field_prefix)
    return list(term.tokens)


def plan(
    parsed: ParsedQuery, qs: QuerySet[Document], group_ids: list[int] | None, *, window: int, allow_scan: bool
) -> Plan:
    terms = parsed.terms
    positive = [t for t in terms if not t.negate]
    # A date range's months, where every entry has its month token (upgrade.py).
    months = parsed.date_months() if positive else []
    if months and not upgrade.months_ready():
        months = []
    est = statistics.lookup(
        [*(t for term in terms if not term.prefix for t in _index_tokens(term)), *months],
        (term.tokens[0] for term in terms if term.prefix),
        group_ids,
    )
    if not est.total:
        return Plan()

    def postings(term: TextTerm) -> float:  # postings per document InnoDB reads for the term
        if term.prefix:
            return est.prefix_postings(term.tokens[0], UNKNOWN_FRACTION)
        return sum(est.fraction(t, UNKNOWN_FRACTION) for t in _index_tokens(term))

    def share(term: TextTerm) -> float:  # documents that have the term
        if term.prefix:
            return est.prefix(term.tokens[0], UNKNOWN_FRACTION)
        # A phrase as if its pairs were independent: rarer than it may be, which
        # errs towards the index (bounded by the pairs' lists) over a long scan.
        return math.prod(est.fraction(t, UNKNOWN_FRACTION) for t in _index_tokens(term))

    late = tuple(t for t in terms if t.negate and share(t) >= LATE_EXCLUSION_FRACTION)
    n, visible = est.total, max(est.visible, 1e-6)
    index_read = n * sum(postings(t) for t in terms if t not in late) * SECONDS_PER_POSTING
    if not positive or (not allow_scan and not months):
        if index_read > budget_seconds():  # InnoDB would not stop in time
            raise SearchTooComplex()
        return Plan(late_exclusions=late)
    month_share = min(1.0, sum(est.fraction(m, UNKNOWN_FRACTION) for m in months))
    scan_limit = n * visible  # documents the user may open
    in_range = 1.0  # share of those the other conditions leave
    if parsed.narrows_by_index:
        counted = qs.order_by()[: RANGE_PROBE + 1].count()  # ~5 ms at a million (the date index)
        if counted <= RANGE_PROBE:
            in_range = min(1.0, counted / scan_limit)
            scan_limit = counted
        elif months:  # too many to count: the months' share (the range's edges counted whole)
            in_range = month_share
            scan_limit *= month_share
    matching = math.prod(share(t) for t in positive)
    selectivity = matching * math.prod(1 - share(t) for t in terms if t.negate)
    row_cost = SECONDS_PER_SCANNED_DOCUMENT if late else SECONDS_PER_HIT_ROW
    # The index: every posting list, then rows in index order until the window is
    # full — with the months asked too, (nearly) every hit is in the range.
    chosen: tuple[str, ...] = ()
    read = index_read
    index_cost = index_read + min(n * matching, window / max(visible * in_range, 1e-9)) * row_cost
    if months:
        month_read = index_read + n * month_share * SECONDS_PER_POSTING
        month_cost = month_read + min(n * matching * in_range, window / visible) * row_cost
        if month_cost < index_cost and month_read <= max(index_read, budget_seconds()):
            chosen, read, index_cost = tuple(months), month_read, month_cost
    if not allow_scan:
        if read > budget_seconds():  # InnoDB would not stop in time
            raise SearchTooComplex()
        return Plan(late_exclusions=late, months=chosen)
    # One by one: until the window is full, or the end of the range.
    scanned = min(scan_limit, window / max(selectivity, 1e-9))
    scan_cost = scanned * (
        SECONDS_PER_SCANNED_RANGE_DOCUMENT if parsed.narrows_by_index else SECONDS_PER_SCANNED_DOCUMENT
    )
    # A scan the budget stops rather than an index read it cannot stop.
    if scan_cost < index_cost or read > budget_seconds():
        return Plan(scan=True, late_exclusions=late)
    return Plan(late_exclusions=late, months=chosen)


def plan_fts5(parsed: ParsedQuery, group_ids: list[int] | None, *, window: int, allow_scan: bool) -> Plan:
    """SQLite: relevance through FTS5's ranking, or the date index walked
    newest first (``Plan(scan=True)``) where that fills the count window
    sooner than ranking every match would take. Only words, field words and
    prefixes count as common: a phrase's words may be common and the phrase
    rare, and walking for a rare phrase would read the whole archive. Raises
    SearchTooComplex where the prefixes alone would outlast the rest of the
    time budget in force (``budget.time_budget``; none: no limit)."""
    positive = parsed.positive_terms
    words = [term for term in parsed.terms if len(term.tokens) == 1]
    if (not allow_scan or not positive) and not any(term.prefix for term in words):
        return Plan()  # ranked, and no prefix to weigh against the budget: the statistics change nothing
    est = statistics.lookup(
        (term.tokens[0] for term in words if not term.prefix),
        (term.tokens[0] for term in words if term.prefix),
        group_ids,
    )
    if not est.total:
        return Plan()
    remaining = remaining_seconds()
    if remaining is not None:  # (a search without a budget, a legal hold's, runs to its end)
        postings = sum(est.prefix_postings(t.tokens[0], UNKNOWN_FRACTION) for t in words if t.prefix)
        if est.total * postings * SECONDS_PER_PREFIX_POSTING > remaining:
            raise SearchTooComplex()
    if not allow_scan or not positive:
        return Plan()

    def share(term: TextTerm) -> float:
        if len(term.tokens) > 1:
            return UNKNOWN_FRACTION  # a phrase: as if rare
        if term.prefix:
            return est.prefix(term.tokens[0], UNKNOWN_FRACTION)
        return est.fraction(term.tokens[0], UNKNOWN_FRACTION)

    matching = math.prod(share(t) for t in positive)
    selectivity = matching * math.prod(1 - share(t) for t in parsed.negative_terms)
    ranked = est.total * matching * SECONDS_PER_RANKED_HIT
    walked = min(est.total, window / max(selectivity * est.visible, 1e-9)) * SECONDS_PER_WALKED_DOCUMENT
    return Plan(scan=walked < ranked)
