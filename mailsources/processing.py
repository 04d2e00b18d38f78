"""The "fully processed" stage of a mail: after it is archived (raw stored,
header fields committed), its MIME tree is parsed, attachments and inline
images become files of the document. Re-running is a no-op."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from archive import storage
from archive.mail import MailLimits, parse_message
from archive.models import Document, DocumentFile, DocumentKind, FileRole
from archive.services import guess_content_type

logger = logging.getLogger(__name__)


def mail_limits() -> MailLimits:
    return MailLimits(max_depth=settings.MAIL_MAX_MIME_DEPTH, max_parts=settings.MAIL_MAX_MIME_PARTS)


def mail_document_process(document: Document) -> None:
    original = document.files.filter(role=FileRole.ORIGINAL).order_by("id").first()
    if original is None or document.files.filter(role=FileRole.ATTACHMENT).exists():
        return
    parsed = parse_message(storage.read_bytes(original.sha256), mail_limits())
    files = []
    for part in parsed.attachments + parsed.inline:
        blob = storage.put_bytes(part.payload)
        content_type = part.content_type or guess_content_type(part.filename)
        files.append(DocumentFile(
            document=document, role=FileRole.ATTACHMENT, name=(part.filename or f"part-{part.path}")[:255],
            content_type=content_type, sha256=blob.sha256, size=blob.size,
            part=part.path, content_id=part.content_id[:255],
        ))
    with transaction.atomic():
        locked = Document.objects.select_for_update().get(pk=document.pk)
        if locked.files.filter(role=FileRole.ATTACHMENT).exists():
            return  # processed concurrently
        DocumentFile.objects.bulk_create(files)
        if parsed.error and not locked.parse_error:
            Document.objects.filter(pk=document.pk).update(parse_error=parsed.error)


def mail_documents_process(document_ids: list[int]) -> None:
    for document in Document.objects.filter(pk__in=document_ids, kind=DocumentKind.MAIL):
        try:
            mail_document_process(document)
        except storage.StorageError:
            logger.exception("mail document %s: original missing from the store", document.pk)
    _after_processing(document_ids)


def _after_processing(document_ids: list[int]) -> None:
    """Text extraction for search, when the archive provides it."""
    try:
        from archive import extraction
    except ImportError:
        return
    schedule = getattr(extraction, "schedule_for_documents", None)
    if schedule is not None:
        schedule(document_ids)
