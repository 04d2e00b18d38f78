"""The two full-text engines behind one small interface, chosen by the database
in use: SQLite FTS5 (the embedded default) and MariaDB InnoDB FULLTEXT.

Both match the token stream of ``SearchEntry.text`` (see ``tokens.py``); each
turns a parsed query into its own match syntax and adds it to a Document
queryset: as a filter, and for ordering by relevance."""

from __future__ import annotations

from typing import Any, Protocol

from django.db import connections
from django.db.models import F, Lookup, Q, QuerySet, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Concat

from archive.models import Document
from archive.search import planner
from archive.search import tokens as tk
from archive.search.planner import Plan
from archive.search.query import ParsedQuery, TextTerm

FTS5_TABLE = "archive_searchentry_fts"


class SearchBackend(Protocol):
    shingles: bool  # index word pairs (tokens.shingles) for this engine's phrase search
    month_tokens: bool  # index the document date's month (tokens.month_token) for date ranges

    def plan(
        self, parsed: ParsedQuery, qs: QuerySet[Document], group_ids: list[int] | None, *, window: int, allow_scan: bool
    ) -> Plan:
        """How to run the query (``planner.Plan``); ``qs`` has the other conditions."""

    def filter(self, qs: QuerySet[Document], terms: list[TextTerm], plan: Plan) -> QuerySet[Document]:
        """Documents matching all positive terms and none of the negative ones."""

    def order_by_relevance(self, qs: QuerySet[Document], terms: list[TextTerm]) -> QuerySet[Document]:
        """The filtered queryset, best match first (needs positive terms)."""

    def rebuild(self) -> None:
        """Make the engine's index agree with the SearchEntry table again."""


class _BooleanModeMatch(Lookup):  # type: ignore[type-arg]
    """``MATCH (column) AGAINST (%s IN BOOLEAN MODE)`` as a WHERE condition. A
    Lookup, so that Django puts it in WHERE as it is — a bare boolean expression
    would become ``… = 1`` on MySQL, which neither uses the index nor means the same."""

    lookup_name = "boolean_mode_match"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        rhs_sql, rhs_params = self.process_rhs(compiler, connection)
        return f"MATCH ({lhs_sql}) AGAINST ({rhs_sql} IN BOOLEAN MODE)", [*lhs_params, *rhs_params]


# --- SQLite FTS5 ---------------------------------------------------------------


def _fts5_term(term: TextTerm) -> str:
    # Tokens are letters, digits and "_" only; quoting keeps FTS5 keywords inert.
    phrase = '"' + " ".join(term.tokens) + '"'
    return phrase + " *" if term.prefix else phrase


def fts5_expression(terms: list[TextTerm]) -> str:
    return " AND ".join(_fts5_term(t) for t in terms)


class SQLiteFTS5:
    shingles = False  # FTS5 keeps word positions: phrases are cheap
    month_tokens = False  # and intersects its matches with the date index itself

    def plan(
        self, parsed: ParsedQuery, qs: QuerySet[Document], group_ids: list[int] | None, *, window: int, allow_scan: bool
    ) -> Plan:
        # Ranking by relevance, or the date index walked for a common word (planner.py).
        return planner.plan_fts5(parsed, group_ids, window=window, allow_scan=allow_scan)

    def filter(self, qs: QuerySet[Document], terms: list[TextTerm], plan: Plan) -> QuerySet[Document]:
        positive = [t for t in terms if not t.negate]
        negative = [t for t in terms if t.negate]
        if positive:
            expr = fts5_expression(positive)
            if negative:
                expr = f"({expr}) NOT ({' OR '.join(_fts5_term(t) for t in negative)})"
            if plan.scan:
                # Newest first along the date index, each document looked up in the
                # matches ("+" keeps SQLite from starting at the matches instead); no rank.
                return qs.extra(
                    where=[
                        f'+"archive_document"."id" IN (SELECT rowid FROM "{FTS5_TABLE}" WHERE "{FTS5_TABLE}" MATCH %s)'
                    ],
                    params=[expr],
                )
            # The FTS5 table joined (Django has no relation to it): SQLite starts
            # from the match and looks the documents up by rowid; its rank
            # (bm25, lower is better) is there for ordering, computed once per hit.
            return qs.extra(
                tables=[FTS5_TABLE],
                where=[f'"{FTS5_TABLE}".rowid = "archive_document"."id"', f'"{FTS5_TABLE}" MATCH %s'],
                params=[expr],
                select={"search_rank": f'-"{FTS5_TABLE}".rank'},
            )
        if negative:
            return qs.exclude(
                pk__in=RawSQL(
                    f"SELECT rowid FROM {FTS5_TABLE} WHERE {FTS5_TABLE} MATCH %s",
                    [" OR ".join(_fts5_term(t) for t in negative)],
                )
            )
        return qs

    def order_by_relevance(self, qs: QuerySet[Document], terms: list[TextTerm]) -> QuerySet[Document]:
        return qs.order_by("-search_rank", "-pk")

    def rebuild(self) -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute(f"INSERT INTO {FTS5_TABLE}({FTS5_TABLE}) VALUES ('rebuild')")


# --- MariaDB / MySQL InnoDB FULLTEXT ----------------------------------------------


def _boolean_term(term: TextTerm, op: str) -> str:
    if term.prefix:
        return f"{op}{term.tokens[0]}*"
    if len(term.tokens) == 1:
        return f"{op}{term.tokens[0]}"
    # A phrase: its word pairs (tokens.shingles), not InnoDB's "…", which
    # re-reads every document that has all the words.
    pairs = tk.shingles(list(term.words), term.field_prefix)
    if len(pairs) == 1:
        return f"{op}{pairs[0]}"
    if op == "+":
        return " ".join(f"+{p}" for p in pairs)
    return f"{op}(" + " ".join(f"+{p}" for p in pairs) + ")"


def boolean_mode_expression(terms: list[TextTerm]) -> str:
    return " ".join(_boolean_term(t, "-" if t.negate else "+") for t in terms)


class MariaDBFulltext:
    """InnoDB FULLTEXT. What keeps it fast at a million documents:

    - the search table drives the query (an INNER JOIN to the documents, so
      MariaDB starts with the full-text index), and relevance order is the
      order in which InnoDB returns the hits: *no ORDER BY*, so with a LIMIT
      MariaDB reads the rows of the first hits only, not of all of them;
    - the access rule stays on the document row, not in the full-text
      expression: InnoDB reads the whole posting list of every term, and a
      group token would be in every document of the group;
    - phrases are matched by word pairs (tokens.shingles);
    - a date range can be matched in the index too, by the month tokens of
      its months (tokens.month_token), where the planner finds that cheaper
      than checking the date of each of the words' hits;
    - where the posting lists are long (common words) or a date range is
      short, documents are read newest first and matched one by one instead
      (``planner.py``), with LIKE on the same token stream.
    """

    shingles = True
    month_tokens = True

    def plan(
        self, parsed: ParsedQuery, qs: QuerySet[Document], group_ids: list[int] | None, *, window: int, allow_scan: bool
    ) -> Plan:
        return planner.plan(parsed, qs, group_ids, window=window, allow_scan=allow_scan)

    def filter(self, qs: QuerySet[Document], terms: list[TextTerm], plan: Plan) -> QuerySet[Document]:
        if plan.scan:
            return _like(qs, terms)
        positive = [t for t in terms if not t.negate]
        in_index = [t for t in terms if t not in plan.late_exclusions]
        if positive:
            # isnull=False makes the join an INNER one, which lets MariaDB start from the index.
            expression = boolean_mode_expression(in_index)
            if plan.months:  # one of the range's months; the date condition stays exact
                expression += " +(" + " ".join(plan.months) + ")"
            qs = qs.filter(search_entry__isnull=False).filter(_BooleanModeMatch(F("search_entry__text"), expression))
        elif in_index:  # only exclusions: boolean mode cannot match "everything but"
            qs = qs.exclude(
                pk__in=RawSQL(
                    "SELECT document_id FROM archive_searchentry WHERE MATCH (text) AGAINST (%s IN BOOLEAN MODE)",
                    [" ".join(_boolean_term(t, "") for t in in_index)],
                )
            )
        return _like(qs, list(plan.late_exclusions)) if plan.late_exclusions else qs

    def order_by_relevance(self, qs: QuerySet[Document], terms: list[TextTerm]) -> QuerySet[Document]:
        # InnoDB returns full-text hits best first, as long as the query has no
        # ORDER BY (an ORDER BY on the relevance would make MariaDB read and sort
        # every hit before the first row). Tested in tests/archive/test_search.py.
        return qs.order_by()

    def rebuild(self) -> None:
        pass  # InnoDB maintains the FULLTEXT index with the rows


def _like(qs: QuerySet[Document], terms: list[TextTerm]) -> QuerySet[Document]:
    """The terms matched on the row: LIKE on the token stream (`contains` is
    LIKE BINARY on MariaDB; the tokens are folded already)."""
    qs = qs.filter(search_entry__isnull=False).annotate(
        _search_text=Concat(Value(" "), F("search_entry__text"), Value(" "), output_field=TextField())
    )
    for term in terms:
        if term.prefix:
            pieces = [f" {term.tokens[0]}"]
        elif len(term.tokens) == 1:
            pieces = [f" {term.tokens[0]} "]
        else:
            pieces = [f" {pair} " for pair in tk.shingles(list(term.words), term.field_prefix)]
        condition = Q()
        for piece in pieces:
            condition &= Q(_search_text__contains=piece)
        qs = qs.exclude(condition) if term.negate else qs.filter(condition)
    return qs


def backend_for(alias: str = "default") -> SearchBackend:
    vendor = connections[alias].vendor
    if vendor == "sqlite":
        return SQLiteFTS5()
    if vendor == "mysql":
        return MariaDBFulltext()
    raise NotImplementedError(f"no full-text search for database vendor {vendor!r}")
