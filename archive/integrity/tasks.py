"""Celery adapters of the integrity app (beat: settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from . import anchoring, tsa, verify

logger = logging.getLogger(__name__)

# A TSA down for longer than these retries is tried again at the next interval.
ANCHOR_MAX_RETRIES = 8


@shared_task(bind=True, ignore_result=True, max_retries=ANCHOR_MAX_RETRIES)
def anchor_heads(self: Any) -> None:
    """Timestamp both chains' heads; the TSA unreachable or its answer invalid:
    retried with backoff (archiving does not wait for any of it)."""
    try:
        anchoring.anchor_heads()
    except tsa.TsaError as exc:
        logger.warning("anchoring failed (try %d): %s", self.request.retries + 1, exc)
        raise self.retry(exc=exc, countdown=anchoring.retry_delay(self.request.retries)) from None


@shared_task(ignore_result=True)
def scheduled_verification() -> None:
    verify.scheduled()
