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
reads instead of parsing the ``.eml``."""

from __future__ import annotations

import dataclasses
import email.policy
import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from archive import extraction, mailview, mimestream, storage
from archive.mail import MailPart, ParsedMail, mail_limits, parse_headers, parse_message
from archive.models import Document, DocumentFile, DocumentKind, FileRole
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
        DocumentFile.objects.bulk_create(files)
        mailview.mail_view_store(original.pk, parsed.view)
        if parsed.error and not locked.parse_error:
            Document.objects.filter(pk=document.pk).update(parse_error=parsed.error)


def _process_one(document: Document) -> None:
    try:
        mail_document_process(document)
    except storage.StorageError:
        logger.exception("mail document %s: original missing from the store", document.pk)
    except Exception as exc:  # noqa: BLE001 - one hostile mail must not stop the others
        logger.exception("mail document %s: processing failed", document.pk)
        Document.objects.filter(pk=document.pk, parse_error="").update(
            parse_error=f"processing failed: {exc.__class__.__name__}: {exc}"[:2000]
        )


@dataclasses.dataclass
class _Pending:
    document: Document
    original: DocumentFile


def mail_documents_process(document_ids: list[int]) -> None:
    documents = {d.pk: d for d in Document.objects.filter(pk__in=document_ids, kind=DocumentKind.MAIL)}
    originals: dict[int, DocumentFile] = {}
    for file in DocumentFile.objects.filter(document_id__in=list(documents), role=FileRole.ORIGINAL).order_by("id"):
        originals.setdefault(file.document_id, file)
    done = set(
        DocumentFile.objects.filter(document_id__in=list(documents), role=FileRole.ATTACHMENT).values_list(
            "document_id", flat=True
        )
    )
    chunk: list[_Pending] = []
    size = 0
    for pk in sorted(documents):
        original = originals.get(pk)
        if original is None or pk in done:
            continue
        chunk.append(_Pending(documents[pk], original))
        size += min(original.size, settings.MAIL_MAX_MESSAGE_BYTES)
        if size >= CHUNK_BYTES:
            _process_chunk(chunk)
            chunk, size = [], 0
    if chunk:
        _process_chunk(chunk)
    _after_processing(document_ids)


def _process_chunk(chunk: list[_Pending]) -> None:
    """Parse the chunk's mails, store all their parts at once, record them in
    one transaction; on a database error, mail by mail instead."""
    errors: dict[int, str] = {}
    parts: list[tuple[int, MailPart]] = []
    streamed: list[DocumentFile] = []
    views: dict[int, tuple[int, dict[str, Any] | None]] = {}
    for item in chunk:
        pk = item.document.pk
        if item.original.size > settings.MAIL_MAX_MESSAGE_BYTES:
            errors[pk] = _over_limit_error(item.original.size)
            continue
        try:
            parsed = _read(item.original)
        except storage.StorageError:
            logger.exception("mail document %s: original missing from the store", pk)
            continue
        except Exception as exc:  # noqa: BLE001 - one hostile mail must not stop the others
            logger.exception("mail document %s: processing failed", pk)
            errors[pk] = f"processing failed: {exc.__class__.__name__}: {exc}"
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
            DocumentFile.objects.bulk_create(f for f in files if f.document_id in locked and f.document_id not in again)
            for pk, (original_id, view) in views.items():
                if pk in locked and pk not in again:
                    mailview.mail_view_store(original_id, view)
            for pk, error in errors.items():
                if pk in locked and pk not in again and not locked[pk]:
                    Document.objects.filter(pk=pk).update(parse_error=error[:2000])
    except Exception:  # noqa: BLE001 - e.g. one hostile value the database refuses
        logger.warning("processing %d mail documents together failed; one by one instead", len(chunk), exc_info=True)
        for item in chunk:
            _process_one(item.document)


def _after_processing(document_ids: list[int]) -> None:
    """Text extraction for search, now that the attachments exist as files."""
    extraction.schedule_for_documents(document_ids)
