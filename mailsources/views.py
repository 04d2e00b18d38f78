"""WebAdmin pages for mail sources (administrators only)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from archive.access import staff_required
from archive.errors import BROKER_ERRORS
from archive.integrity import audit
from archive.integrity.audit import AuditAction
from mailsources import services, tasks
from mailsources.clients.base import SourceError
from mailsources.forms import FORMS
from mailsources.imports import import_bytes_text, import_progress
from mailsources.models import MailboxStatus, MailSource, SourceKind, SourceStatus, SyncRun
from mailsources.secrets import SecretUnavailable

administrators_only = staff_required  # the 403 page for signed-in users without the right


def queued_text(source: MailSource) -> str:
    """ "queued since …" while a run waits on the sync queue, else ""."""
    if source.queued_at is None or source.status == SourceStatus.RUNNING:
        return ""
    return _("queued since %(moment)s") % {
        "moment": formats.date_format(timezone.localtime(source.queued_at), "DATETIME_FORMAT")
    }


def failing_mailboxes(source: MailSource, statuses: list[MailboxStatus] | None = None) -> list[MailboxStatus]:
    """The configured mailboxes whose last run failed (stopped or retrying)."""
    if statuses is None:
        statuses = list(source.mailbox_statuses.all())
    configured = {source.mailbox_key(address) for address in source.sync_mailboxes}
    return sorted(
        (m for m in statuses if m.mailbox in configured and m.status in (SourceStatus.ERROR, SourceStatus.RETRYING)),
        key=lambda m: m.mailbox,
    )


def status_text(source: MailSource, failing: list[MailboxStatus]) -> str:
    """The source's status as the pages show it: never "OK" while a mailbox fails."""
    text = source.get_status_display()
    if failing and source.status in (SourceStatus.OK, SourceStatus.IDLE):
        text = str(SourceStatus.PARTIAL.label)
    if source.status_message:
        text += f" — {source.status_message}"
    return text


def status_class(source: MailSource, failing: list[MailboxStatus]) -> str:
    """The colour of the status: its own, "partial" while a mailbox fails."""
    if failing and source.status in (SourceStatus.OK, SourceStatus.IDLE):
        return SourceStatus.PARTIAL
    return str(source.status)


def failing_text(failing: list[MailboxStatus]) -> str:
    """ "Failing mailboxes: a@x (Stopped: error), …" or ""."""
    if not failing:
        return ""
    return _("Failing mailboxes: ") + ", ".join(f"{m.mailbox} ({m.get_status_display()})" for m in failing)


def progress_text(run: SyncRun | None, source: MailSource | None = None) -> str:
    """ "done / total (new n, duplicate d) — status" of the latest run; "—" without one.
    An import adds how much of its files is read ("· 1.2 GB of 3.4 GB read")."""
    if run is None:
        return "—"
    total = "?" if run.total is None else str(run.total)
    text = f"{run.done} / {total} (new {run.new}, duplicate {run.duplicate}) — {run.get_status_display()}"
    if source is not None and source.kind == SourceKind.IMPORT:
        text += f" · {import_bytes_text(source)}"
    return text


def log_source_change(request: HttpRequest, source: MailSource, change: str, changes: dict[str, object]) -> None:
    """A source added, changed or its sync requested: secrets only as "changed" (``audit.form_changes``)."""
    audit.log(
        AuditAction.SOURCE_CHANGED,
        request,
        details={"source": source.pk, "name": audit.clip(source.name), "change": change, "fields": changes},
    )


def duration_text(seconds: float | None) -> str:
    """ "45 s", "3 min 05 s", "2 h 07 min"; "" for None."""
    if seconds is None:
        return ""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def run_progress(run: SyncRun | None, now: datetime) -> dict[str, Any]:
    """The progress bar of a run: percent done, time taken, and the time left
    at the run's average pace so far (no estimate before the first mail or
    without a total)."""
    if run is None:
        return {"percent": None, "elapsed": "", "eta": "", "eta_seconds": None, "running": False}
    end = run.finished or now
    elapsed = max(0.0, (end - run.started).total_seconds())
    percent = None
    eta_seconds = None
    if run.total:
        percent = min(100, math.floor(100 * run.done / run.total))
        if run.finished is None and 0 < run.done < run.total and elapsed > 0:
            eta_seconds = (run.total - run.done) * elapsed / run.done
    return {
        "percent": percent,
        "elapsed": duration_text(elapsed),
        "eta": duration_text(eta_seconds),
        "eta_seconds": None if eta_seconds is None else round(eta_seconds),
        "running": run.finished is None,
    }


def run_rows(source: MailSource, limit: int = 25) -> list[dict[str, Any]]:
    """The run history as the page and its refresh show it: times to the second, durations."""
    rows = []
    for run in source.runs.all()[:limit]:
        finished = run.finished
        rows.append(
            {
                "started": _local(run.started),
                "finished": _local(finished) if finished else "running",
                "duration": duration_text(((finished or timezone.now()) - run.started).total_seconds()),
                "status": run.status,
                "status_display": run.get_status_display(),
                "new": run.new,
                "duplicate": run.duplicate,
                "skipped": run.skipped,
                "failed": run.failed,
                "errors": run.errors[:2000],
            }
        )
    return rows


def _local(moment: datetime | None) -> str:
    return "—" if moment is None else timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


@administrators_only
@require_GET
def source_list(request: HttpRequest) -> HttpResponse:
    sources = list(MailSource.objects.prefetch_related("mailbox_statuses"))
    rows = []
    for source in sources:
        failing = failing_mailboxes(source, list(source.mailbox_statuses.all()))
        rows.append({"source": source, "status": status_text(source, failing), "failing": failing_text(failing)})
    return render(request, "mailsources/list.html", {"sources": sources, "rows": rows})


@administrators_only
@require_http_methods(["GET", "POST"])
def source_create(request: HttpRequest, kind: str) -> HttpResponse:
    if kind not in FORMS:
        raise Http404("Unknown kind of source")
    initial = {"folders": "Inbox"} if kind == SourceKind.M365 else {}
    form = FORMS[kind](request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():  # the change and its audit entry, or neither
            source = form.save()
            log_source_change(request, source, "added", audit.form_changes(form))
        messages.success(
            request, _("Mail source “%(name)s” created. Test the connection next.") % {"name": source.name}
        )
        return redirect("mailsources:detail", source.pk)
    return render(request, "mailsources/form.html", {"form": form, "kind": SourceKind(kind)})


@administrators_only
@require_http_methods(["GET", "POST"])
def source_edit(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(MailSource, pk=pk)
    if source.kind not in FORMS:  # an import: nothing to edit, set up anew instead
        raise Http404("This kind of source has no settings to edit")
    form = FORMS[source.kind](request.POST or None, instance=source)
    if request.method == "POST" and form.is_valid():
        changes = audit.form_changes(form)
        with transaction.atomic():
            form.save()
            log_source_change(request, source, "changed", changes)
        messages.success(request, _("Mail source saved."))
        return redirect("mailsources:detail", source.pk)
    return render(
        request,
        "mailsources/form.html",
        {
            "form": form,
            "kind": SourceKind(source.kind),
            "source": source,
        },
    )


@administrators_only
@require_GET
def source_detail(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(MailSource, pk=pk)
    failing = failing_mailboxes(source)
    run = source.runs.first()
    return render(
        request,
        "mailsources/detail.html",
        {
            "source": source,
            "status": status_text(source, failing),
            "status_class": status_class(source, failing),
            "failing": failing_text(failing),
            "progress": progress_text(run, source),
            "import_files": import_progress(source) if source.kind == SourceKind.IMPORT else [],
            "bar": run_progress(run, timezone.now()),
            "last_run": _local(source.last_run_at),
            "queued": queued_text(source),
            "runs": run_rows(source),
            "mailbox_statuses": source.mailbox_statuses.order_by("mailbox"),
            "folder_cursors": source.cursors.order_by("mailbox", "folder"),
        },
    )


@administrators_only
@require_POST
def source_test(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(MailSource, pk=pk)
    try:
        reports = services.source_test_connection(source)
    except (SourceError, SecretUnavailable) as exc:
        messages.error(request, _("Connection test failed: %(error)s") % {"error": exc})
    else:
        lines = [line for report in reports for line in report.lines]
        enabled = _enable_after_first_test(source)
        messages.success(
            request,
            _("Connection test passed. ")
            + " · ".join(lines)
            + (_(" The source is enabled now; its first sync starts soon.") if enabled else ""),
        )
    return redirect("mailsources:detail", source.pk)


def _enable_after_first_test(source: MailSource) -> bool:
    """A new source waits disabled for its first successful test (forms.AWAITING_TEST);
    one the administrator disabled later stays disabled."""
    return bool(
        MailSource.objects.filter(pk=source.pk, enabled=False, status=SourceStatus.DISABLED).update(
            enabled=True, status=SourceStatus.IDLE, status_message="", next_run_at=timezone.now()
        )
    )


@administrators_only
@require_POST
def source_sync_now(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(MailSource, pk=pk)
    with transaction.atomic():
        services.source_request_sync(source)
        log_source_change(request, source, "sync requested", {})
    try:
        tasks.sync_enqueue(source.pk)
    except BROKER_ERRORS as exc:
        messages.error(request, _("The task queue is unavailable, the sync was not queued: %(error)s") % {"error": exc})
    else:
        messages.success(request, _("Sync queued; it starts when a sync worker is free."))
    return redirect("mailsources:detail", source.pk)


@administrators_only
@require_GET
def source_progress(request: HttpRequest, pk: int) -> JsonResponse:
    source = get_object_or_404(MailSource, pk=pk)
    run: SyncRun | None = source.runs.first()
    failing = failing_mailboxes(source)
    return JsonResponse(
        {
            "status": source.status,
            "status_display": source.get_status_display(),
            "status_message": source.status_message,
            "status_text": status_text(source, failing),
            "status_class": status_class(source, failing),
            "failing": failing_text(failing),
            "progress": progress_text(run, source),
            "bar": run_progress(run, timezone.now()),
            "last_run": _local(source.last_run_at),
            "runs": run_rows(source),
            "archived": source.archived_count,
            "queued": queued_text(source),
            "run": None
            if run is None
            else {
                "id": run.pk,
                "status": run.status,
                "status_display": run.get_status_display(),
                "done": run.done,
                "total": run.total,
                "new": run.new,
                "duplicate": run.duplicate,
                "skipped": run.skipped,
                "failed": run.failed,
                "finished": run.finished.isoformat() if run.finished else None,
            },
        }
    )
