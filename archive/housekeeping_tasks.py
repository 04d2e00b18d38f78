"""Housekeeping tasks (routed to the "processing" queue, scheduled by beat); a
module of its own, discovered next to archive.tasks (webadmin/celery.py)."""

from __future__ import annotations

from celery import shared_task

from archive import housekeeping


@shared_task(ignore_result=True)
def temporary_files_sweep() -> None:
    housekeeping.temporary_files_sweep_logged()


@shared_task(ignore_result=True)
def orphan_blobs_report() -> None:
    housekeeping.orphan_blobs_report()
