"""Thin Celery adapters: ids in, one service call each. JSON only, no secrets
in arguments; ``acks_late`` is safe because every task is idempotent."""

from __future__ import annotations

import logging
import math
import uuid
from datetime import datetime

from celery import Task, shared_task
from django.db import DatabaseError, connection, transaction
from django.db import Error as DatabaseErrors
from django.utils import timezone

from archive.backoff import backoff_delay, server_wait
from archive.errors import BROKER_ERRORS, is_disk_full, is_transient_db_error
from archive.tasks import process_mail_documents
from mailsources import pipeline, services
from mailsources.clients.base import TransientSourceError
from mailsources.models import CursorStatus, FolderCursor, MailSource, RunStatus, SourceStatus, SyncRun

logger = logging.getLogger(__name__)

# Attempts in a row that commit nothing before the chain of retries stops (progress resets it).
MAX_RETRIES = 8


def _enqueue_processing(document_ids: list[int]) -> None:
    try:
        process_mail_documents.delay(document_ids)
    except BROKER_ERRORS as exc:
        # The mails are committed; only their processing waits (a later sweep finds
        # them). Failing the run for it would make an outage of Redis lose more.
        logger.warning("could not enqueue processing of %d document(s): %s", len(document_ids), exc)


def sync_enqueue(source_id: int) -> None:
    """Put a run of the source on the "sync" queue ("Sync now", the dispatcher); the
    page shows "queued since …" until a worker starts it. Raises BROKER_ERRORS."""
    now = timezone.now()
    # The first enqueue counts: a second press does not make the wait look shorter.
    MailSource.objects.filter(pk=source_id, queued_at__isnull=True).update(queued_at=now)
    try:
        sync_source.delay(source_id)
    except BROKER_ERRORS:
        MailSource.objects.filter(pk=source_id, queued_at=now).update(queued_at=None)
        raise


@shared_task(bind=True, acks_late=True, max_retries=None, ignore_result=True)
def sync_source(
    self: Task[..., None],
    source_id: int,
    interrupted_owner: str = "",
    interrupted_reason: str = "",
    stalled: int = 0,
    mailboxes: list[str] | None = None,
) -> None:
    """One run. ``interrupted_owner``/``interrupted_reason``: the attempt before this
    retry died on an outage before it could close its run (the database was down).

    Retries: ``stalled`` counts the attempts in a row that committed nothing; an attempt
    that committed something starts it again, and only MAX_RETRIES attempts without any
    progress end the chain (Celery's own retry count is not used: it never resets). A
    server's Retry-After is the countdown as given; without one the delay backs off with
    ``stalled``. ``mailboxes``: a retry of only the mailboxes that had to wait (the others
    of the run completed)."""
    # Unique per attempt (a message redelivered to another process of the same
    # worker must not share the lease) and within lease_owner's 64 chars.
    owner = f"{uuid.uuid4().hex[:16]}@{self.request.hostname or 'direct'}"[:64]
    attempt_started = timezone.now()
    try:
        if interrupted_owner and run_close_interrupted(source_id, interrupted_owner, interrupted_reason):
            interrupted_owner = ""
        MailSource.objects.filter(pk=source_id).update(queued_at=None)  # no longer waiting
        pipeline.source_sync(
            source_id,
            client_factory=services.client_for_source,
            owner=owner,
            after_commit=_enqueue_processing,
            only_mailboxes=mailboxes,
        )
    except TransientSourceError as exc:
        stalled = next_stalled(source_id, stalled, attempt_started)
        if stalled > MAX_RETRIES:
            logger.warning("source %s: %d attempts without progress, giving up: %s", source_id, stalled, exc)
            raise
        countdown = max(retry_countdown(max(0, stalled - 1), exc.retry_after), math.ceil(exc.min_wait or 0))
        logger.warning("source %s: transient error, retry in %.0f s: %s", source_id, countdown, exc)
        retry_kwargs: dict[str, object] = {"stalled": stalled}
        if exc.mailboxes:
            retry_kwargs["mailboxes"] = exc.mailboxes
        raise self.retry(countdown=countdown, exc=exc, kwargs=retry_kwargs) from None
    except Exception as exc:
        reason = infrastructure_error(exc)
        if reason is None:
            raise
        closed = run_close_interrupted(source_id, owner, reason, since=attempt_started)
        stalled = next_stalled(source_id, stalled, attempt_started)
        if stalled > MAX_RETRIES:
            logger.warning("source %s: %s; %d attempts without progress, giving up", source_id, reason, stalled)
            raise
        countdown = retry_countdown(max(0, stalled - 1), None)
        logger.warning("source %s: %s; retry in %.0f s", source_id, reason, countdown)
        # Database still down: the next attempt closes the dead run first (the earlier
        # attempt's, whose lease kept this one out, or else this one's).
        outage_kwargs: dict[str, object] = {"stalled": stalled}
        if mailboxes:
            outage_kwargs["mailboxes"] = mailboxes
        if interrupted_owner:
            outage_kwargs |= {"interrupted_owner": interrupted_owner, "interrupted_reason": interrupted_reason}
        elif not closed:
            outage_kwargs |= {"interrupted_owner": owner, "interrupted_reason": reason}
        raise self.retry(countdown=countdown, exc=exc, kwargs=outage_kwargs) from None


def next_stalled(source_id: int, stalled: int, attempt_started: datetime) -> int:
    """The count of attempts in a row without progress, after one that started then: 0 when it
    committed a batch (a folder cursor moved with it), else one more. A database that does not
    answer cannot tell: no progress."""
    try:
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
        progressed = FolderCursor.objects.filter(
            source_id=source_id, status=CursorStatus.OK, updated__gte=attempt_started
        ).exists()
    except DatabaseErrors:
        progressed = False
    return 0 if progressed else stalled + 1


def infrastructure_error(exc: BaseException) -> str | None:
    """The reason to show when ``exc`` is an outage of something the run depends on
    (database, broker, disk space) rather than a fault of the run; else None."""
    if isinstance(exc, DatabaseError) and is_transient_db_error(exc):
        return f"database unavailable: {exc}"
    if isinstance(exc, BROKER_ERRORS):
        return f"broker unavailable: {exc}"
    if is_disk_full(exc):
        return f"disk full: {exc}"
    return None


def run_close_interrupted(source_id: int, owner: str, reason: str, *, since: datetime | None = None) -> bool:
    """Close what an attempt that died on an outage left, with its true reason.

    Holding the lease still (the database went away before the run could be
    closed), no other run of the source is alive: runs marked running are closed,
    the lease is released. Lease already released (the pipeline closed the run as
    an internal error): that run, started ``since``, gets the reason instead.
    Returns False when the database does not answer (nothing could be done)."""
    try:
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()  # a connection broken by the outage
        with transaction.atomic():
            _close_interrupted(source_id, owner, reason, since)
    except DatabaseError as exc:
        logger.warning("source %s: could not close the interrupted run: %s", source_id, exc)
        return False
    return True


def _close_interrupted(source_id: int, owner: str, reason: str, since: datetime | None) -> None:
    source = MailSource.objects.select_for_update().filter(pk=source_id).first()
    if source is None:
        return
    now = timezone.now()
    if source.lease_owner == owner:
        for run in SyncRun.objects.filter(source_id=source_id, status=RunStatus.RUNNING):
            run.status, run.finished = RunStatus.RETRY, now
            run.errors = "\n".join(filter(None, [run.errors, reason]))
            run.save(update_fields=["status", "finished", "errors"])
        MailSource.objects.filter(pk=source_id, lease_owner=owner).update(
            status=SourceStatus.RETRYING,
            status_message=reason[:2000],
            last_run_at=now,
            lease_owner="",
            lease_until=None,
        )
        return
    if since is None:
        return
    closed = (
        SyncRun.objects.filter(source_id=source_id, started__gte=since, status=RunStatus.RETRY).order_by("-pk").first()
    )
    if closed is not None and "internal error: " in closed.errors:
        closed.errors = "\n".join(
            reason if line.startswith("internal error: ") else line for line in closed.errors.splitlines()
        )
        closed.save(update_fields=["errors"])
        MailSource.objects.filter(pk=source_id, status=SourceStatus.RETRYING).update(status_message=reason[:2000])


def retry_countdown(stalled: int, retry_after: float | None, *, jitter: float | None = None) -> float:
    """Seconds until the next attempt. The server named a wait (Retry-After): exactly that,
    rounded up (Graph sends fractions such as 2.128), no backoff on top. Otherwise exponential
    backoff (30 s doubling, at most an hour) with jitter; ``stalled``: the attempts without
    progress before the one that just failed."""
    if retry_after is not None:
        return server_wait(retry_after)
    return backoff_delay(stalled, base=30, cap=3600, jitter=(0.5, 1.0), factor=jitter)


@shared_task(acks_late=True, ignore_result=True)
def dispatch_due_sources() -> None:
    for source_id in services.sources_due():
        try:
            sync_enqueue(source_id)
        except BROKER_ERRORS as exc:
            # Not queued: due again at the next tick rather than after a whole interval.
            MailSource.objects.filter(pk=source_id).update(next_run_at=timezone.now())
            logger.warning("source %s: could not enqueue its run: %s", source_id, exc)
