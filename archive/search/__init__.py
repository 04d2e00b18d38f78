"""Full-text search over fields, notes, mail bodies and attachment text.

The interface the rest of the archive uses:

- ``search_documents(user, text, …)`` → ``SearchResults``: the documents the
  user may open that match, as a queryset (so the table view pages and sorts
  it like any other), plus ``snippets(page)`` for the shown rows;
- ``index_document(document)`` — call inside the transaction that changes a
  document's fields or notes (``archive.services`` does);
- ``index_documents(numbers)`` — bulk, for ``manage.py reindex``;
- ``index_new_documents(documents, files, field_types)`` — the entries of just-created
  documents from the objects in hand (``documents_create_many``);
- ``parse_query`` / ``SearchQueryError`` — the query language (``query.py``),
  bounded in length and terms;
- ``time_budget()`` — run a search's statements under the per-query time
  budget (``budget.py``): ``SearchTooComplex`` past it.

Which engine runs the match is decided by the database in use (``backends.py``):
SQLite FTS5 or MariaDB InnoDB FULLTEXT; on MariaDB ``planner.py`` may read
documents newest first instead where the index would read long posting lists
(common words; figures from ``statistics.py``). The access rule is the
queryset from ``selectors.documents_visible_to``: the match only narrows it,
so hits, counts and snippets never include a document the user cannot open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from django.db.models import F, QuerySet

from archive import selectors
from archive.models import Document, FieldDefinition
from archive.paging import SEARCH_COUNT_LIMIT, WindowPaginator
from archive.search.backends import backend_for
from archive.search.budget import SearchTooComplex, time_budget
from archive.search.indexing import index_document, index_documents, index_new_documents
from archive.search.query import MAX_QUERY_CHARS, ParsedQuery, SearchQueryError, parse_query
from archive.search.snippets import Snippet, snippets_for

__all__ = [
    "MAX_QUERY_CHARS",
    "ParsedQuery",
    "SearchQueryError",
    "SearchResults",
    "SearchTooComplex",
    "Snippet",
    "index_document",
    "index_documents",
    "index_new_documents",
    "parse_query",
    "search_documents",
    "time_budget",
]


@dataclasses.dataclass
class SearchResults:
    query: ParsedQuery
    documents: QuerySet[Document]  # visible, matching, in result order
    definitions: list[FieldDefinition]
    user: selectors.User
    by_relevance: bool = False

    def snippets(self, page: Sequence[Document]) -> dict[int, Snippet]:
        """Snippets for documents taken from ``documents`` (one page of them)."""
        return snippets_for(page, self.query.highlights, self.definitions)

    def paginator(self, per_page: int, page: object = 1) -> WindowPaginator:
        """Pages of hits: the engine runs once per page shown (see WindowPaginator)."""
        return WindowPaginator(self.documents, per_page, fetch=self.fetch, page=page)

    def fetch(self, numbers: list[int]) -> list[Document]:
        """These documents in this order — through the access rule once more."""
        found = selectors.documents_visible_to(self.user).select_related("owner_group").in_bulk(numbers)
        return [found[n] for n in numbers if n in found]


def search_documents(
    user: selectors.User,
    text: str,
    *,
    definitions: list[FieldDefinition] | None = None,
    sort_field: FieldDefinition | None = None,
    descending: bool = True,
    allow_scan: bool = True,
    within: Callable[[QuerySet[Document]], QuerySet[Document]] | None = None,
) -> SearchResults:
    """Documents visible to ``user`` matching the query ``text``, ordered by
    relevance (``sort_field`` None) or by that field. Raises SearchQueryError.
    ``allow_scan=False``: relevance even where reading documents one by one
    (newest first) would be faster — when the user asked for relevance.
    ``within`` narrows the visible documents first (the folder tree's choice)."""
    if definitions is None:
        definitions = selectors.field_definitions()
    parsed = parse_query(text, definitions)
    qs = selectors.documents_visible_to(user)
    if within is not None:
        qs = within(qs)
    if parsed.is_empty():
        return SearchResults(parsed, qs.none(), definitions, user)
    backend = backend_for(qs.db)
    for condition in parsed.filters:
        qs = qs.filter(condition)
    by_date = sort_field is None or sort_field.name == "date"
    plan = backend.plan(parsed, qs, _group_ids(user), window=SEARCH_COUNT_LIMIT, allow_scan=allow_scan and by_date)
    qs = backend.filter(qs, parsed.terms, plan)
    if plan.scan:  # read newest first (planner.py): no relevance, date order
        ascending = sort_field is not None and not descending
        return SearchResults(parsed, qs.order_by(*_date_order(ascending)), definitions, user)
    if sort_field is None and parsed.positive_terms:
        return SearchResults(parsed, backend.order_by_relevance(qs, parsed.terms), definitions, user, by_relevance=True)
    if sort_field is not None:
        qs = qs.order_by(selectors.order_expression(sort_field, descending), "-pk" if descending else "pk")
    else:  # only filters and exclusions: no relevance to speak of
        qs = qs.order_by(*_date_order(ascending=False))
    return SearchResults(parsed, qs, definitions, user)


def _date_order(ascending: bool) -> tuple[Any, str]:
    if ascending:
        return F("date").asc(nulls_first=True), "pk"
    return F("date").desc(nulls_last=True), "-pk"


def _group_ids(user: selectors.User) -> list[int] | None:
    """None for a user who sees every document."""
    if selectors.sees_everything(user):
        return None
    return [g.pk for g in selectors.groups_for_user(user)]
