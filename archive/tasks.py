"""Celery adapters for the archive: ids in, one service call each."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_shutdown

from archive import extraction, extraction_pool, processing
from archive.search import statistics, upgrade


@shared_task(acks_late=True, ignore_result=True)
def extract_document(document_id: int) -> None:
    # Idempotent: files already extracted are skipped; an attempt is claimed
    # in the database, so a redelivered task cannot run the same attempt twice.
    extraction.extract_document(document_id)


@shared_task(acks_late=True, ignore_result=True)
def extract_documents(document_ids: list[int]) -> None:
    # A batch from mail ingestion, written in one transaction; idempotent like extract_document.
    extraction.extract_documents(document_ids)


@worker_process_shutdown.connect
@worker_shutdown.connect
def close_extractor(**_: object) -> None:
    # The worker process's sandboxed extractor child ends with it, reaped (no zombie).
    extraction_pool.pool.close()


@shared_task(ignore_result=True)
def extraction_sweep() -> None:
    extraction.extraction_sweep()


@shared_task(ignore_result=True)
def refresh_search_statistics() -> None:
    statistics.refresh()


@shared_task(ignore_result=True)
def upgrade_search_index() -> None:
    # Entries from before the month tokens, rewritten for a minute's share of work.
    upgrade.upgrade()


# Registered under the name it had in mailsources.tasks: messages already queued,
# the workers' routes ("archive.tasks.*" is text extraction's queue) and the
# bench's instrumentation know it by that name.
@shared_task(name="mailsources.tasks.process_mail_documents", acks_late=True, ignore_result=True)
def process_mail_documents(document_ids: list[int]) -> None:
    # Idempotent: a document processed already, or claimed by a live worker, is skipped.
    processing.mail_documents_process(document_ids)


@shared_task(ignore_result=True)
def processing_sweep() -> None:
    # Re-queues mail processing that was lost or failed transiently (archive.processing).
    processing.processing_sweep()
