"""Thin Celery adapters: ids in, one service call each. JSON only, no secrets
in arguments; ``acks_late`` is safe because every task is idempotent."""

from __future__ import annotations

import logging
import uuid

from celery import shared_task
from django.db import OperationalError

from archive.backoff import at_least_retry_after, backoff_delay
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
            source_id,
            client_factory=services.client_for_source,
            # Unique per attempt (a message redelivered to another process of the
            # same worker must not share the lease) and within lease_owner's 64 chars.
            owner=f"{uuid.uuid4().hex[:16]}@{self.request.hostname or 'direct'}"[:64],
            after_commit=_enqueue_processing,
        )
    except TransientSourceError as exc:
        countdown = retry_countdown(self.request.retries, exc.retry_after)
        logger.warning("source %s: transient error, retry in %.0f s: %s", source_id, countdown, exc)
        raise self.retry(countdown=countdown, exc=exc) from None
    except OperationalError as exc:
        if not is_transient_db_error(exc):
            raise
        countdown = retry_countdown(self.request.retries, None)
        logger.warning("source %s: database busy, retry in %.0f s: %s", source_id, countdown, exc)
        raise self.retry(countdown=countdown, exc=exc) from None


# MariaDB: deadlock, lock wait timeout, server gone away / lost; SQLite: locked.
_TRANSIENT_DB_CODES = {1205, 1213, 2006, 2013}


def is_transient_db_error(exc: OperationalError) -> bool:
    """Errors a later attempt of the same idempotent run can succeed after."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return code in _TRANSIENT_DB_CODES or "database is locked" in str(exc)


def retry_countdown(retries: int, retry_after: float | None, *, jitter: float | None = None) -> float:
    """Seconds until the next attempt: exponential backoff (30 s doubling, at most an hour)
    with jitter; a server's Retry-After wins when it is longer, rounded up so the retry
    never comes early (Graph sends fractions such as 2.128)."""
    backoff = backoff_delay(retries, base=30, cap=3600, jitter=(0.5, 1.0), factor=jitter)
    return at_least_retry_after(backoff, retry_after)


@shared_task(acks_late=True, ignore_result=True)
def dispatch_due_sources() -> None:
    for source_id in services.sources_due():
        sync_source.delay(source_id)


@shared_task(acks_late=True, ignore_result=True)
def process_mail_documents(document_ids: list[int]) -> None:
    processing.mail_documents_process(document_ids)
