"""Bringing index entries written by an older token stream up to date.

Entries made before the stream held the month of their document date
(``tokens.month_token``) lack it. Migration 0011 marks the index "pending"
(``SearchIndexState``), and the beat task ``archive.tasks.upgrade_search_index``
checks every entry in document order: an entry that does not begin with its
document's month token is rewritten, in the batch's transaction with the
document locked, so that an edit of it cannot be overwritten by older text.
What is checked is each entry's content, not when it was written, so entries
that a worker of the old code wrote after the migration (until it was
restarted) are found too. Once no entry is left to check, nothing is pending
(``manage.py reindex`` of everything clears it at once). Until then the
MariaDB search does not ask the index for a date range's months
(``months_ready``): a search is never wrong meanwhile, only a word with a
date range is slower."""

from __future__ import annotations

import datetime as dt
import time

from django.db import transaction
from django.db.models import Max
from django.db.models.functions import Substr

from archive.models import Document, SearchEntry, SearchIndexState
from archive.search import tokens as tk
from archive.search.indexing import index_documents, stream_options

BATCH = 1_000
SECONDS = 50.0  # one task's share of work; beat starts the next a minute later
_HEAD = len("_m200001 ")  # an entry's first characters: its month token and a space


def months_ready() -> bool:
    """Whether every entry holds its month token."""
    return not SearchIndexState.objects.filter(pk=1, pending=True).exists()


def progress() -> tuple[int, int] | None:
    """(the last document number checked, the highest with an entry) while
    entries are pending, for the WebAdmin home; None once none is."""
    checked = SearchIndexState.objects.filter(pk=1, pending=True).values_list("checked_through", flat=True).first()
    if checked is None:
        return None
    return checked, SearchEntry.objects.aggregate(n=Max("document_id"))["n"] or 0


def _lacks_month(head: str, date: dt.datetime | None) -> bool:
    if date is None:
        return False  # no date, no month token
    return head.split(" ", 1)[0] != tk.month_token(date)


@transaction.atomic
def upgrade_batch(size: int = BATCH) -> bool | None:
    """Check the next ``size`` entries, rewriting those without their month
    token. Returns whether any is left to check, or None while another upgrade
    holds the state row (one runs at a time; the other's batch is not waited for)."""
    state = SearchIndexState.objects.select_for_update(skip_locked=True).filter(pk=1).first()
    if state is None:
        return None if SearchIndexState.objects.filter(pk=1).exists() else False
    if not state.pending:
        return False
    if not stream_options()["months"]:  # SQLite's entries need none
        rows = []
    else:
        rows = list(
            SearchEntry.objects.filter(document_id__gt=state.checked_through)
            .order_by("document_id")
            .values_list("document_id", Substr("text", 1, _HEAD), "document__date")[:size]
        )
    if not rows:
        state.pending = False
        state.save(update_fields=["pending"])
        return False
    lacking = [number for number, head, date in rows if _lacks_month(head, date)]
    if lacking:
        locked = list(Document.objects.select_for_update().filter(pk__in=lacking).values_list("pk", flat=True))
        index_documents(locked)
    state.checked_through = rows[-1][0]
    state.save(update_fields=["checked_through"])
    return True


def upgrade(seconds: float = SECONDS, size: int = BATCH) -> bool:
    """Batches until nothing is left to check, ``seconds`` have passed or
    another upgrade runs; returns whether all entries hold their month token."""
    deadline = time.monotonic() + seconds
    more: bool | None = not months_ready()
    while more and time.monotonic() < deadline:
        more = upgrade_batch(size)
    return months_ready()


def mark_current() -> None:
    """Nothing is pending (``manage.py reindex`` rewrote every entry)."""
    SearchIndexState.objects.filter(pk=1).update(pending=False)
