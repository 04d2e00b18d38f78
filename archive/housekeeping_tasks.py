"""The housekeeping task (routed to the "processing" queue, scheduled by beat);
a module of its own so that it is discovered next to archive.tasks."""

from __future__ import annotations

from celery import shared_task

from archive import housekeeping as housekeeping_service


@shared_task(ignore_result=True)
def housekeeping() -> None:
    housekeeping_service.housekeeping_run()
