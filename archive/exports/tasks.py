"""Thin Celery adapters (the "processing" queue: settings.CELERY_TASK_ROUTES)."""

from __future__ import annotations

from celery import shared_task

from . import builder, services


@shared_task(acks_late=True, ignore_result=True)
def export_build(export_id: int) -> None:
    builder.export_build(export_id)


@shared_task(ignore_result=True)
def exports_expire() -> None:
    """Hourly housekeeping: expired exports removed, lost ones queued again."""
    builder.exports_expire()
    services.exports_requeue()
