"""Writes: an export requested (its selection checked, the row saved, the build
queued after commit) and the sweep that queues an export whose message was lost."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from archive.errors import BROKER_ERRORS
from archive.integrity import audit

from .builder import claimable
from .models import Export, ExportStatus
from .selection import export_documents

logger = logging.getLogger(__name__)

# A queued export not started this long after it was asked for lost its message.
PENDING_REQUEUE = dt.timedelta(minutes=10)


def _enqueue(export_id: int) -> None:
    from . import tasks  # the Celery app is loaded lazily

    try:
        tasks.export_build.delay(export_id)
    except BROKER_ERRORS as exc:
        logger.warning("export %s not queued (the sweep queues it later): %s", export_id, exc)


@transaction.atomic
def export_create(request: HttpRequest, selection: dict[str, Any]) -> Export:
    """Save a requested export; raises SelectionError for a selection that cannot
    be applied (a bad query), before anything is saved."""
    user = request.user if request.user.is_authenticated else None
    export = Export(created_by=user, **selection)
    total = export_documents(export).count()  # applies every criterion once
    export.total = total
    export.save()
    audit.log(
        audit.AuditAction.EXPORT,
        request,
        details={"export": export.pk, "event": "requested", "selection": export.selection, "documents": total},
    )
    transaction.on_commit(lambda: _enqueue(export.pk))
    return export


def exports_requeue(now: dt.datetime | None = None) -> int:
    """Queue again what waits too long (its message lost with the broker)."""
    now = now or timezone.now()
    waiting = Q(status=ExportStatus.PENDING, created__lt=now - PENDING_REQUEUE) | (
        claimable(now) & Q(status=ExportStatus.RUNNING)
    )
    stale = list(Export.objects.filter(waiting).values_list("pk", flat=True))
    for export_id in stale:
        _enqueue(export_id)
    return len(stale)
