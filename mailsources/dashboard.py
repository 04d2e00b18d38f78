"""The mail sources' part of the dashboard: archive growth per source and
mailbox (written as ``ArchiveDay`` rows, see ``archive/dashboard.py``), runs
with durations and failures, and the alarm when a source stalls."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict

from django.conf import settings
from django.db.models import Count, F, Max, Q, Sum
from django.utils import formats
from django.utils.translation import gettext as _

from archive.dashboard import by_utc_day, day_rows_replace, utc_day, utc_start
from archive.models import ArchiveDay
from mailsources.models import ArchivedMail, MailboxStatus, MailSource, RunStatus, SourceStatus, SyncRun

# A run that archived what it found; "partial" ones had errors on some mails,
# which the failing-mailbox alarm reports on its own.
FINISHED = (RunStatus.OK, RunStatus.PARTIAL)


def figures_refresh(*, since: dt.date | None = None) -> int:
    """Recompute the per-source-and-mailbox rows from ``since`` on (None: every day)."""
    # By the document's day: its ``created`` is indexed (the mail row's is not),
    # and both are written in the same transaction.
    mails = ArchivedMail.objects.all()
    if since is not None:
        mails = mails.filter(document__created__gte=utc_start(since))
    rows = [
        ArchiveDay(date=day, owner_group_id=group, source=source, mailbox=mailbox, documents=n, bytes=size or 0)
        for day, group, source, mailbox, n, size in mails.annotate(
            day=by_utc_day("document__created"), group=F("document__owner_group_id")
        )
        .values("day", "group", "source_id", "mailbox")
        .annotate(n=Count("id"), size=Sum("size"))
        .values_list("day", "group", "source_id", "mailbox", "n", "size")
    ]
    return day_rows_replace(rows, mail=True, since=since)


def source_names() -> dict[int, str]:
    return dict(MailSource.objects.values_list("pk", "name"))


@dataclasses.dataclass(frozen=True)
class RunDay:
    label: str
    finished: int
    failed: int  # failed, interrupted or finished with errors
    longest_seconds: float


@dataclasses.dataclass(frozen=True)
class RunRow:
    source: str
    started: dt.datetime
    seconds: float | None
    status: str
    status_label: str
    new: int
    failed: int
    errors: str


def runs_per_day(*, now: dt.datetime, days: int = 14) -> list[RunDay]:
    first = utc_day(now) - dt.timedelta(days=days - 1)
    counts: dict[dt.date, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for started, finished, status in SyncRun.objects.filter(started__gte=utc_start(first)).values_list(
        "started", "finished", "status"
    ):
        day = counts[utc_day(started)]
        if status == RunStatus.OK:
            day[0] += 1
        elif status != RunStatus.RUNNING:
            day[1] += 1
        if finished is not None:
            day[2] = max(day[2], (finished - started).total_seconds())
    out = []
    for i in range(days):
        date = first + dt.timedelta(days=i)
        ok, bad, longest = counts.get(date, [0, 0, 0.0])
        out.append(RunDay(date.isoformat(), int(ok), int(bad), float(longest)))
    return out


def recent_runs(limit: int = 10) -> list[RunRow]:
    runs = SyncRun.objects.select_related("source").order_by("-started")[:limit]
    return [
        RunRow(
            source=run.source.name,
            started=run.started,
            seconds=(run.finished - run.started).total_seconds() if run.finished else None,
            status=run.status,
            status_label=str(RunStatus(run.status).label),
            new=run.new,
            failed=run.failed,
            errors=run.errors[:300],
        )
        for run in runs
    ]


def stall_intervals() -> int:
    return int(getattr(settings, "DASHBOARD_SOURCE_STALL_INTERVALS", 3))


def source_alarms(*, now: dt.datetime, intervals: int | None = None) -> list[str]:
    """Why a source needs attention: an enabled source whose last finished run
    is older than ``intervals`` × its interval (a new source: counted from its
    creation), a source stopped by an error, and failing mailboxes."""
    factor = stall_intervals() if intervals is None else intervals
    alarms = []
    sources = MailSource.objects.filter(enabled=True).annotate(
        last_finished=Max("runs__finished", filter=Q(runs__status__in=FINISHED))
    )
    for source in sources:
        since = source.last_finished or source.created
        allowed = dt.timedelta(minutes=source.interval_minutes * factor)
        if now - since > allowed:
            age = int((now - since).total_seconds() // 60)
            if source.last_finished is None:
                text = _(
                    "Mail source %(name)s stalls: no finished run since it was created %(age)s minutes ago "
                    "(more than %(factor)s × its %(interval)s-minute interval)."
                )
            else:
                text = _(
                    "Mail source %(name)s stalls: its last finished run %(age)s minutes ago "
                    "(more than %(factor)s × its %(interval)s-minute interval)."
                )
            alarms.append(
                text
                % {
                    "name": repr(source.name),
                    "age": formats.number_format(age, force_grouping=True),
                    "factor": factor,
                    "interval": source.interval_minutes,
                }
            )
        if source.status == SourceStatus.ERROR:
            alarms.append(
                _("Mail source %(name)s stopped with an error: %(error)s")
                % {"name": repr(source.name), "error": source.status_message[:200]}
            )
    failing = MailboxStatus.objects.filter(source__enabled=True, status=SourceStatus.ERROR).select_related("source")
    for box in failing:
        alarms.append(
            _("Mailbox %(mailbox)s of %(name)s fails: %(error)s")
            % {"mailbox": box.mailbox, "name": repr(box.source.name), "error": box.message[:200]}
        )
    return alarms
