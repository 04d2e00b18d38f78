"""Thin Celery adapters: ids in, one service call each. JSON only, no secrets
in arguments; ``acks_late`` is safe because every task is idempotent."""

from __future__ import annotations

import logging
import random

from celery import shared_task

from mailsources import pipeline, processing, services
from mailsources.clients.base import TransientSourceError

logger = logging.getLogger(__name__)

MAX_RETRIES = 8


def _enqueue_processing(document_ids: list[int]) -> None:
    process_mail_documents.delay(document_ids)


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES, ignore_result=True)
def sync_source(self, source_id: int) -> None:  # type: ignore[no-untyped-def]
    try:
        pipeline.source_sync(
            source_id, client_factory=services.client_for_source,
            owner=f"{self.request.hostname}:{self.request.id}",
            after_commit=_enqueue_processing,
        )
    except TransientSourceError as exc:
        # Exponential backoff with jitter; a server's Retry-After wins when longer.
        backoff = min(3600, 30 * 2 ** self.request.retries) * random.uniform(0.5, 1.0)
        countdown = max(backoff, exc.retry_after or 0)
        logger.warning("source %s: transient error, retry in %.0f s: %s", source_id, countdown, exc)
        raise self.retry(countdown=countdown, exc=exc) from None


@shared_task(acks_late=True, ignore_result=True)
def dispatch_due_sources() -> None:
    for source_id in services.sources_due():
        sync_source.delay(source_id)


@shared_task(acks_late=True, ignore_result=True)
def process_mail_documents(document_ids: list[int]) -> None:
    processing.mail_documents_process(document_ids)
