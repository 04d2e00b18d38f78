"""Celery adapters for retention: ids in, one service call each."""

from __future__ import annotations

from celery import shared_task

from . import expiry


@shared_task(ignore_result=True)
def expiry_daily() -> None:
    # Daily (beat): finish approved lists, remove due blobs, list what expired.
    expiry.expiry_daily()


@shared_task(acks_late=True, ignore_result=True)
def execute_expiry_list(expiry_list_id: int) -> None:
    # Idempotent: only pending items of an approved list are deleted, each checked again.
    expiry.expiry_list_execute(expiry_list_id)
