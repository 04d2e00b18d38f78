"""Writes to the archive. Each is one transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import mimetypes
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext as _

from archive import bulk, extraction, search, storage
from archive.integrity import ledger
from archive.integrity.models import LedgerEvent
from archive.models import (
    ArchiveSettings,
    Document,
    DocumentFile,
    DocumentKind,
    FieldDefinition,
    FieldType,
    FileRole,
    parse_field_date,
)
from archive.selectors import COLUMN_FIELDS, field_value


@dataclasses.dataclass(frozen=True)
class NewFile:
    name: str
    blob: storage.StoredBlob
    content_type: str = ""
    role: str = FileRole.ORIGINAL
    part: str = ""
    content_id: str = ""


@dataclasses.dataclass
class NewDocument:
    owner_group: Group
    values: dict[str, object]
    files: list[NewFile]
    kind: str = DocumentKind.DOCUMENT
    parse_error: str = ""


def guess_content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def clean_field_value(field: FieldDefinition, raw: object) -> object:
    """Normalise a value for storage in ``Document.values``; ValidationError if bad."""
    if raw is None or raw == "":
        return False if field.type == FieldType.YESNO else ""
    if field.type == FieldType.YESNO:
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    text = str(raw).strip()
    if field.type == FieldType.NUMBER:
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValidationError(
                _("%(field)s: %(text)s is not a number") % {"field": field.label, "text": repr(text)}
            ) from None
        # "f": 10 stays "10" (str() of a normalised Decimal would say "1E+1").
        return format(number.normalize(), "f")
    if field.type == FieldType.DATE:
        if isinstance(raw, dt.datetime):
            return raw.isoformat()
        if isinstance(raw, dt.date):
            return raw.isoformat()
        if parse_field_date(text) is None:
            raise ValidationError(
                _("%(field)s: %(text)s is not a date (YYYY-MM-DD)") % {"field": field.label, "text": repr(text)}
            )
        return text
    if field.type == FieldType.SELECTION and field.choice_list and text not in field.choice_list:
        raise ValidationError(
            _("%(field)s: %(text)s is not one of the allowed values") % {"field": field.label, "text": repr(text)}
        )
    return text


def _apply_values(
    document: Document,
    values: Mapping[str, object],
    fields: Mapping[str, FieldDefinition] | None = None,
) -> None:
    if fields is None:
        fields = {f.name: f for f in FieldDefinition.objects.filter(name__in=list(values))}
    for name, raw in values.items():
        field = fields.get(name)
        if field is None:
            raise ValidationError(_("Unknown field %(name)s") % {"name": repr(name)})
        if field.internal and name in COLUMN_FIELDS and name not in ("title", "date"):
            raise ValidationError(_("%(field)s is set by the archive") % {"field": field.label})
        document.values[name] = clean_field_value(field, raw)
    document.title = str(document.values.get("title", ""))[:500]
    document.date = parse_field_date(str(document.values.get("date", "") or ""))


@transaction.atomic
def document_create(
    *,
    owner_group: Group,
    values: Mapping[str, object],
    files: Iterable[NewFile] = (),
    kind: str = DocumentKind.DOCUMENT,
    parse_error: str = "",
    actor: str = ledger.SYSTEM,
) -> Document:
    spec = NewDocument(
        owner_group=owner_group, values=dict(values), files=list(files), kind=kind, parse_error=parse_error
    )
    return documents_create_many([spec], actor=actor)[0]


@transaction.atomic
def document_update_values(document: Document, values: Mapping[str, object], *, actor: str = ledger.SYSTEM) -> Document:
    document = Document.objects.select_for_update().get(pk=document.pk)
    old = dict(document.values)
    _apply_values(document, values)
    document.save()
    if changes := ledger.field_changes(old, document.values):
        ledger.record(LedgerEvent.FIELDS_CHANGED, document, actor, details={"fields": changes})
    search.index_document(document)
    return document


@transaction.atomic
def document_set_notes(document: Document, notes: str, *, actor: str = ledger.SYSTEM) -> Document:
    document = Document.objects.select_for_update().get(pk=document.pk)
    old = document.notes
    Document.objects.filter(pk=document.pk).update(notes=notes)
    document.notes = notes
    if old != notes:
        ledger.record(LedgerEvent.NOTES_CHANGED, document, actor, details={"notes": {"old": old, "new": notes}})
    search.index_document(document.pk)
    return document


def _version_target(settings: ArchiveSettings, values: Mapping[str, object], owner_group: Group) -> Document | None:
    key_field = settings.version_key_field
    if not settings.versioning or key_field is None:
        return None
    key = values.get(key_field.name)
    if key in (None, ""):
        return None
    # Compare with the value as it would be stored ("007" and "7" are one number).
    key = clean_field_value(key_field, key)
    if key_field.name in COLUMN_FIELDS:
        lookup = {COLUMN_FIELDS[key_field.name]: key}
    else:
        lookup = {f"values__{key_field.name}": key}
    return Document.objects.select_for_update().filter(owner_group=owner_group, **lookup).order_by("pk").first()


_MAIL_TITLE = "\x00mail title"  # the subject as the default title, not as a value given
# Header → the archive field of that name (the defaults of a mail source's mapping, SPEC §2).
_MAIL_FIELDS = (("from", "from_"), ("to", "to"), ("cc", "cc"), ("subject", "subject"))


def _is_mail_upload(name: str, content_type: str) -> bool:
    return content_type == "message/rfc822" or name.lower().endswith(".eml")


def _mail_values(blob: storage.StoredBlob) -> dict[str, object]:
    """From, To, CC, Subject and Date of an uploaded mail, for the fields of
    those names that can hold them (and the Subject as the default title)."""
    from archive.mail import parse_headers  # here: archive.mail reads settings lazily, keep imports light
    from archive.mailview import HEAD_BYTES

    with storage.open_blob(blob.sha256) as fh:
        headers = parse_headers(fh.read(HEAD_BYTES))
    if headers.error:
        return {}
    fields = {f.name: f for f in FieldDefinition.objects.filter(name__in=[n for n, _a in _MAIL_FIELDS] + ["date"])}
    values: dict[str, object] = {}
    candidates: list[tuple[str, object]] = [(name, getattr(headers, attr)) for name, attr in _MAIL_FIELDS]
    if headers.date is not None:
        candidates.append(("date", headers.date.isoformat()))
    for name, value in candidates:
        field = fields.get(name)
        if field is None or field.internal or not value:
            continue
        try:
            clean_field_value(field, value)
        except ValidationError:
            continue  # a header that does not fit its field stays in the raw mail
        values[name] = value
    if headers.subject:
        values[_MAIL_TITLE] = headers.subject
    return values


@transaction.atomic
def document_create_from_upload(
    *,
    name: str,
    blob: storage.StoredBlob,
    content_type: str,
    owner_group: Group,
    values: Mapping[str, object] | None = None,
    actor: str = ledger.SYSTEM,
) -> tuple[Document, bool]:
    """One uploaded file → a new document, or the next version of an existing
    one when versioning matches its version key. Returns (document, is_new_version)."""
    settings = ArchiveSettings.load()
    content_type = content_type or guess_content_type(name)
    mail = _is_mail_upload(name, content_type)
    # An uploaded mail fills its fields from its headers; values given with the upload win.
    values = {**(_mail_values(blob) if mail else {}), **(values or {})}
    title = values.pop(_MAIL_TITLE, None)
    if settings.filename_field is not None:
        values[settings.filename_field.name] = name
    # The file name is the default title; as such it can be the version key too.
    target = _version_target(settings, {"title": name, **values}, owner_group)
    new_file = NewFile(name=name, blob=blob, content_type=content_type)
    if target is None:
        values.setdefault("title", title or name)
        values.setdefault("date", dt.date.today().isoformat())
        return document_create(owner_group=owner_group, values=values, files=[new_file], actor=actor), False
    # A new version keeps the document's own fields (a title typed by a user
    # stays); only the file name and values given with the upload change.
    current = target.files.filter(role=FileRole.ORIGINAL).aggregate(v=Max("version"))["v"] or 0
    old = dict(target.values)
    DocumentFile.objects.create(
        document=target,
        role=FileRole.ORIGINAL,
        name=name[:255],
        content_type=new_file.content_type,
        sha256=blob.sha256,
        size=blob.size,
        version=current + 1,
    )
    _apply_values(target, values)
    target.save()
    details = {"version": current + 1, "name": name[:255], "fields": ledger.field_changes(old, target.values)}
    ledger.record(LedgerEvent.VERSION_ADDED, target, actor, [blob.sha256], details)
    search.index_document(target)
    extraction.schedule_for_document(target.pk)
    return target, True


def document_values_for_display(
    document: Document, fields: list[FieldDefinition]
) -> list[tuple[FieldDefinition, object]]:
    return [(f, field_value(document, f)) for f in fields]


def documents_create_many(
    specs: list[NewDocument], *, schedule_extraction: bool = True, actor: str = ledger.SYSTEM
) -> list[Document]:
    """Create many documents in few queries (mail ingestion). Call inside the
    caller's transaction; values are cleaned like ``document_create``'s, and each
    gets its ``ARCHIVED`` ledger entry (one append for all).
    ``schedule_extraction=False``: the caller schedules text extraction itself
    (mail ingestion does, in batches, once attachments are files)."""
    fields = {f.name: f for f in FieldDefinition.objects.all()}
    documents = []
    for spec in specs:
        document = Document(kind=spec.kind, owner_group=spec.owner_group, values={}, parse_error=spec.parse_error)
        _apply_values(document, spec.values, fields)
        documents.append(document)
    bulk.create(documents)
    if any(d.pk is None for d in documents):  # a backend without INSERT … RETURNING
        raise RuntimeError("bulk insert did not return primary keys")
    files = [
        DocumentFile(
            document=document,
            role=f.role,
            name=f.name[:255],
            content_type=f.content_type or guess_content_type(f.name),
            sha256=f.blob.sha256,
            size=f.blob.size,
            part=f.part,
            content_id=f.content_id[:255],
        )
        for document, spec in zip(documents, specs, strict=True)
        for f in spec.files
    ]
    bulk.create(files)
    by_document: dict[int, list[DocumentFile]] = {}
    for file in files:
        by_document.setdefault(file.document_id, []).append(file)
    ledger.record_many(
        (
            (LedgerEvent.ARCHIVED, d, actor, [f.blob.sha256 for f in spec.files], {"kind": d.kind})
            for d, spec in zip(documents, specs, strict=True)
        ),
        files=by_document,
    )
    # Searchable by fields at commit; file text follows from the background.
    numbers = [d.pk for d in documents]
    search.index_new_documents(documents, by_document, {name: f.type for name, f in fields.items()})
    if schedule_extraction:
        extraction.schedule_for_documents(numbers)
    return documents
