"""Which columns the WebDMS table shows, from the archive settings."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.apps import apps
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from archive.models import (
    ArchiveSettings,
    Document,
    DocumentFile,
    DocumentKind,
    FieldDefinition,
    FileRole,
    PrimaryUsage,
)
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
    # (column, what the cell shows): yes/no for a yes/no value, "" for none.
    cells: list[tuple[FieldDefinition | VirtualColumn, object]]
    poster: Poster | None = None
    icons: Icons | None = None
    url: str = ""  # the document's page: every cell links to it


def cell_value(value: object) -> object:
    """Dates compact and sortable-looking: 2024-06-03, or with the time when it has one;
    yes/no in the request's language; nothing for no value."""
    if isinstance(value, dt.datetime):
        local = timezone.localtime(value) if timezone.is_aware(value) else value
        return local.strftime("%Y-%m-%d" if local.time() == dt.time(0) else "%Y-%m-%d %H:%M")
    if value is True or value is False:
        return gettext("yes") if value else gettext("no")
    return "" if value is None else value


_SLOT = 9876543210123  # a number where the document's goes, in its reversed URL


def table_rows(
    documents: list[Document],
    columns: list[FieldDefinition | VirtualColumn],
    posters: dict[int, Poster] | None = None,
    *,
    icons: bool = False,
) -> list[TableRow]:
    """The page's rows; mailbox/folder columns and icons cost one query each."""
    posters = posters or {}
    places = mail_places(documents) if any(isinstance(c, VirtualColumn) for c in columns) else {}
    by_document = document_icons(documents) if icons and documents else {}

    def value(doc: Document, column: FieldDefinition | VirtualColumn) -> object:
        if isinstance(column, VirtualColumn):
            place = places.get(doc.pk)
            return "" if place is None else place[0 if column.name == "mailbox" else 1]
        return cell_value(field_value(doc, column))

    # The link once per row, not once per cell in the template (a page of 50 rows
    # with 12 columns spent a quarter of its rendering in {% url %}).
    head, tail = reverse("archive:document", args=[_SLOT]).rsplit(str(_SLOT), 1)
    return [
        TableRow(
            doc,
            [(c, value(doc, c)) for c in columns],
            posters.get(doc.pk),
            by_document.get(doc.pk),
            f"{head}{doc.pk}{tail}",
        )
        for doc in documents
    ]


def with_mail_columns(
    settings: ArchiveSettings, columns: list[FieldDefinition], documents: list[Document]
) -> list[FieldDefinition | VirtualColumn]:
    """Mailbox and folder after the leading columns: in a mail archive, or when the page shows mail."""
    if settings.primary_usage != PrimaryUsage.MAILS and not any(d.kind == DocumentKind.MAIL for d in documents):
        return list(columns)
    lead = len(USAGE_COLUMNS.get(settings.primary_usage, ()))
    lead = min(lead, len(columns))
    return [*columns[:lead], *mail_columns(), *columns[lead:]]


# Mail: where it was archived from (mailsources' location ledger, read through
# the app registry: archive does not import mailsources).


@dataclasses.dataclass(frozen=True)
class VirtualColumn:
    """A table column that is not a field: shown, not sortable."""

    name: str
    label: str
    virtual: bool = True


def mail_columns() -> tuple[VirtualColumn, VirtualColumn]:
    """In the request's language."""
    return (VirtualColumn("mailbox", gettext("Mailbox")), VirtualColumn("folder", gettext("Folder")))


def _locations() -> Any:
    return apps.get_model("mailsources", "MailLocation").objects


def mail_places(documents: list[Document]) -> dict[int, tuple[str, str]]:
    """Per mail document of the page: (mailbox, folder) where it was first seen,
    with "+N" when it is in more folders. One query for the page."""
    numbers = [d.pk for d in documents if d.kind == DocumentKind.MAIL]
    if not numbers:
        return {}
    rows = (
        _locations()
        .filter(mail__document_id__in=numbers)
        .order_by("mail__document_id", "seen_at", "pk")
        .values_list("mail__document_id", "mailbox", "folder")
    )
    found: dict[int, list[tuple[str, str]]] = {}
    for number, mailbox, folder in rows:
        places = found.setdefault(number, [])
        if (mailbox, folder) not in places:
            places.append((mailbox, folder))
    return {n: (p[0][0], p[0][1] + (f" (+{len(p) - 1})" if len(p) > 1 else "")) for n, p in found.items()}


# Type and attachment icons (static/icons/*.svg), outside Media mode.

TYPE_ICONS = (
    ("message/rfc822", "mail", gettext_noop("Mail")),
    ("application/pdf", "pdf", "PDF"),
    ("image/", "image", gettext_noop("Image")),
    ("video/", "video", gettext_noop("Video")),
    ("audio/", "audio", gettext_noop("Audio")),
    ("text/", "text", gettext_noop("Text")),
)


@dataclasses.dataclass(frozen=True)
class Icons:
    kind: str  # static/icons/type-<kind>.svg
    label: str
    attachments: int


def _type_of(document: Document, content_type: str, name: str) -> tuple[str, str]:
    if document.kind == DocumentKind.MAIL or name.lower().endswith(".eml"):
        return "mail", gettext("Mail")
    for prefix, kind, label in TYPE_ICONS:
        if content_type.startswith(prefix):
            return kind, gettext(label)
    return ("file", gettext("File")) if content_type else ("none", gettext("No file"))


def document_icons(documents: list[Document]) -> dict[int, Icons]:
    """Per document of the page: its type (from the current original) and how
    many attachments it has. One query for the page."""
    files = (
        DocumentFile.objects.filter(document__in=[d.pk for d in documents])
        .order_by("document_id", "-version", "pk")
        .values_list("document_id", "role", "content_type", "name", "version")
    )
    original: dict[int, tuple[str, str]] = {}
    newest: dict[int, int] = {}
    attachments: dict[int, int] = {}
    for number, role, content_type, name, version in files:
        newest.setdefault(number, version)
        if role == FileRole.ORIGINAL:
            original.setdefault(number, (content_type, name))
        elif version == newest[number]:
            attachments[number] = attachments.get(number, 0) + 1
    icons = {}
    for d in documents:
        kind, label = _type_of(d, *original.get(d.pk, ("", "")))
        icons[d.pk] = Icons(kind, label, attachments.get(d.pk, 0))
    return icons
