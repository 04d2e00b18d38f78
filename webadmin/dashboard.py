"""The WebAdmin dashboard: the archive's figures (``archive/dashboard.py``) and
the mail sources' (``mailsources/dashboard.py``) on one page, with charts and
the alarms of both."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import IntegrityError, OperationalError
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _

from archive import charts, folders
from archive import dashboard as archive_dashboard
from archive.integrity import anchoring
from archive.models import ArchiveDay
from archive.search import upgrade
from mailsources import dashboard as sources_dashboard

log = logging.getLogger(__name__)


def figures_refresh(*, full: bool = False, now: dt.datetime | None = None) -> int:
    """The beat task's work: today and yesterday (late arrivals around midnight),
    or every day (``full``, nightly); the folder tree's counts nightly and when
    many locations arrived since they were counted."""
    moment = now or timezone.now()
    since = None if full else archive_dashboard.utc_day(moment) - dt.timedelta(days=1)
    if not ArchiveDay.objects.exists():
        since = None  # the first run after the upgrade: every day, not only today's
    try:
        rows = archive_dashboard.figures_refresh(since=since) + sources_dashboard.figures_refresh(since=since)
        if full or folders.folder_counts_due():  # the folder tree's counts (archive/folders.py)
            rows += folders.folder_counts_refresh()
        return rows
    except (IntegrityError, OperationalError) as exc:
        # Two refreshes at once (the nightly one and today's): one wins the
        # rows, the other gives up; the next run, minutes later, is complete.
        log.warning("dashboard figures not refreshed (another refresh at the same time?): %s", exc)
        return 0


def anchor_alarms(anchor: anchoring.AnchorAge, now: dt.datetime) -> list[str]:
    if not anchor.overdue:
        return []
    if anchor.newest is None:
        return [_("Nothing has been timestamped by the TSA yet (integrity anchors).")]
    age = timesince(anchor.newest.created, now)
    return [_("The newest integrity timestamp is %(age)s old (TSA unreachable?).") % {"age": age}]


def admin_dashboard(*, now: dt.datetime | None = None) -> dict[str, Any]:
    moment = now or timezone.now()
    archive = archive_dashboard.growth_and_coverage(None, now=moment)
    days, totals = archive["days"], archive["totals"]
    runs = sources_dashboard.runs_per_day(now=moment)
    names = sources_dashboard.source_names()
    mailboxes = archive_dashboard.growth_per_mailbox(None, now=moment)
    backlog = archive_dashboard.queue_backlog()
    anchor = anchoring.anchor_age(now=moment)
    return {
        **archive,
        "index_upgrade": upgrade.progress(),
        "anchor": anchor,
        "alarms": archive["coverage_alarms"]
        + sources_dashboard.source_alarms(now=moment)
        + anchor_alarms(anchor, moment),
        "storage": charts.size(totals.bytes),
        "bytes_chart": charts.bar_chart(
            [p.label for p in days],
            [charts.Series(_("bytes"), [p.bytes for p in days])],
            title=_("Stored bytes per day (30 days)"),
            fmt=charts.size,
            chart_id="chart-bytes",
        ),
        "mailbox_chart": charts.hbar_chart(
            [f"{names.get(m.source, f'source {m.source}')}: {m.mailbox}" for m in mailboxes],
            [
                charts.Series(_("last 30 days"), [m.recent for m in mailboxes]),
                charts.Series(_("before"), [m.documents - m.recent for m in mailboxes], css_class="s-muted"),
            ],
            title=_("Mails per source and mailbox"),
            chart_id="chart-mailboxes",
        )
        if mailboxes
        else None,
        "mailboxes": [(names.get(m.source, f"source {m.source}"), m) for m in mailboxes],
        "runs_chart": charts.bar_chart(
            [r.label for r in runs],
            [
                charts.Series(_("finished"), [r.finished for r in runs]),
                charts.Series(_("failed"), [r.failed for r in runs]),
            ],
            title=_("Sync runs per day (14 days)"),
            chart_id="chart-runs",
        ),
        "durations_chart": charts.bar_chart(
            [r.label for r in runs],
            [charts.Series(_("longest run"), [r.longest_seconds for r in runs])],
            title=_("Longest sync run per day"),
            fmt=charts.seconds,
            chart_id="chart-durations",
        ),
        "recent_runs": sources_dashboard.recent_runs(),
        "backlog": sorted(backlog.items()),
        "backlog_chart": charts.bar_chart(
            [name for name, _ in sorted(backlog.items())],
            [charts.Series(_("waiting"), [n or 0 for _, n in sorted(backlog.items())])],
            title=_("Queue backlog (messages waiting)"),
            width=320,
            chart_id="chart-queues",
        ),
        "now": moment,
    }
