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

Each file is extracted in a sandboxed child process (``archive.extraction_pool``:
one long-lived ``python -m archive.extractors --serve`` per worker process,
replaced after a timeout, a crash, a memory overrun or N files) with a
wall-clock timeout and CPU, memory and output limits per file, so a hostile
attachment costs at most one timeout and one child. A batch of documents
(``extract_documents``) is written, texts and index, in one transaction. Outcomes per file: ``done`` (text),
``none`` (no text in this kind of file, or too big), ``failed`` (error
recorded, retried with backoff up to ``EXTRACTION_MAX_ATTEMPTS``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import sys

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from archive import extraction_pool, storage
from archive.backoff import backoff_delay
from archive.errors import transient_reason
from archive.extractors import Limits
from archive.models import Document, DocumentFile, ExtractionStatus, FileRole
from archive.search import index_documents

log = logging.getLogger(__name__)

_RETRYABLE = (ExtractionStatus.PENDING, ExtractionStatus.FAILED)
# The reusable child: framed JSON requests on stdin, answers on stdout (extraction_pool).
EXTRACTOR_COMMAND = [sys.executable, "-B", "-m", "archive.extractors", "--serve"]


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
    """Extract one stored file in this worker process's sandboxed child (``extraction_pool``)."""
    timeout = _setting("EXTRACTION_TIMEOUT_SECONDS", 60)
    request = {
        "path": path,
        "content_type": content_type,
        "name": name,
        "skip_sha256": skip_sha256 or [],
        "cpu_seconds": _setting("EXTRACTION_CPU_SECONDS", timeout),
        "memory_bytes": _setting("EXTRACTION_MEMORY_MB", 1024) * 1024 * 1024,
        "max_input_bytes": _setting("EXTRACTION_MAX_BYTES", 200 * 1024 * 1024),
        "limits": dataclasses.asdict(Limits(max_text_chars=_setting("EXTRACTION_MAX_TEXT_CHARS", 2_000_000))),
    }
    # A clean environment: the child needs nothing of ours (no secrets, no database).
    env = {"PYTHONPATH": str(settings.BASE_DIR), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    result = extraction_pool.pool.run(
        request,
        command=EXTRACTOR_COMMAND,
        env=env,
        cwd=str(settings.BASE_DIR),
        timeout=timeout,
        max_files=_setting("EXTRACTION_CHILD_MAX_FILES", 500),
        max_input_bytes=_setting("EXTRACTION_CHILD_MAX_INPUT_MB", 512) * 1024 * 1024,
    )
    return Outcome(str(result["status"]), str(result.get("text", "")), str(result.get("error", "")))


@dataclasses.dataclass
class _Attempt:
    """One claimed attempt at one file and what to write for it."""

    file: DocumentFile
    status: str
    error: str = ""
    text: str = ""
    attempts: int = 0  # the file's attempt count to store


def _claim(files: list[DocumentFile]) -> list[DocumentFile]:
    """Claim one attempt at each file, in one transaction (one commit for the
    batch): the rows locked, re-read, counted up. Of two workers holding the
    same task, each attempt goes to one of them."""
    with transaction.atomic():
        current = dict(
            DocumentFile.objects.select_for_update()
            .filter(
                pk__in=[f.pk for f in files],
                extraction_status__in=_RETRYABLE,
                extraction_attempts__lt=max_attempts(),
            )
            .values_list("pk", "extraction_attempts")
        )
        DocumentFile.objects.filter(pk__in=list(current)).update(extraction_attempts=F("extraction_attempts") + 1)
    claimed = []
    for file in files:
        if file.pk in current:
            file.extraction_attempts = current[file.pk]  # before this attempt
            claimed.append(file)
    return claimed


def _skip_lists(files: list[DocumentFile]) -> dict[int, list[str]]:
    """Per mail document: attachments archived as files of their own are
    extracted there, not twice inside the original (one query for the batch)."""
    mails = {f.document_id for f in files if f.role == FileRole.ORIGINAL and f.document.kind == "mail"}
    skips: dict[int, list[str]] = {}
    for document_id, sha256 in DocumentFile.objects.filter(document_id__in=mails, role=FileRole.ATTACHMENT).values_list(
        "document_id", "sha256"
    ):
        skips.setdefault(document_id, []).append(sha256)
    return skips


def _attempt(file: DocumentFile, skip: list[str]) -> _Attempt:
    """Run one claimed attempt at one file."""
    attempts = file.extraction_attempts + 1
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
    text = outcome.text if outcome.status == ExtractionStatus.DONE else ""
    return _Attempt(file, outcome.status, error, text, attempts)


def _attempt_given_back(file: DocumentFile, reason: str) -> _Attempt:
    """An outage (the store unreadable, the disk full), not the file's fault: the
    attempt is given back, so only the content can use the attempts up; the file
    waits as failed, and the retry or the sweep tries again once the outage is over."""
    log.warning("extraction of file %s (%s) postponed: %s", file.pk, file.name, reason)
    error = f"will retry, not the file's fault: {reason}"
    return _Attempt(file, ExtractionStatus.FAILED, error, "", file.extraction_attempts)


def _write(done: list[_Attempt]) -> None:
    """The batch's outcomes and the index of their documents, in one transaction."""
    if not done:
        return
    with transaction.atomic():
        for attempt in done:
            DocumentFile.objects.filter(pk=attempt.file.pk).update(
                extraction_status=attempt.status,
                extraction_error=attempt.error[:2000],
                text=attempt.text,
                extraction_attempts=attempt.attempts,
            )
        documents = sorted({a.file.document_id for a in done})
        # Lock the rows: a concurrent field edit and this rewrite cannot interleave.
        list(Document.objects.select_for_update().filter(pk__in=documents).values_list("pk", flat=True))
        index_documents(documents)


def extract_file(file_id: int) -> str | None:
    """One attempt at one file; returns its new status, or None if there was
    nothing to do (already done, given up, or another worker took this attempt)."""
    file = DocumentFile.objects.filter(pk=file_id).select_related("document").first()
    if file is None:
        return None
    if not _claim([file]):
        return None
    attempt = _attempt(file, _skip_lists([file]).get(file.document_id, []))
    _write([attempt])
    return attempt.status


# --- documents, and the sweep -------------------------------------------------


def extract_document(document_id: int, *, reschedule: bool = True) -> dict[str, int]:
    """Extract every file of the document that still needs it, then re-index
    the document. Failed files are retried later (with backoff) while attempts
    remain. Returns counts per outcome."""
    return extract_documents([document_id], reschedule=reschedule)


def extract_documents(document_ids: list[int], *, reschedule: bool = True) -> dict[str, int]:
    """``extract_document`` for a batch: the files' attempts claimed together,
    each file extracted in this worker's sandboxed child, then every text and the
    documents' index entries written in one transaction."""
    files = list(
        DocumentFile.objects.filter(
            document_id__in=document_ids,
            extraction_status__in=_RETRYABLE,
            extraction_attempts__lt=max_attempts(),
        )
        .select_related("document")
        .order_by("document_id", "role", "id")
    )
    order = {number: i for i, number in enumerate(document_ids)}
    files.sort(key=lambda f: order.get(f.document_id, 0))  # stable: role, id within a document
    skips = _skip_lists(files)
    done: list[_Attempt] = []
    try:
        for file in _claim(files):
            done.append(_attempt(file, skips.get(file.document_id, [])))
    finally:  # an unexpected error: what was extracted is kept all the same
        _write(done)
    counts: dict[str, int] = {}
    for attempt in done:
        counts[attempt.status] = counts.get(attempt.status, 0) + 1
    if reschedule:
        _reschedule_failed(sorted({a.file.document_id for a in done if a.status == ExtractionStatus.FAILED}))
    return counts


def _reschedule_failed(document_ids: list[int]) -> None:
    """A retry per document, after the backoff of its least-tried failed file."""
    if not document_ids:
        return
    fewest: dict[int, int] = {}
    for document_id, attempts in DocumentFile.objects.filter(
        document_id__in=document_ids,
        extraction_status=ExtractionStatus.FAILED,
        extraction_attempts__lt=max_attempts(),
    ).values_list("document_id", "extraction_attempts"):
        fewest[document_id] = min(attempts, fewest.get(document_id, attempts))
    for document_id, attempts in sorted(fewest.items()):
        delay = _retry_delay(attempts)
        transaction.on_commit(functools.partial(enqueue_document, document_id, delay), robust=True)


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
