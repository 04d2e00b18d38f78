"""Bringing index entries written by an older token stream up to date.

Entries made before the stream held the month of their document date
(``tokens.month_token``) are marked stale by migration 0011
(``SearchIndexState.stale_through``: every document up to that number). The
beat task ``archive.tasks.upgrade_search_index`` rewrites them in batches,
highest number first (the newest mail is the most searched), each batch in
one transaction with the documents locked, so that an edit of a document in
the batch cannot be overwritten by its older text; ``manage.py reindex``
rewrites all of them at once. Until none is stale, the MariaDB search does not
ask the index for a date range's months (``months_ready``): a search is never
wrong meanwhile, only a word with a date range is slower."""

from __future__ import annotations

import time

from django.db import transaction

from archive.models import Document, SearchIndexState
from archive.search.indexing import index_documents

BATCH = 1_000
SECONDS = 50.0  # one task's share of work; beat starts the next a minute later


def stale_through() -> int:
    """The highest document number whose entry may be stale; 0: none."""
    found = SearchIndexState.objects.filter(pk=1).values_list("stale_through", flat=True).first()
    return found or 0


def months_ready() -> bool:
    """Whether every entry holds its month token."""
    return stale_through() == 0


@transaction.atomic
def upgrade_batch(size: int = BATCH) -> int | None:
    """Rewrite the entries of the ``size`` highest stale documents; returns the
    new ``stale_through``, or None while another upgrade holds the state row
    (one runs at a time; the other's batch is not waited for)."""
    state = SearchIndexState.objects.select_for_update(skip_locked=True).filter(pk=1).first()
    if state is None:
        return None if SearchIndexState.objects.filter(pk=1).exists() else 0
    if not state.stale_through:
        return 0
    numbers = list(
        Document.objects.select_for_update()
        .filter(pk__lte=state.stale_through)
        .order_by("-pk")
        .values_list("pk", flat=True)[:size]
    )
    if numbers:
        index_documents(numbers)
    state.stale_through = min(numbers) - 1 if len(numbers) == size else 0
    state.save(update_fields=["stale_through"])
    return state.stale_through


def upgrade(seconds: float = SECONDS, size: int = BATCH) -> int:
    """Batches until none is stale, ``seconds`` have passed or another upgrade
    runs; returns what is left (``stale_through``)."""
    deadline = time.monotonic() + seconds
    left: int | None = stale_through()
    while left and time.monotonic() < deadline:
        left = upgrade_batch(size)
    return stale_through() if left is None else left


def mark_current() -> None:
    """Nothing is stale (``manage.py reindex`` rewrote every entry)."""
    SearchIndexState.objects.filter(pk=1).update(stale_through=0)
