"""Which columns the WebDMS table shows, from the archive settings."""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.utils import timezone

from archive.models import ArchiveSettings, Document, FieldDefinition, PrimaryUsage
from archive.selectors import field_value
from archive.thumbnails import Poster

# The leading columns for each primary usage, in this order; the other fields
# follow in their definition order (all of them, or the reduced set).
USAGE_COLUMNS: dict[str, tuple[str, ...]] = {
    PrimaryUsage.DOCUMENTS: ("number", "title", "date", "owner"),
    PrimaryUsage.MAILS: ("number", "from", "subject", "date"),
    PrimaryUsage.MEDIA: ("number", "filename", "title", "date"),
}


def table_columns(
    settings: ArchiveSettings, definitions: list[FieldDefinition], *, reduced: bool
) -> list[FieldDefinition]:
    """The usage's columns first (always part of the reduced set), then the
    rest: every field, or in the reduced table only those marked for it."""
    by_name = {f.name: f for f in definitions}
    leading = [by_name[n] for n in USAGE_COLUMNS.get(settings.primary_usage, ()) if n in by_name]
    rest = [f for f in definitions if f not in leading]
    if reduced:
        rest = [f for f in rest if f.in_reduced_table]
    columns = leading + rest
    if reduced and settings.hide_internal_in_reduced:
        columns = [f for f in columns if not f.internal]
    if settings.suppress_title:
        columns = [f for f in columns if f.name != "title"]
    return columns


def shows_posters(settings: ArchiveSettings) -> bool:
    return settings.primary_usage == PrimaryUsage.MEDIA


@dataclasses.dataclass(frozen=True)
class TableRow:
    document: Document
    cells: list[tuple[FieldDefinition, object]]
    poster: Poster | None = None


def cell_value(value: object) -> object:
    """Dates compact and sortable-looking: 2024-06-03, or with the time when it has one."""
    if isinstance(value, dt.datetime):
        local = timezone.localtime(value) if timezone.is_aware(value) else value
        return local.strftime("%Y-%m-%d" if local.time() == dt.time(0) else "%Y-%m-%d %H:%M")
    return value


def table_rows(
    documents: list[Document], columns: list[FieldDefinition], posters: dict[int, Poster] | None = None
) -> list[TableRow]:
    posters = posters or {}
    return [
        TableRow(doc, [(c, cell_value(field_value(doc, c))) for c in columns], posters.get(doc.pk)) for doc in documents
    ]
