"""Which documents an export holds: the creator's visible documents, narrowed
by each criterion that is set (AND). Mail sources are looked up by name
(``apps.get_model``): the archive imports no other app."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.apps import apps
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet
from django.db.models.functions import Lower

from archive import search, selectors
from archive.models import Document

from .models import Export, ExportItem

_FREEZE_CHUNK = 1000


class SelectionError(ValueError):
    """A criterion that cannot be applied (a bad query, an unknown source)."""


def by_query(documents: QuerySet[Document], user: selectors.User, text: str) -> QuerySet[Document]:
    """The table's search language (``archive.search``); raises SelectionError."""
    try:
        results = search.search_documents(user, text, allow_scan=False)
    except search.SearchQueryError as exc:
        raise SelectionError(f"Search query: {exc}") from exc
    # The search's own queryset (its SQL names the document table: not usable as a
    # subquery); it is already limited to what the user may see.
    selected: QuerySet[Document] = results.documents.order_by()
    return selected


def _locations() -> QuerySet[Any]:
    if not apps.is_installed("mailsources"):
        raise SelectionError("Mail sources are not installed")
    locations: QuerySet[Any] = apps.get_model("mailsources", "MailLocation")._default_manager.all()
    return locations


def by_source(documents: QuerySet[Document], source_id: int) -> QuerySet[Document]:
    mails = _locations().filter(source_id=source_id).values("mail__document_id")
    return documents.filter(pk__in=mails)


def by_mailbox(documents: QuerySet[Document], mailbox: str) -> QuerySet[Document]:
    """A mailbox as the locations name it (``user@host`` for IMAP, the address for Microsoft 365)."""
    # Lower() on both sides: the MariaDB tables' collation may be case-sensitive.
    locations = _locations().annotate(mailbox_lower=Lower("mailbox")).filter(mailbox_lower=mailbox.lower())
    mails = locations.values("mail__document_id")
    return documents.filter(pk__in=mails)


def by_date_range(documents: QuerySet[Document], start: dt.date | None, end: dt.date | None) -> QuerySet[Document]:
    """The document's date (the "date" field; a mail's Date header), both ends included."""
    if start is not None:
        documents = documents.filter(date__gte=dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC))
    if end is not None:
        documents = documents.filter(
            date__lt=dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
        )
    return documents


def by_legal_hold(documents: QuerySet[Document], hold_id: int) -> QuerySet[Document]:
    """The documents under one legal hold (``archive.retention``'s ``LegalHold``,
    all its criteria, also after it was released)."""
    from archive.retention.holds import hold_documents
    from archive.retention.models import LegalHold
    from archive.search import SearchQueryError

    try:
        hold = LegalHold.objects.get(pk=hold_id)
    except LegalHold.DoesNotExist:
        raise SelectionError(f"legal hold {hold_id} does not exist") from None
    try:
        return documents.filter(pk__in=hold_documents(hold).values("pk"))
    except SearchQueryError as exc:
        raise SelectionError(f"legal hold {hold.name!r}: its search query no longer applies: {exc}") from exc


def export_documents(export: Export) -> QuerySet[Document]:
    """The export's documents in number order (what its creator may see)."""
    user: selectors.User = export.created_by or AnonymousUser()
    documents = selectors.documents_visible_to(user)
    if export.query.strip():
        documents = by_query(documents, user, export.query)
    if export.source_id is not None:
        documents = by_source(documents, export.source_id)
    if export.mailbox.strip():
        documents = by_mailbox(documents, export.mailbox.strip())
    documents = by_date_range(documents, export.date_from, export.date_to)
    if export.legal_hold_id is not None:
        documents = by_legal_hold(documents, export.legal_hold_id)
    return documents.order_by("pk")


def export_freeze(export: Export) -> int:
    """Record the selected numbers (``ExportItem``), once; returns how many."""
    ExportItem.objects.filter(export=export).delete()  # a build that started over
    count = 0
    batch: list[ExportItem] = []
    for number in export_documents(export).values_list("pk", flat=True).iterator(chunk_size=_FREEZE_CHUNK):
        batch.append(ExportItem(export=export, document=number))
        if len(batch) == _FREEZE_CHUNK:
            ExportItem.objects.bulk_create(batch)
            count += len(batch)
            batch = []
    ExportItem.objects.bulk_create(batch)
    return count + len(batch)


def frozen_documents(export: Export) -> QuerySet[Document]:
    """The export's documents as fixed by ``export_freeze``, in number order."""
    numbers = ExportItem.objects.filter(export=export).values("document")
    return Document.objects.filter(pk__in=numbers).order_by("pk")
