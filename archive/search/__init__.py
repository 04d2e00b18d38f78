"""Full-text search over fields, notes, mail bodies and attachment text.

The interface the rest of the archive uses:

- ``search_documents(user, text, …)`` → ``SearchResults``: the documents the
  user may open that match, as a queryset (so the table view pages and sorts
  it like any other), plus ``snippets(page)`` for the shown rows;
- ``index_document(document)`` — call inside the transaction that changes a
  document's fields or notes (``archive.services`` does);
- ``index_documents(numbers)`` — bulk, for ``manage.py reindex``;
- ``parse_query`` / ``SearchQueryError`` — the query language (``query.py``).

Which engine runs the match is decided by the database in use (``backends.py``):
SQLite FTS5 or MariaDB InnoDB FULLTEXT. The access rule is the queryset from
``selectors.documents_visible_to``: the match only narrows it, so hits, counts
and snippets never include a document the user cannot open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from django.db.models import F, QuerySet

from archive import selectors
from archive.models import Document, FieldDefinition
from archive.search.backends import backend_for
from archive.search.indexing import index_document, index_documents
from archive.search.query import ParsedQuery, SearchQueryError, parse_query
from archive.search.snippets import Snippet, snippets_for

__all__ = [
    "ParsedQuery", "SearchQueryError", "SearchResults", "Snippet", "index_document",
    "index_documents", "parse_query", "search_documents",
]


@dataclasses.dataclass
class SearchResults:
    query: ParsedQuery
    documents: QuerySet[Document]
    definitions: list[FieldDefinition]

    @property
    def by_relevance(self) -> bool:
        return "search_rank" in self.documents.query.annotations

    def snippets(self, page: Sequence[Document]) -> dict[int, Snippet]:
        """Snippets for documents taken from ``documents`` (one page of them)."""
        return snippets_for(page, self.query.highlights, self.definitions)


def search_documents(
    user: selectors.User,
    text: str,
    *,
    definitions: list[FieldDefinition] | None = None,
    sort_field: FieldDefinition | None = None,
    descending: bool = True,
) -> SearchResults:
    """Documents visible to ``user`` matching the query ``text``, ordered by
    relevance (``sort_field`` None) or by that field. Raises SearchQueryError."""
    if definitions is None:
        definitions = selectors.field_definitions()
    parsed = parse_query(text, definitions)
    qs = selectors.documents_visible_to(user)
    if parsed.is_empty():
        return SearchResults(parsed, qs.none(), definitions)
    backend = backend_for(qs.db)
    for condition in parsed.filters:
        qs = qs.filter(condition)
    qs = backend.filter(qs, parsed.terms)
    tiebreak = "-pk" if descending else "pk"
    if sort_field is None and parsed.positive_terms:
        qs = backend.with_rank(qs, parsed.terms).order_by("-search_rank", "-pk")
    elif sort_field is not None:
        qs = qs.order_by(selectors.order_expression(sort_field, descending), tiebreak)
    else:  # only filters and exclusions: no relevance to speak of
        qs = qs.order_by(F("date").desc(nulls_last=True), "-pk")
    return SearchResults(parsed, qs, definitions)
