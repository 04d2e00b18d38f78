"""Figures for the dashboards (WebAdmin home, the WebDMS overview): archive
growth, search coverage, queue backlog, storage used.

Fast at a million documents: growth and storage are sums over ``ArchiveDay``
rows (one per UTC day, owner group and — for mail — source and mailbox),
which ``figures_refresh`` recomputes: the beat task every few minutes for
today and yesterday (a day's documents, by the ``created`` index), and once a
night for every day. Coverage takes the document and indexed totals from the
same rows and the pending and failed files from indexed counts on
``DocumentFile(extraction_status, created)``: those sets are small while
extraction keeps up, and the figure that matters is when they are not.

Mail sources are not known here (``archive`` imports no other app):
``mailsources/dashboard.py`` writes its rows through ``day_rows_replace``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from archive import charts, extraction
from archive.models import ArchiveDay, Document, DocumentFile, ExtractionStatus

log = logging.getLogger(__name__)

ALL_DOCUMENTS = 0  # ArchiveDay.source of the rows that count every document of a group
# Groups whose documents a figure covers; None: the whole archive.
Groups = Sequence[int] | None


def utc_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(dt.UTC).date()


def utc_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def by_utc_day(field: str) -> TruncDate:
    # UTC days: MariaDB converts time zones only with its zone tables loaded.
    return TruncDate(field, tzinfo=dt.UTC)


# --- writing the figures ---------------------------------------------------------


@transaction.atomic
def day_rows_replace(rows: Iterable[ArchiveDay], *, mail: bool, since: dt.date | None) -> int:
    """Replace the rows of one kind (mail: source > 0; else the all-documents
    rows) from ``since`` on (None: all days) by ``rows``."""
    old = ArchiveDay.objects.filter(source__gt=ALL_DOCUMENTS) if mail else ArchiveDay.objects.filter(source=0)
    if since is not None:
        old = old.filter(date__gte=since)
    old.delete()
    created = ArchiveDay.objects.bulk_create(list(rows), batch_size=1000)
    return len(created)


def figures_refresh(*, since: dt.date | None = None) -> int:
    """Recompute the all-documents rows from ``since`` on (None: every day)."""
    documents = Document.objects.all()
    files = DocumentFile.objects.all()
    if since is not None:
        documents = documents.filter(created__gte=utc_start(since))
        files = files.filter(created__gte=utc_start(since))
    # Grouped by day first (the group as an expression): SQLite walks the
    # ``created`` index for the range instead of the whole owner-group index.
    counts = (
        documents.annotate(day=by_utc_day("created"), group=F("owner_group_id"))
        .values("day", "group")
        .annotate(n=Count("id"), indexed=Count("search_entry"))
        .values_list("day", "group", "n", "indexed")
    )
    sizes = (
        files.annotate(day=by_utc_day("created"), group=F("document__owner_group_id"))
        .values("day", "group")
        .annotate(size=Sum("size"))
        .values_list("day", "group", "size")
    )
    rows: dict[tuple[dt.date, int], ArchiveDay] = {}

    def row(day: dt.date, group: int) -> ArchiveDay:
        if (day, group) not in rows:
            rows[day, group] = ArchiveDay(date=day, owner_group_id=group, source=ALL_DOCUMENTS)
        return rows[day, group]

    for day, group, n, indexed in counts:
        row(day, group).documents, row(day, group).indexed = n, indexed
    for day, group, size in sizes:
        row(day, group).bytes = size or 0
    return day_rows_replace(rows.values(), mail=False, since=since)


# --- reading them ----------------------------------------------------------------


def _days(groups: Groups, *, mail: bool = False) -> QuerySet[ArchiveDay]:
    qs = ArchiveDay.objects.filter(source__gt=ALL_DOCUMENTS) if mail else ArchiveDay.objects.filter(source=0)
    if groups is not None:
        qs = qs.filter(owner_group_id__in=list(groups))
    return qs


@dataclasses.dataclass(frozen=True)
class Totals:
    documents: int
    indexed: int
    bytes: int
    as_of: dt.datetime | None  # when the newest row was computed


def totals(groups: Groups) -> Totals:
    found = _days(groups).aggregate(
        documents=Sum("documents"), indexed=Sum("indexed"), bytes=Sum("bytes"), as_of=Max("updated")
    )
    return Totals(found["documents"] or 0, found["indexed"] or 0, found["bytes"] or 0, found["as_of"])


@dataclasses.dataclass(frozen=True)
class Point:
    label: str  # "2026-12-01" or "2026-12"
    documents: int
    bytes: int


def growth_per_day(groups: Groups, *, now: dt.datetime, days: int = 30) -> list[Point]:
    """The last ``days`` UTC days up to ``now``, every day present (0 if none)."""
    last = utc_day(now)
    first = last - dt.timedelta(days=days - 1)
    found = {
        d: (n or 0, b or 0)
        for d, n, b in _days(groups)
        .filter(date__gte=first, date__lte=last)
        .values("date")
        .annotate(n=Sum("documents"), b=Sum("bytes"))
        .values_list("date", "n", "b")
    }
    out = []
    for i in range(days):
        day = first + dt.timedelta(days=i)
        n, b = found.get(day, (0, 0))
        out.append(Point(day.isoformat(), n, b))
    return out


def growth_per_month(groups: Groups, *, now: dt.datetime, months: int = 12) -> list[Point]:
    """The last ``months`` calendar months (UTC) up to ``now``."""
    last = utc_day(now).replace(day=1)
    firsts = [last]
    while len(firsts) < months:
        prev = firsts[-1] - dt.timedelta(days=1)
        firsts.append(prev.replace(day=1))
    firsts.reverse()
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_date = (
        _days(groups)
        .filter(date__gte=firsts[0])
        .values("date")
        .annotate(n=Sum("documents"), b=Sum("bytes"))
        .values_list("date", "n", "b")
    )
    for day, n, b in per_date:
        key = day.strftime("%Y-%m")
        sums[key][0] += n
        sums[key][1] += b
    return [Point(f.strftime("%Y-%m"), *sums.get(f.strftime("%Y-%m"), [0, 0])) for f in firsts]


@dataclasses.dataclass(frozen=True)
class MailboxGrowth:
    source: int  # the mail source's id
    mailbox: str
    documents: int
    bytes: int
    recent: int  # documents in the last ``days`` days


def growth_per_mailbox(groups: Groups, *, now: dt.datetime, days: int = 30) -> list[MailboxGrowth]:
    first = utc_day(now) - dt.timedelta(days=days - 1)
    rows = (
        _days(groups, mail=True)
        .values("source", "mailbox")
        .annotate(n=Sum("documents"), b=Sum("bytes"), recent=Sum("documents", filter=Q(date__gte=first)))
        .order_by("source", "mailbox")
        .values_list("source", "mailbox", "n", "b", "recent")
    )
    return [MailboxGrowth(source, mailbox, n or 0, b or 0, recent or 0) for source, mailbox, n, b, recent in rows]


# --- search coverage ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Coverage:
    documents: int
    indexed: int
    pending_files: int
    failed_files: int
    waiting_documents: int  # documents with a pending or failed file
    oldest_pending: dt.datetime | None

    @property
    def searchable(self) -> int:
        """Documents whose text is extracted and indexed."""
        return max(0, min(self.indexed, self.documents) - self.waiting_documents)

    @property
    def percent(self) -> float:
        return 100.0 if not self.documents else 100.0 * self.searchable / self.documents


def coverage(groups: Groups, *, known: Totals | None = None) -> Coverage:
    """``known``: the totals of ``groups``, if the caller has them already."""
    found = known or totals(groups)
    files = DocumentFile.objects.filter(extraction_status__in=(ExtractionStatus.PENDING, ExtractionStatus.FAILED))
    if groups is not None:
        files = files.filter(document__owner_group_id__in=list(groups))
    by_status = dict(files.values("extraction_status").annotate(n=Count("id")).values_list("extraction_status", "n"))
    waiting = files.values("document_id").distinct().count() if by_status else 0
    oldest = (
        files.filter(extraction_status=ExtractionStatus.PENDING).order_by("created").values_list("created", flat=True)
    ).first()
    return Coverage(
        documents=found.documents,
        indexed=found.indexed,
        pending_files=by_status.get(ExtractionStatus.PENDING, 0),
        failed_files=by_status.get(ExtractionStatus.FAILED, 0),
        waiting_documents=waiting,
        oldest_pending=oldest,
    )


def coverage_stall_minutes() -> int:
    return int(getattr(settings, "DASHBOARD_COVERAGE_STALL_MINUTES", 60))


def coverage_alarms(found: Coverage, *, now: dt.datetime, stall_minutes: int | None = None) -> list[str]:
    """Why search coverage needs attention (empty: it does not)."""
    limit = coverage_stall_minutes() if stall_minutes is None else stall_minutes
    alarms = []
    if found.oldest_pending is not None and now - found.oldest_pending > dt.timedelta(minutes=limit):
        age = int((now - found.oldest_pending).total_seconds() // 60)
        alarms.append(
            _(
                "Search coverage stalls: %(files)s file(s) wait for text extraction,"
                " the oldest for %(age)s minutes (more than %(limit)s)."
            )
            % {
                "files": number_format(found.pending_files, force_grouping=True),
                "age": number_format(age, force_grouping=True),
                "limit": number_format(limit, force_grouping=True),
            }
        )
    return alarms


def coverage_requeue() -> int:
    """The re-index action: failed files get a fresh set of attempts and every
    document that waits for extraction is queued again (the extraction sweep,
    without its grace period); each extraction re-indexes its document.
    Returns how many documents were queued."""
    reset = extraction.reset_failed()
    queued = extraction.extraction_sweep(stale_minutes=0)
    log.info("dashboard re-index: %s failed file(s) reset, %s document(s) queued", reset, queued)
    return queued


# --- queue backlog -----------------------------------------------------------------

# Kombu's Redis transport keeps a list per queue and priority step ("sync",
# "sync\x06\x163", …; kombu.transport.redis: PRIORITY_STEPS, sep).
_REDIS_PRIORITY_SEPARATOR = "\x06\x16"
_REDIS_PRIORITY_STEPS = (0, 3, 6, 9)


def queue_names() -> list[str]:
    names = {str(route["queue"]) for route in settings.CELERY_TASK_ROUTES.values()}
    names.add(settings.CELERY_TASK_DEFAULT_QUEUE)
    return sorted(names)


def queue_backlog(queues: Sequence[str] | None = None) -> dict[str, int | None]:
    """Messages waiting per queue; None where the broker cannot tell ("n/a"):
    an unknown transport, or a broker that does not answer."""
    names = list(queues) if queues is not None else queue_names()
    url: str = settings.CELERY_BROKER_URL
    scheme = url.split("://", 1)[0]
    try:
        if scheme in {"redis", "rediss"}:
            return _redis_backlog(url, names)
        if scheme == "filesystem":
            return _filesystem_backlog(names)
    except (OSError, ValueError) as exc:
        log.warning("queue backlog unknown: %s", exc)
    except Exception as exc:  # redis.RedisError and kin: the page shows n/a, never fails
        log.warning("queue backlog unknown: %s: %s", type(exc).__name__, exc)
    return dict.fromkeys(names)


def _redis_backlog(url: str, names: list[str]) -> dict[str, int | None]:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                for step in _REDIS_PRIORITY_STEPS:
                    pipe.llen(name if not step else f"{name}{_REDIS_PRIORITY_SEPARATOR}{step}")
            lengths = pipe.execute()
    finally:
        client.close()
    per = len(_REDIS_PRIORITY_STEPS)
    return {name: int(sum(lengths[i * per : (i + 1) * per])) for i, name in enumerate(names)}


def _filesystem_backlog(names: list[str]) -> dict[str, int | None]:
    # kombu.transport.filesystem names a message "<ms>_<uuid>.<queue>.msg" in data_folder_in.
    folder = Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]))
    counts = dict.fromkeys(names, 0)
    with os.scandir(folder) as entries:
        for entry in entries:
            queue = entry.name.partition(".")[2].removesuffix(".msg")
            if queue in counts and entry.name.endswith(".msg"):
                counts[queue] = (counts[queue] or 0) + 1
    return dict(counts)


def growth_and_coverage(groups: Groups, *, now: dt.datetime, subject: str | None = None) -> dict[str, Any]:
    """What both dashboards show of the archive (the WebAdmin one for all of it,
    the WebDMS overview for what a user sees): totals, search coverage with its
    alarms and meter, documents per day and per month. ``subject`` names the
    documents in the chart titles ("Your documents")."""
    subject = subject or _("Documents")
    days = growth_per_day(groups, now=now)
    months = growth_per_month(groups, now=now)
    found_totals = totals(groups)
    found = coverage(groups, known=found_totals)
    alarms = coverage_alarms(found, now=now)
    return {
        "days": days,
        "totals": found_totals,
        "coverage": found,
        "coverage_alarms": alarms,
        "coverage_meter": charts.meter(found.percent, title=_("Search coverage"), alarm=bool(alarms)),
        "per_day_chart": charts.bar_chart(
            [p.label for p in days],
            [charts.Series(_("documents"), [p.documents for p in days])],
            title=_("%(subject)s per day (30 days)") % {"subject": subject},
            chart_id="chart-days",
        ),
        "per_month_chart": charts.bar_chart(
            [p.label for p in months],
            [charts.Series(_("documents"), [p.documents for p in months])],
            title=_("%(subject)s per month (12 months)") % {"subject": subject},
            chart_id="chart-months",
        ),
    }
