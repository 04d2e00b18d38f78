"""The "fully processed" stage of a mail: after it is archived (raw stored,
header fields committed), its MIME tree is parsed, attachments and inline
images become files of the document. Re-running is a no-op.

A task's documents are processed in chunks: the parts of a chunk are stored
with one ``put_many`` and recorded in one transaction (one commit instead of
one per mail); a chunk whose transaction fails is redone mail by mail, so one
hostile mail still cannot stop the others. Parsing uses ``compat32``, which
finds the same parts as ``policy.default`` several times faster.

A mail of ``mimestream.STREAM_MIN_BYTES`` or more is read by
``archive.mimestream`` instead: its parts go to the store as they are decoded,
so the worker never holds the message. With the parts, processing stores the
mail's ``MailView`` (headers, sanitised body, part list) that the View tab
reads instead of parsing the ``.eml``.

Processing is state in the database, not only a message in the broker. Each
mail document's ``processing_status`` is pending (archived, its task queued),
processing (a worker claimed it at ``processing_updated``), done, failed
transiently (the database or the disk was unavailable: retried with backoff)
or failed permanently (``processing_error`` says what in the content is wrong).
A chunk is claimed just before it is processed, so a claim older than
``MAIL_PROCESSING_STALE_SECONDS`` was lost with its worker. ``processing_sweep``
(Celery beat, on the "processing" queue) re-queues what waits too long, what
was lost and what is due for its retry; a mail whose claim was lost
``MAIL_PROCESSING_MAX_LOST`` times (it kills its worker) fails permanently."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.policy
import logging
from collections.abc import Iterable
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from archive import bulk, extraction, mailview, mimestream, storage
from archive.backoff import backoff_delay
from archive.errors import transient_reason
from archive.integrity import ledger
from archive.integrity.models import LedgerEvent
from archive.mail import MailPart, ParsedMail, mail_limits, parse_headers, parse_message
from archive.models import Document, DocumentFile, DocumentKind, FileRole, ProcessingStatus
from archive.services import guess_content_type

logger = logging.getLogger(__name__)


# Raw bytes parsed per chunk (its parts are held in memory until stored).
CHUNK_BYTES = 16 * 1024 * 1024


def _parse(raw: bytes) -> ParsedMail:
    return parse_message(raw, mail_limits(), policy=email.policy.compat32)


def _over_limit_error(size: int) -> str:
    limit = settings.MAIL_MAX_MESSAGE_BYTES
    return (
        f"not parsed: {size} bytes is over the limit of {limit} bytes "
        "(MAIL_MAX_MESSAGE_BYTES); the raw mail is archived"
    )


def _attachment_file(
    document_id: int, part: MailPart | mimestream.StoredPart, blob: storage.StoredBlob
) -> DocumentFile:
    content_type = part.content_type or guess_content_type(part.filename)
    if len(content_type) > 255:  # hostile; would not fit the column
        content_type = "application/octet-stream"
    return DocumentFile(
        document_id=document_id,
        role=FileRole.ATTACHMENT,
        name=(part.filename or f"part-{part.path}")[:255],
        content_type=content_type,
        sha256=blob.sha256,
        size=blob.size,
        part=part.path[:64],
        content_id=part.content_id[:255],
    )


@dataclasses.dataclass
class _Parsed:
    """One mail read for processing: its parts still to store (``payloads``,
    from ``parse_message``) or stored already (streamed), and its view."""

    error: str
    view: dict[str, Any] | None
    parts: list[MailPart] = dataclasses.field(default_factory=list)
    stored: list[mimestream.StoredPart] = dataclasses.field(default_factory=list)


def _read(original: DocumentFile) -> _Parsed:
    """Parse the mail in ``original``: in memory when small, streamed (parts
    stored as they are read) when big. Raises StorageError when it is missing."""
    if original.size >= mimestream.STREAM_MIN_BYTES:
        with storage.open_blob(original.sha256) as fh:
            headers = parse_headers(fh.read(mailview.HEAD_BYTES))
            fh.seek(0)
            streamed = mimestream.stream_parse(fh, mail_limits())
        stored = streamed.attachments + streamed.inline
        infos = [mailview.PartInfo(p.path, p.content_type, p.filename, p.content_id, p.size, p.parent) for p in stored]
        view = mailview.mail_view_data(
            headers, text=streamed.text, html=streamed.html, parts=infos, error=streamed.error, nested=streamed.nested
        )
        return _Parsed(error=streamed.error, view=view, stored=stored)
    raw = storage.read_bytes(original.sha256)
    parsed = _parse(raw)
    parts = parsed.attachments + parsed.inline
    infos = [
        mailview.PartInfo(p.path, p.content_type, p.filename, p.content_id, len(p.payload), p.parent) for p in parts
    ]
    view = mailview.mail_view_data(
        parse_headers(raw), text=parsed.text, html=parsed.html, parts=infos, error=parsed.error, nested=parsed.nested
    )
    return _Parsed(error=parsed.error, view=view, parts=parts)


def mail_view_build(original: DocumentFile) -> bool:
    """Store the view of a mail processed before views were stored (or of an
    older layout), leaving its files alone; the parts of a big mail are read
    again (the store keeps one copy). False when the mail is not to be parsed."""
    if original.size > settings.MAIL_MAX_MESSAGE_BYTES:
        return False
    parsed = _read(original)
    with transaction.atomic():
        mailview.mail_view_store(original.pk, parsed.view)
    return parsed.view is not None


def mail_document_process(document: Document) -> None:
    original = document.files.filter(role=FileRole.ORIGINAL).order_by("id").first()
    if original is None or document.files.filter(role=FileRole.ATTACHMENT).exists():
        return
    if original.size > settings.MAIL_MAX_MESSAGE_BYTES:
        # Parsing it could exhaust the worker; the raw mail stays the record.
        Document.objects.filter(pk=document.pk, parse_error="").update(parse_error=_over_limit_error(original.size))
        return
    parsed = _read(original)
    blobs = storage.put_many([part.payload for part in parsed.parts])
    files = [_attachment_file(document.pk, part, blob) for part, blob in zip(parsed.parts, blobs, strict=True)]
    files += [_attachment_file(document.pk, part, part.blob) for part in parsed.stored]
    with transaction.atomic():
        locked = Document.objects.select_for_update().get(pk=document.pk)
        if locked.files.filter(role=FileRole.ATTACHMENT).exists():
            return  # processed concurrently
        bulk.create(files)
        _record_derived(files)
        mailview.mail_view_store(original.pk, parsed.view)
        if parsed.error and not locked.parse_error:
            Document.objects.filter(pk=document.pk).update(parse_error=parsed.error)


def _record_derived(files: list[DocumentFile]) -> None:
    """One ``FILES_DERIVED`` ledger entry per document that got files (one append
    for all); the documents are read again here, under the caller's row lock."""
    blobs: dict[int, list[str]] = {}
    for f in files:
        blobs.setdefault(f.document_id, []).append(f.sha256)
    if not blobs or not ledger.enabled():
        return
    documents = Document.objects.select_for_update().in_bulk(list(blobs))  # locked already: the newest rows
    ledger.record_many(
        (LedgerEvent.FILES_DERIVED, documents[pk], ledger.SYSTEM, shas, {"files": len(shas)})
        for pk, shas in sorted(blobs.items())
    )


# --- outcomes, claims and the sweep ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # a ProcessingStatus: DONE, FAILED_TRANSIENT or FAILED_PERMANENT
    error: str = ""


DONE = Outcome(ProcessingStatus.DONE)
# What a task may claim: new, due for a retry, or never registered (a mail
# document made outside mail ingestion, or a test).
CLAIMABLE = (ProcessingStatus.NONE, ProcessingStatus.PENDING, ProcessingStatus.FAILED_TRANSIENT)
PROCESS_TASK = "mailsources.tasks.process_mail_documents"  # its registered name (archive.tasks)
SWEEP_DOCUMENTS_PER_TASK = 50


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def _failure(exc: BaseException) -> Outcome:
    """An exception while processing one mail: an outage is transient; anything
    else is the content's fault, and the message says which mail part failed how."""
    reason = transient_reason(exc)
    if reason is not None:
        return Outcome(ProcessingStatus.FAILED_TRANSIENT, reason)
    if isinstance(exc, storage.StorageError):
        # Rule 1 stores the raw mail before its document exists: a missing original is
        # the store being unavailable (not mounted, restored), not the mail's fault.
        return Outcome(ProcessingStatus.FAILED_TRANSIENT, f"the original is not readable in the store: {exc}")
    return Outcome(ProcessingStatus.FAILED_PERMANENT, f"processing failed: {exc.__class__.__name__}: {exc}")


def _process_one(document: Document) -> Outcome:
    try:
        mail_document_process(document)
    except Exception as exc:  # noqa: BLE001 - one hostile mail must not stop the others
        outcome = _failure(exc)
        logger.warning("mail document %s: %s", document.pk, outcome.error, exc_info=True)
        if outcome.status == ProcessingStatus.FAILED_PERMANENT:
            Document.objects.filter(pk=document.pk, parse_error="").update(parse_error=outcome.error[:2000])
        return outcome
    original = document.files.filter(role=FileRole.ORIGINAL).order_by("id").first()
    if original is not None and original.size > settings.MAIL_MAX_MESSAGE_BYTES:
        return Outcome(ProcessingStatus.FAILED_PERMANENT, _over_limit_error(original.size))
    return DONE


@dataclasses.dataclass
class _Pending:
    document: Document
    original: DocumentFile


def processing_register(document_ids: Iterable[int], *, now: dt.datetime | None = None) -> None:
    """Inside the transaction that creates mail documents: their processing is
    pending from the commit on (the sweep finds them if their task is lost)."""
    ids = list(document_ids)
    now = now or timezone.now()
    for i in range(0, len(ids), 500):
        Document.objects.filter(pk__in=ids[i : i + 500]).update(
            processing_status=ProcessingStatus.PENDING, processing_updated=now, processing_error=""
        )


def _claim(pks: list[int], now: dt.datetime) -> list[int]:
    """Claim what is claimable of ``pks`` (one transaction, one conditional UPDATE
    each: of two workers holding the same documents, one gets each)."""
    claimed = []
    with transaction.atomic():
        for pk in pks:
            if (
                Document.objects.filter(pk=pk, processing_status__in=CLAIMABLE).update(
                    processing_status=ProcessingStatus.PROCESSING,
                    processing_updated=now,
                    processing_attempts=F("processing_attempts") + 1,
                )
                == 1
            ):
                claimed.append(pk)
    return claimed


def _record(outcomes: dict[int, Outcome], claimed_at: dt.datetime | None) -> None:
    """The outcomes, for the claims still ours (a claim the sweep found stale and
    gave to another worker is that worker's now)."""
    if not outcomes:
        return
    now = timezone.now()
    alike: dict[Outcome, list[int]] = {}
    for pk, outcome in sorted(outcomes.items()):
        alike.setdefault(outcome, []).append(pk)
    with transaction.atomic():
        for outcome, pks in alike.items():
            for i in range(0, len(pks), 500):
                mine = Document.objects.filter(pk__in=pks[i : i + 500])
                if claimed_at is not None:
                    mine = mine.filter(processing_status=ProcessingStatus.PROCESSING, processing_updated=claimed_at)
                update: dict[str, object] = {
                    "processing_status": outcome.status,
                    "processing_error": outcome.error[:2000],
                    "processing_updated": now,
                }
                if outcome.status == ProcessingStatus.DONE:
                    update["processing_attempts"] = 0
                mine.update(**update)


def mail_documents_process(document_ids: list[int], *, now: dt.datetime | None = None) -> dict[int, Outcome]:
    """Process the mail documents of ``document_ids`` that are not done (nor claimed
    by a live worker). Returns the outcome of each document this call processed."""
    documents = {
        d.pk: d
        for d in Document.objects.filter(pk__in=document_ids, kind=DocumentKind.MAIL, processing_status__in=CLAIMABLE)
    }
    originals: dict[int, DocumentFile] = {}
    for file in DocumentFile.objects.filter(document_id__in=list(documents), role=FileRole.ORIGINAL).order_by("id"):
        originals.setdefault(file.document_id, file)
    done = set(
        DocumentFile.objects.filter(document_id__in=list(documents), role=FileRole.ATTACHMENT).values_list(
            "document_id", flat=True
        )
    )
    outcomes: dict[int, Outcome] = {}
    # Files committed before the claim was recorded as done (the worker died in between).
    already = {pk: DONE for pk in documents if pk in done}
    missing = {
        pk: Outcome(ProcessingStatus.FAILED_PERMANENT, "the mail document has no original (.eml) file")
        for pk in documents
        if pk not in originals
    }
    _record(already | missing, None)
    outcomes |= already | missing
    chunk: list[_Pending] = []
    size = 0
    for pk in sorted(documents):
        original = originals.get(pk)
        if original is None or pk in done:
            continue
        chunk.append(_Pending(documents[pk], original))
        size += min(original.size, settings.MAIL_MAX_MESSAGE_BYTES)
        if size >= CHUNK_BYTES:
            outcomes |= _claim_and_process(chunk, now)
            chunk, size = [], 0
    if chunk:
        outcomes |= _claim_and_process(chunk, now)
    _after_processing([pk for pk, o in outcomes.items() if o.status != ProcessingStatus.FAILED_TRANSIENT])
    return outcomes


def _claim_and_process(chunk: list[_Pending], now: dt.datetime | None) -> dict[int, Outcome]:
    claimed_at = now or timezone.now()
    claimed = set(_claim([item.document.pk for item in chunk], claimed_at))
    mine = [item for item in chunk if item.document.pk in claimed]
    if not mine:
        return {}
    outcomes = _process_chunk(mine)
    _record(outcomes, claimed_at)
    return outcomes


def _process_chunk(chunk: list[_Pending]) -> dict[int, Outcome]:
    """Parse the chunk's mails, store all their parts at once, record them in
    one transaction; on a database error, mail by mail instead. Returns the
    outcome of each mail."""
    errors: dict[int, str] = {}
    failed: dict[int, Outcome] = {}
    parts: list[tuple[int, MailPart]] = []
    streamed: list[DocumentFile] = []
    views: dict[int, tuple[int, dict[str, Any] | None]] = {}
    for item in chunk:
        pk = item.document.pk
        if item.original.size > settings.MAIL_MAX_MESSAGE_BYTES:
            errors[pk] = _over_limit_error(item.original.size)
            failed[pk] = Outcome(ProcessingStatus.FAILED_PERMANENT, errors[pk])
            continue
        try:
            parsed = _read(item.original)
        except Exception as exc:  # noqa: BLE001 - one hostile mail must not stop the others
            failed[pk] = _failure(exc)
            logger.warning("mail document %s: %s", pk, failed[pk].error, exc_info=True)
            if failed[pk].status == ProcessingStatus.FAILED_PERMANENT:
                errors[pk] = failed[pk].error
            continue
        if parsed.error:
            errors[pk] = parsed.error
        parts += [(pk, part) for part in parsed.parts]
        streamed += [_attachment_file(pk, part, part.blob) for part in parsed.stored]
        views[pk] = (item.original.pk, parsed.view)
    try:
        blobs = storage.put_many([part.payload for _, part in parts])
        files = streamed + [_attachment_file(pk, part, blob) for (pk, part), blob in zip(parts, blobs, strict=True)]
        with transaction.atomic():
            # Lock in one order (by pk): two tasks on overlapping documents cannot deadlock.
            locked = dict(
                Document.objects.select_for_update()
                .filter(pk__in=[i.document.pk for i in chunk])
                .order_by("pk")
                .values_list("pk", "parse_error")
            )
            # Processed concurrently meanwhile: leave those alone.
            again = set(
                DocumentFile.objects.filter(document_id__in=list(locked), role=FileRole.ATTACHMENT).values_list(
                    "document_id", flat=True
                )
            )
            new_files = [f for f in files if f.document_id in locked and f.document_id not in again]
            bulk.create(new_files)
            _record_derived(new_files)
            for pk, (original_id, view) in views.items():
                if pk in locked and pk not in again:
                    mailview.mail_view_store(original_id, view)
            for pk, error in errors.items():
                if pk in locked and pk not in again and not locked[pk]:
                    Document.objects.filter(pk=pk).update(parse_error=error[:2000])
    except Exception as exc:  # noqa: BLE001 - e.g. one hostile value the database refuses
        reason = transient_reason(exc)
        if reason is not None:
            # Disk full, database gone: mail by mail would fail alike; all retry later.
            logger.warning("processing %d mail documents: %s; retried later", len(chunk), reason)
            return {item.document.pk: Outcome(ProcessingStatus.FAILED_TRANSIENT, reason) for item in chunk}
        logger.warning("processing %d mail documents together failed; one by one instead", len(chunk), exc_info=True)
        return {item.document.pk: _process_one(item.document) for item in chunk}
    return {item.document.pk: failed.get(item.document.pk, DONE) for item in chunk}


def _after_processing(document_ids: list[int]) -> None:
    """Text extraction for search, now that the attachments exist as files."""
    extraction.schedule_for_documents(document_ids)


def retry_delay(attempts: int) -> dt.timedelta:
    """How long a transient failure waits before the sweep re-queues it: doubling
    from MAIL_PROCESSING_RETRY_SECONDS, at most an hour (no jitter: the sweep's
    tick already spreads the retries)."""
    base = _setting("MAIL_PROCESSING_RETRY_SECONDS", 60)
    return dt.timedelta(seconds=backoff_delay(attempts - 1, base=base, cap=3600, factor=1.0))


def _enqueue(document_ids: list[int]) -> None:
    for i in range(0, len(document_ids), SWEEP_DOCUMENTS_PER_TASK):
        current_app.send_task(PROCESS_TASK, args=(document_ids[i : i + SWEEP_DOCUMENTS_PER_TASK],))


@dataclasses.dataclass
class SweepResult:
    requeued: list[int] = dataclasses.field(default_factory=list)
    lost: list[int] = dataclasses.field(default_factory=list)  # stale claims taken back
    given_up: list[int] = dataclasses.field(default_factory=list)  # lost too often: permanent


def processing_sweep(*, now: dt.datetime | None = None, limit: int = 5000) -> SweepResult:
    """The safety net (Celery beat): re-queue mail documents whose processing is
    pending longer than MAIL_PROCESSING_PENDING_SECONDS (their task was lost: the
    broker down at commit, restarted empty), claimed longer than
    MAIL_PROCESSING_STALE_SECONDS ago without an outcome (the worker was killed),
    or failed transiently and past their backoff. Each is re-queued at most once
    per threshold (the row remembers when)."""
    now = now or timezone.now()
    result = SweepResult()
    stale_before = now - dt.timedelta(seconds=_setting("MAIL_PROCESSING_STALE_SECONDS", 900))
    max_lost = _setting("MAIL_PROCESSING_MAX_LOST", 5)
    stale = Document.objects.filter(
        kind=DocumentKind.MAIL, processing_status=ProcessingStatus.PROCESSING, processing_updated__lt=stale_before
    ).values_list("pk", "processing_updated", "processing_lost")[:limit]
    for pk, claimed_at, lost in stale:
        mine = Document.objects.filter(
            pk=pk, processing_status=ProcessingStatus.PROCESSING, processing_updated=claimed_at
        )
        if lost + 1 >= max_lost:
            error = (
                f"processing did not finish in {lost + 1} attempts: the worker was killed each time "
                "(the mail may be too big or too complex for the worker's memory); the raw mail is archived"
            )
            if mine.update(
                processing_status=ProcessingStatus.FAILED_PERMANENT,
                processing_error=error,
                processing_lost=lost + 1,
                processing_updated=now,
            ):
                result.given_up.append(pk)
        elif mine.update(processing_status=ProcessingStatus.PENDING, processing_lost=lost + 1):
            # Pending since the claim: re-queued below straight away.
            result.lost.append(pk)
    pending_before = now - dt.timedelta(seconds=_setting("MAIL_PROCESSING_PENDING_SECONDS", 600))
    waiting = list(
        Document.objects.filter(
            kind=DocumentKind.MAIL, processing_status=ProcessingStatus.PENDING, processing_updated__lt=pending_before
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    transient = Document.objects.filter(
        kind=DocumentKind.MAIL, processing_status=ProcessingStatus.FAILED_TRANSIENT
    ).values_list("pk", "processing_attempts", "processing_updated")[:limit]
    due = [pk for pk, attempts, at in transient if at is None or at + retry_delay(attempts) <= now]
    requeue = sorted(set(result.lost) | set(waiting) | set(due))
    if requeue:
        _enqueue(requeue)
        # Queued now: the next sweep waits another threshold (or backoff) for them.
        for i in range(0, len(requeue), 500):
            Document.objects.filter(
                pk__in=requeue[i : i + 500],
                processing_status__in=(ProcessingStatus.PENDING, ProcessingStatus.FAILED_TRANSIENT),
            ).update(processing_updated=now)
    result.requeued = requeue
    if requeue or result.given_up:
        logger.info(
            "processing sweep: %d re-queued (%d lost with their worker), %d given up",
            len(requeue),
            len(result.lost),
            len(result.given_up),
        )
    return result
