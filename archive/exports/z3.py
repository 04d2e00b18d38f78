"""The GoBD "Z3" data medium (Datenträgerüberlassung): ``z3/index.xml`` in the
GDPdU description standard and the tables it describes — the selected
documents' metadata, their files, and where each mail was found — as CSV
(semicolon separated, UTF-8, CRLF, values in double quotes where needed,
a header line that ``Range/From`` 2 skips; dates DD.MM.YYYY, decimal comma)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from django.apps import apps
from django.db.models import QuerySet

from archive.integrity.ledger import metadata_hash
from archive.models import Document, DocumentFile, FieldDefinition, FieldType, parse_field_date

from .sink import Sink, Written

DTD_NAME = "gdpdu-01-09-2004.dtd"
DTD_FILE = Path(__file__).with_name(DTD_NAME)
DATE_FORMAT = "DD.MM.YYYY"
_CHUNK = 500
_CRLF = "@@CRLF@@"  # replaced after serialising

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    description: str
    kind: str  # AlphaNumeric, Numeric, Date
    value: Callable[[Any], object]
    accuracy: int | None = None


@dataclasses.dataclass
class Table:
    url: str
    name: str
    description: str
    keys: list[Column]
    columns: list[Column]
    rows: Callable[[], Iterator[Any]]

    @property
    def all_columns(self) -> list[Column]:
        return self.keys + self.columns


def format_value(column: Column, value: object) -> str:
    if value is None or value == "":
        return ""
    if column.kind == "Date":
        when = value if isinstance(value, dt.date) else parse_field_date(str(value))
        return when.strftime("%d.%m.%Y") if when else ""
    if column.kind == "Numeric":
        try:
            number = float(str(value))
        except ValueError:
            return ""
        return f"{number:.{column.accuracy or 0}f}".replace(".", ",")
    return str(value)


def _field_column(field: FieldDefinition) -> Column:
    kind = {FieldType.NUMBER: "Numeric", FieldType.DATE: "Date"}.get(FieldType(field.type), "AlphaNumeric")
    name = field.name

    def value(document: Document) -> object:
        return document.values.get(name)

    return Column(f"field_{name}", field.label, kind, value, 2 if kind == "Numeric" else None)


def documents_table(documents: QuerySet[Document]) -> Table:
    fields = [f for f in FieldDefinition.objects.filter(internal=False)]
    return Table(
        "documents.csv",
        "Documents",
        "Archived documents and mails: number, kind, owner group, archive time, field values",
        [Column("number", "Document number", "Numeric", lambda d: d.pk)],
        [
            Column("kind", "Kind (document or mail)", "AlphaNumeric", lambda d: d.kind),
            Column("owner_group", "Owner group", "AlphaNumeric", lambda d: d.owner_group.name),
            Column("archived", "Archived on (UTC)", "Date", lambda d: d.created.astimezone(dt.UTC).date()),
            Column("archived_time", "Archived at (UTC, ISO 8601)", "AlphaNumeric", lambda d: d.created.isoformat()),
            *[_field_column(f) for f in fields],
            Column("metadata_sha256", "SHA-256 of the canonical metadata", "AlphaNumeric", metadata_hash),
        ],
        lambda: documents.select_related("owner_group").prefetch_related("files").iterator(chunk_size=_CHUNK),
    )


def files_table(documents: QuerySet[Document]) -> Table:
    files = DocumentFile.objects.filter(document__in=documents.order_by().values("pk")).order_by("document_id", "pk")
    return Table(
        "files.csv",
        "Files",
        "The files of each document, with their SHA-256 and their place in the export",
        [Column("file_id", "File id", "Numeric", lambda f: f.pk)],
        [
            Column("number", "Document number", "Numeric", lambda f: f.document_id),
            Column("role", "Role (original or attachment)", "AlphaNumeric", lambda f: f.role),
            Column("version", "Version", "AlphaNumeric", lambda f: f.version_label),
            Column("name", "File name", "AlphaNumeric", lambda f: f.name),
            Column("content_type", "MIME type", "AlphaNumeric", lambda f: f.content_type),
            Column("size", "Size in bytes", "Numeric", lambda f: f.size),
            Column("sha256", "SHA-256", "AlphaNumeric", lambda f: f.sha256),
            Column("path", "Path in the export", "AlphaNumeric", file_path),
        ],
        lambda: files.iterator(chunk_size=_CHUNK),
    )


def locations_table(documents: QuerySet[Document]) -> Table | None:
    if not apps.is_installed("mailsources"):
        return None
    model = apps.get_model("mailsources", "MailLocation")
    locations = model._default_manager.filter(mail__document__in=documents.order_by().values("pk"))
    return Table(
        "locations.csv",
        "MailLocations",
        "Where each archived mail was found: source, mailbox, folder, UIDVALIDITY and UID (or Graph id)",
        [Column("location_id", "Location id", "Numeric", lambda m: m.pk)],
        [
            Column("number", "Document number", "Numeric", lambda m: m.mail.document_id),
            Column("source", "Mail source", "AlphaNumeric", lambda m: m.source.name),
            Column("mailbox", "Mailbox", "AlphaNumeric", lambda m: m.mailbox),
            Column("folder", "Folder", "AlphaNumeric", lambda m: m.folder),
            Column("epoch", "UIDVALIDITY", "AlphaNumeric", lambda m: m.epoch),
            Column("location", "UID or message id", "AlphaNumeric", lambda m: m.location),
            Column("message_id", "Message-ID", "AlphaNumeric", lambda m: m.mail.message_id),
            Column("seen", "First seen (UTC)", "Date", lambda m: m.seen_at.astimezone(dt.UTC).date()),
            Column("removed", "Gone from the server (UTC)", "Date", lambda m: m.removed_at and m.removed_at.date()),
        ],
        lambda: locations.select_related("mail", "source").order_by("pk").iterator(chunk_size=_CHUNK),
    )


def file_path(f: DocumentFile) -> str:
    """Where a document file lies in the export (the manifest's ``path``)."""
    safe = "".join(c if c.isalnum() or c in "._-@+" else "_" for c in f.name)[:120] or "file"
    return f"documents/{f.document_id}/{f.pk}-{safe}"


def csv_chunks(table: Table) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", quotechar='"', lineterminator="\r\n")
    columns = table.all_columns
    writer.writerow([c.name for c in columns])
    for count, item in enumerate(table.rows(), start=1):
        writer.writerow([format_value(c, c.value(item)) for c in columns])
        if count % _CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _text(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _column(parent: ET.Element, tag: str, column: Column) -> None:
    element = _text(parent, tag)
    _text(element, "Name", column.name)
    _text(element, "Description", column.description)
    kind = _text(element, column.kind)
    if column.kind == "Numeric" and column.accuracy:
        _text(kind, "Accuracy", str(column.accuracy))
    elif column.kind == "Date":
        _text(kind, "Format", DATE_FORMAT)


def index_xml(tables: list[Table], *, supplier: str, comment: str, validity: tuple[dt.date, dt.date] | None) -> bytes:
    dataset = ET.Element("DataSet")
    _text(dataset, "Version", "1.0")
    data_supplier = _text(dataset, "DataSupplier")
    _text(data_supplier, "Name", supplier)
    _text(data_supplier, "Location", supplier)
    _text(data_supplier, "Comment", comment)
    media = _text(dataset, "Media")
    _text(media, "Name", "Medium 1")
    for table in tables:
        element = _text(media, "Table")
        _text(element, "URL", table.url)
        _text(element, "Name", table.name)
        _text(element, "Description", table.description)
        if validity is not None:
            valid = _text(element, "Validity")
            range_ = _text(valid, "Range")
            _text(range_, "From", validity[0].strftime("%d.%m.%Y"))
            _text(range_, "To", validity[1].strftime("%d.%m.%Y"))
            _text(valid, "Format", DATE_FORMAT)
        _text(element, "UTF8")
        _text(element, "DecimalSymbol", ",")
        _text(element, "DigitGroupingSymbol", ".")
        _text(_text(element, "Range"), "From", "2")  # line 1: the column names
        variable = _text(element, "VariableLength")
        _text(variable, "ColumnDelimiter", ";")
        _text(variable, "RecordDelimiter", _CRLF)
        _text(variable, "TextEncapsulator", '"')
        for key in table.keys:
            _column(variable, "VariablePrimaryKey", key)
        for column in table.columns:
            _column(variable, "VariableColumn", column)
    ET.indent(dataset)
    # CR LF as character references: a parser would turn literal ones into one LF.
    body = ET.tostring(dataset, encoding="unicode").replace(_CRLF, "&#13;&#10;")
    head = f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE DataSet SYSTEM "{DTD_NAME}">\n'
    return (head + body + "\n").encode()


def write_z3(
    sink: Sink, documents: QuerySet[Document], *, supplier: str, comment: str, validity: tuple[dt.date, dt.date] | None
) -> list[Written]:
    tables = [t for t in (documents_table(documents), files_table(documents), locations_table(documents)) if t]
    written = [sink.write(f"z3/{t.url}", csv_chunks(t)) for t in tables]
    written.append(
        sink.write("z3/index.xml", [index_xml(tables, supplier=supplier, comment=comment, validity=validity)])
    )
    written.append(sink.write(f"z3/{DTD_NAME}", [DTD_FILE.read_bytes()]))
    return written
