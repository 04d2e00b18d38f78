"""Which documents a legal hold covers, which of some documents are held, and
how many a hold covers (counted within the search time budget)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable

from django.apps import apps
from django.contrib.auth.models import User
from django.db.models import Max, QuerySet
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from archive.models import Document
from archive.search import SearchQueryError, search_documents, time_budget
from archive.search.budget import budget_seconds

from .models import LegalHold

# Documents counted per statement: the budget is checked between statements.
COUNT_CHUNK = 20_000


def _everyone() -> User:
    """An unsaved superuser: a hold's search sees every document."""
    return User(username="legal-hold", is_superuser=True, is_active=True)


def _start_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def hold_documents(hold: LegalHold) -> QuerySet[Document]:
    """The documents ``hold`` covers (all its criteria). Raises SearchQueryError
    for a query that no longer parses (a field was renamed)."""
    qs = search_documents(_everyone(), hold.query).documents if hold.query else Document.objects.all()
    if hold.whole_archive:
        return qs
    if hold.source_id is not None or hold.mailbox:
        locations = apps.get_model("mailsources", "MailLocation").objects.all()
        if hold.source_id is not None:
            locations = locations.filter(source_id=hold.source_id)
        if hold.mailbox:
            # Lower() on both sides: the column's collation may compare case-sensitively.
            locations = locations.annotate(lower=Lower("mailbox")).filter(lower=hold.mailbox.lower())
        qs = qs.filter(pk__in=locations.values("mail__document_id"))
    if hold.date_from or hold.date_to:
        qs = qs.alias(base=Coalesce("date", "created"))
        if hold.date_from:
            qs = qs.filter(base__gte=_start_of(hold.date_from))
        if hold.date_to:
            qs = qs.filter(base__lt=_start_of(hold.date_to + dt.timedelta(days=1)))
    return qs


def active_holds() -> list[LegalHold]:
    return list(LegalHold.objects.filter(released__isnull=True))


def held_numbers(numbers: Iterable[int], holds: list[LegalHold] | None = None) -> set[int]:
    """Which of these documents an active hold covers. A hold whose query
    cannot be run holds all of them: when in doubt, nothing is deleted."""
    numbers = list(numbers)
    held: set[int] = set()
    for hold in active_holds() if holds is None else holds:
        rest = [n for n in numbers if n not in held]
        if not rest:
            break
        try:
            held.update(hold_documents(hold).filter(pk__in=rest).values_list("pk", flat=True))
        except SearchQueryError:
            held.update(rest)
    return held


def is_held(number: int) -> bool:
    return bool(held_numbers([number]))


@dataclasses.dataclass(frozen=True)
class HoldCount:
    count: int
    cut: bool  # the budget ran out: at least ``count``
    error: str = ""

    def __str__(self) -> str:
        if self.error:
            return "—"
        return f"≥ {self.count:,}" if self.cut else f"{self.count:,}"


def hold_counts(holds: list[LegalHold], *, clock: Callable[[], float] = time.monotonic) -> list[HoldCount]:
    """The counts of a page of holds, all within one search time budget."""
    deadline = clock() + budget_seconds()
    return [hold_count(hold, clock=clock, deadline=deadline) for hold in holds]


def hold_count(
    hold: LegalHold, *, clock: Callable[[], float] = time.monotonic, deadline: float | None = None
) -> HoldCount:
    """How many documents ``hold`` covers, counted newest numbers first in
    chunks until ``deadline`` (default: the search time budget from now)."""
    try:
        qs = hold_documents(hold)
    except SearchQueryError as exc:
        return HoldCount(0, False, str(exc))
    top = Document.objects.aggregate(top=Max("pk"))["top"] or 0
    if deadline is None:
        deadline = clock() + budget_seconds()
    counted = 0
    for high in range(top, 0, -COUNT_CHUNK):
        remaining = deadline - clock()
        if remaining <= 0:
            return HoldCount(counted, True)
        try:
            with time_budget(remaining, clock=clock):
                counted += qs.filter(pk__lte=high, pk__gt=high - COUNT_CHUNK).order_by().count()
        except SearchQueryError:  # SearchTooComplex: the budget ran out inside
            return HoldCount(counted, True)
    return HoldCount(counted, False)
