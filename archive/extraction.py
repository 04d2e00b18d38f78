"""Text extraction in the background: the text of each file of a document goes
into ``DocumentFile.text`` and from there into the search index.

How archiving code uses it (upload, IMAP, Microsoft 365): inside the
transaction that creates the document or adds files, call

    archive.extraction.schedule_for_document(document.pk)
    archive.extraction.schedule_for_documents([pk, …])   # a batch

It only registers an ``on_commit`` hook: after the commit, a Celery task
``archive.tasks.extract_document`` is queued (by name: the tasks import this
module, never the other way round). Archiving never waits for it and
never fails because of it (a broker that is down is logged; the periodic
``extraction_sweep`` picks the files up later). ``archive.services`` calls it
for ``document_create`` and new versions, so callers of those need do nothing.

Until the text is there — or if extraction fails — the document is searchable
by its fields, notes and file names (they are indexed in the same transaction).

Each file is extracted in a separate process (``python -m archive.extractors``)
with a wall-clock timeout and CPU, memory and output limits, so a hostile
attachment costs at most one timeout. Outcomes per file: ``done`` (text),
``none`` (no text in this kind of file, or too big), ``failed`` (error
recorded, retried with backoff up to ``EXTRACTION_MAX_ATTEMPTS``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import signal
import subprocess
import sys

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from archive import storage
from archive.backoff import backoff_delay
from archive.errors import transient_reason
from archive.extractors import Limits
from archive.models import DocumentFile, ExtractionStatus, FileRole
from archive.search import index_document

log = logging.getLogger(__name__)

_RETRYABLE = (ExtractionStatus.PENDING, ExtractionStatus.FAILED)
# The child: reads a JSON request on stdin, limits itself, answers JSON on stdout.
EXTRACTOR_COMMAND = [sys.executable, "-B", "-m", "archive.extractors"]


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def max_attempts() -> int:
    return _setting("EXTRACTION_MAX_ATTEMPTS", 3)


# --- scheduling ------------------------------------------------------------------


def schedule_for_document(document_id: int) -> None:
    """Extract the document's pending files once the current transaction commits."""
    transaction.on_commit(functools.partial(enqueue_document, document_id), robust=True)


# The tasks (``archive.tasks``) call this module; it queues them by name, so the
# two never import each other.
EXTRACT_DOCUMENT_TASK = "archive.tasks.extract_document"
EXTRACT_DOCUMENTS_TASK = "archive.tasks.extract_documents"


def enqueue_document(document_id: int, countdown: float | None = None) -> None:
    current_app.send_task(EXTRACT_DOCUMENT_TASK, args=(document_id,), countdown=countdown)


# Documents per task of schedule_for_documents: a publish costs ~1.5 ms of CPU,
# so mail ingestion must not send one per mail; and a task of this many still
# ends well inside the broker's visibility timeout if every file hits its timeout.
DOCUMENTS_PER_TASK = 20


def schedule_for_documents(document_ids: list[int]) -> None:
    """``schedule_for_document`` for many documents (mail ingestion), one task
    per DOCUMENTS_PER_TASK of them."""
    ids = list(document_ids)
    for i in range(0, len(ids), DOCUMENTS_PER_TASK):
        transaction.on_commit(functools.partial(enqueue_documents, ids[i : i + DOCUMENTS_PER_TASK]), robust=True)


def enqueue_documents(document_ids: list[int]) -> None:
    current_app.send_task(EXTRACT_DOCUMENTS_TASK, args=(document_ids,))


def _retry_delay(attempts: int) -> float:
    return backoff_delay(attempts - 1, base=_setting("EXTRACTION_RETRY_SECONDS", 300), jitter=(0.8, 1.2))


# --- running one file ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str
    text: str = ""
    error: str = ""


def run_sandboxed(path: str, content_type: str, name: str, skip_sha256: list[str] | None = None) -> Outcome:
    """Extract one stored file in a child process under limits."""
    timeout = _setting("EXTRACTION_TIMEOUT_SECONDS", 60)
    request = {
        "path": path,
        "content_type": content_type,
        "name": name,
        "skip_sha256": skip_sha256 or [],
        "cpu_seconds": timeout,
        "memory_bytes": _setting("EXTRACTION_MEMORY_MB", 1024) * 1024 * 1024,
        "max_input_bytes": _setting("EXTRACTION_MAX_BYTES", 200 * 1024 * 1024),
        "limits": dataclasses.asdict(Limits(max_text_chars=_setting("EXTRACTION_MAX_TEXT_CHARS", 2_000_000))),
    }
    # A clean environment: the child needs nothing of ours (no secrets, no database).
    env = {"PYTHONPATH": str(settings.BASE_DIR), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    try:
        proc = subprocess.run(
            EXTRACTOR_COMMAND,
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=timeout,
            cwd=str(settings.BASE_DIR),
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(ExtractionStatus.FAILED, error=f"timed out after {timeout} s")
    if proc.returncode != 0:
        if proc.returncode < 0:
            reason = f"killed by {signal.Signals(-proc.returncode).name}"
            if -proc.returncode == signal.SIGXCPU:
                reason += " (CPU time limit)"
        else:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            reason = f"exit status {proc.returncode}: {tail[0]}"
            if "MemoryError" in reason:
                reason += " (memory limit)"
        return Outcome(ExtractionStatus.FAILED, error=f"extractor crashed: {reason}"[:1000])
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        return Outcome(ExtractionStatus.FAILED, error="extractor returned no result")
    return Outcome(result["status"], result.get("text", ""), result.get("error", ""))


def extract_file(file_id: int) -> str | None:
    """One attempt at one file; returns its new status, or None if there was
    nothing to do (already done, given up, or another worker took this attempt)."""
    file = DocumentFile.objects.filter(pk=file_id).select_related("document").first()
    if file is None or file.extraction_status not in _RETRYABLE:
        return None
    if file.extraction_attempts >= max_attempts():
        return None
    # Claim the attempt: of two workers holding the same task, one wins.
    claimed = DocumentFile.objects.filter(
        pk=file.pk, extraction_status=file.extraction_status, extraction_attempts=file.extraction_attempts
    ).update(extraction_attempts=F("extraction_attempts") + 1)
    if not claimed:
        return None
    attempts = file.extraction_attempts + 1
    skip: list[str] = []
    if file.role == FileRole.ORIGINAL and file.document.kind == "mail":
        # Attachments archived as files of their own are extracted there, not twice.
        skip = list(
            DocumentFile.objects.filter(document_id=file.document_id, role=FileRole.ATTACHMENT).values_list(
                "sha256", flat=True
            )
        )
    try:
        path = str(storage.blob_path(file.sha256))
        if not storage.exists(file.sha256):
            raise storage.StorageError(f"blob {file.sha256} is missing from the store")
        outcome = run_sandboxed(path, file.content_type, file.name, skip)
    except (storage.StorageError, OSError) as exc:
        reason = transient_reason(exc) or (
            f"the store is not readable: {exc}" if isinstance(exc, storage.StorageError) else None
        )
        if reason is None:
            raise
        return _attempt_given_back(file, reason)
    error = outcome.error
    if outcome.status == ExtractionStatus.FAILED:
        error = f"attempt {attempts} of {max_attempts()}: {error}"
        log.warning("extraction of file %s (%s) failed: %s", file.pk, file.name, error)
    DocumentFile.objects.filter(pk=file.pk).update(
        extraction_status=outcome.status,
        extraction_error=error[:2000],
        text=outcome.text if outcome.status == ExtractionStatus.DONE else "",
    )
    return outcome.status


def _attempt_given_back(file: DocumentFile, reason: str) -> str:
    """An outage (the store unreadable, the disk full), not the file's fault: the
    attempt is given back, so only the content can use the attempts up; the file
    waits as failed, and the retry or the sweep tries again once the outage is over."""
    log.warning("extraction of file %s (%s) postponed: %s", file.pk, file.name, reason)
    DocumentFile.objects.filter(pk=file.pk).update(
        extraction_status=ExtractionStatus.FAILED,
        extraction_attempts=F("extraction_attempts") - 1,
        extraction_error=f"will retry, not the file's fault: {reason}"[:2000],
        text="",
    )
    return ExtractionStatus.FAILED


# --- a document, and the sweep -------------------------------------------------


def extract_document(document_id: int, *, reschedule: bool = True) -> dict[str, int]:
    """Extract every file of the document that still needs it, then re-index
    the document. Failed files are retried later (with backoff) while attempts
    remain. Returns counts per outcome."""
    file_ids = list(
        DocumentFile.objects.filter(
            document_id=document_id,
            extraction_status__in=_RETRYABLE,
            extraction_attempts__lt=max_attempts(),
        )
        .order_by("role", "id")
        .values_list("pk", flat=True)
    )
    counts: dict[str, int] = {}
    for file_id in file_ids:
        status = extract_file(file_id)
        if status is not None:
            counts[status] = counts.get(status, 0) + 1
    if counts:
        index_document(document_id)
    if reschedule and counts.get(ExtractionStatus.FAILED):
        retry = (
            DocumentFile.objects.filter(
                document_id=document_id,
                extraction_status=ExtractionStatus.FAILED,
                extraction_attempts__lt=max_attempts(),
            )
            .order_by("extraction_attempts")
            .values_list("extraction_attempts", flat=True)
            .first()
        )
        if retry is not None:
            transaction.on_commit(functools.partial(enqueue_document, document_id, _retry_delay(retry)), robust=True)
    return counts


def extraction_sweep(*, stale_minutes: int = 30, limit: int = 1000, now: dt.datetime | None = None) -> int:
    """The safety net (Celery beat): queue documents whose files still wait —
    their task was lost (broker down at upload, a worker killed, a restarted
    Redis) or failed (retried while attempts remain) — and mark files that used
    up their attempts without finishing as failed. ``now``: the clock (tests)."""
    cutoff = (now or timezone.now()) - dt.timedelta(minutes=stale_minutes)
    exhausted = DocumentFile.objects.filter(
        extraction_status=ExtractionStatus.PENDING,
        extraction_attempts__gte=max_attempts(),
        created__lt=cutoff,
    ).values_list("pk", "name", "document_id", "size", "content_type")
    for pk, name, document_id, size, content_type in exhausted[:limit]:
        # Every attempt was cut off (a killed worker, e.g. out of memory): name the
        # content, it is the likely cause, so someone can look at that file.
        error = (
            f"gave up: {max_attempts()} attempts did not finish (worker killed?) on the file "
            f'"{name}" of document {document_id} ({size:,} bytes, {content_type or "no content type"})'
        )
        log.warning("extraction of file %s: %s", pk, error)
        DocumentFile.objects.filter(pk=pk, extraction_status=ExtractionStatus.PENDING).update(
            extraction_status=ExtractionStatus.FAILED, extraction_error=error[:2000]
        )
    waiting = (
        DocumentFile.objects.filter(
            Q(extraction_status=ExtractionStatus.PENDING) | Q(extraction_status=ExtractionStatus.FAILED),
            extraction_attempts__lt=max_attempts(),
            created__lt=cutoff,
        )
        .values_list("document_id", flat=True)
        .distinct()
        .order_by("document_id")[:limit]
    )
    documents = list(waiting)
    for document_id in documents:
        enqueue_document(document_id)
    return len(documents)


def reset_failed(document_ids: list[int] | None = None) -> int:
    """Give failed files a fresh set of attempts (``reindex --retry-failed``)."""
    qs = DocumentFile.objects.filter(extraction_status=ExtractionStatus.FAILED)
    if document_ids is not None:
        qs = qs.filter(document_id__in=document_ids)
    return qs.update(extraction_status=ExtractionStatus.PENDING, extraction_attempts=0)
