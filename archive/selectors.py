"""Reads. ``document_get_for_user`` is the one access check for a document:
every route that touches a document or one of its files goes through it."""

from __future__ import annotations

import dataclasses

from django.contrib.auth.models import AbstractBaseUser, AbstractUser, AnonymousUser, Group, Permission
from django.db.models import CharField, Count, F, Q, QuerySet
from django.db.models.expressions import OrderBy
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.http import Http404

from archive.models import ArchiveSettings, Document, DocumentFile, FieldDefinition, FieldType, FileRole

# Internal fields whose value lives in a column of Document, not in ``values``.
COLUMN_FIELDS = {
    "number": "id",
    "owner": "owner_group__name",
    "created": "created",
    "modified": "modified",
    "title": "title",
    "date": "date",
}

User = AbstractBaseUser | AnonymousUser

# Document numbers are 64-bit primary keys.
MAX_DOCUMENT_NUMBER = 2**63 - 1


def _member(user: User) -> AbstractUser | None:
    """The signed-in user with groups and the superuser flag; None for a visitor."""
    if isinstance(user, AbstractUser) and user.is_authenticated:
        return user
    return None


# The auditor role (issue 12): read-only access to every document, the audit
# log and the integrity reports. Granted through the permission (the group
# "Auditors" carries it); never to write: the access path refuses every change.
AUDIT_PERMISSION = "integrity.audit"


def is_auditor(user: User) -> bool:
    """A signed-in, active user with the audit permission (through a group or
    their own) who is not a superuser (a superuser has every permission and
    stays an administrator). One query per request: the answer is kept on the
    user object, as Django keeps its permission cache."""
    member = _member(user)
    if member is None or not member.is_active or member.is_superuser:
        return False
    known: bool | None = getattr(member, "_is_auditor", None)
    if known is None:
        app_label, codename = AUDIT_PERMISSION.split(".")
        known = (
            Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            .filter(Q(user=member) | Q(group__user=member))
            .exists()
        )
        member._is_auditor = known  # type: ignore[attr-defined]
    return known


def sees_everything(user: User) -> bool:
    """Every document is visible: superusers, and auditors (read-only)."""
    member = _member(user)
    return member is not None and (member.is_superuser or is_auditor(member))


def groups_for_user(user: User) -> QuerySet[Group]:
    member = _member(user)
    if member is None:
        return Group.objects.none()
    if member.is_superuser:
        return Group.objects.all()
    return member.groups.all()


def documents_visible_to(user: User) -> QuerySet[Document]:
    member = _member(user)
    if member is None or not user.is_active:
        return Document.objects.none()
    if sees_everything(member):
        return Document.objects.all()
    # The group ids as constants, not a subquery: with a subquery MariaDB
    # sorts every visible row for a table page; with constants it walks the
    # date index and stops after a page (see bench/search_bench.py).
    groups = list(member.groups.values_list("pk", flat=True))
    return Document.objects.filter(owner_group_id__in=groups)


def document_get_for_user(user: User, number: int) -> Document:
    """The document, or Http404 — the same for "does not exist" and "not yours"."""
    try:
        return documents_visible_to(user).select_related("owner_group").get(pk=number)
    except (Document.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such document") from None


@dataclasses.dataclass(frozen=True)
class DocumentAccess:
    """What a request may do with a document, as ``document_access_get`` decided."""

    document: Document
    public: bool  # opened as a published document (read-only, logged), not as the user's own
    user: User  # whom the check was made for
    # What the route's further condition found (``document_access(require=…)``): a mail's .eml.
    original: DocumentFile | None = None


def document_access_get(user: User, number: int, *, public_ok: bool) -> DocumentAccess:
    """The one access check of every document route: the user's own document,
    else (``public_ok``) a published one, for anyone. Http404 otherwise — the
    same for "does not exist" and "not yours"."""
    if user.is_authenticated:
        try:
            return DocumentAccess(document_get_for_user(user, number), public=False, user=user)
        except Http404:
            if not public_ok:
                raise
    if not public_ok:
        raise Http404("No such document")
    return DocumentAccess(document_get_public(number), public=True, user=user)


def documents_get_for_user(user: User, numbers: list[int]) -> list[Document]:
    """Several documents in the given order; 404 if any one is not visible."""
    if not all(0 < n <= MAX_DOCUMENT_NUMBER for n in numbers):
        raise Http404("No such document")  # no such number can exist (and SQLite cannot compare it)
    found = {d.pk: d for d in documents_visible_to(user).filter(pk__in=numbers)}
    if len(found) != len(set(numbers)):
        raise Http404("No such document")
    return [found[n] for n in numbers]


def document_is_published(document: Document, settings: ArchiveSettings) -> bool:
    field = settings.publish_field
    if field is None:
        return False
    return field_value(document, field) in (True, "1", "true", "yes", 1)


def document_get_public(number: int) -> Document:
    """A document a visitor without login may open: published through the
    "Field for publishing". Anything else is a 404 for them."""
    settings = ArchiveSettings.load()
    try:
        document = Document.objects.select_related("owner_group").get(pk=number)
    except (Document.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such document") from None
    if not document_is_published(document, settings):
        raise Http404("No such document")
    return document


def file_get_for_document(document: Document, file_id: int) -> DocumentFile:
    try:
        return document.files.get(pk=file_id)
    except (DocumentFile.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such file") from None


def file_get_public(document: Document, file_id: int) -> DocumentFile:
    """For a visitor of a published document: only what its View tab shows —
    the newest version of the original and that version's attachments, not
    older versions (those are in the Files tab, which visitors do not get)."""
    original = document.original()
    if original is None:
        raise Http404("No such file")
    if str(file_id) == str(original.pk):
        return original
    try:
        return document.files.get(pk=file_id, version=original.version, role=FileRole.ATTACHMENT)
    except (DocumentFile.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such file") from None


def field_value(document: Document, field: FieldDefinition) -> object:
    if field.name in COLUMN_FIELDS:
        if field.name == "number":
            return document.pk
        if field.name == "owner":
            return document.owner_group.name
        return getattr(document, field.name)
    return document.values.get(field.name, "")


def field_definitions() -> list[FieldDefinition]:
    return list(FieldDefinition.objects.all())


def field_suggestions(user: User, definitions: list[FieldDefinition], limit: int) -> dict[str, list[str]]:
    """Per selection field, up to ``limit`` values to suggest while typing:
    the most used values among the documents the user can see (most used
    first), then allowed values not used yet. ``limit`` 0 means none."""
    if limit <= 0:
        return {}
    visible = documents_visible_to(user)
    suggestions: dict[str, list[str]] = {}
    for field in definitions:
        if field.type != FieldType.SELECTION or field.name in COLUMN_FIELDS:
            continue
        used = (
            # Cast: compare as plain text, not as JSON.
            visible.annotate(_value=Cast(KeyTextTransform(field.name, "values"), CharField()))
            .exclude(_value__isnull=True)
            .exclude(_value="")
            .values("_value")
            .annotate(_uses=Count("pk"))
            .order_by("-_uses", "_value")
        )
        values = [str(row["_value"]) for row in used[:limit]]
        values += [c for c in field.choice_list if c not in values][: limit - len(values)]
        if values:
            suggestions[field.name] = values
    return suggestions


def order_expression(field: FieldDefinition, descending: bool) -> OrderBy:
    expr: F | KeyTextTransform
    if field.name in COLUMN_FIELDS:
        expr = F(COLUMN_FIELDS[field.name])
    else:
        expr = KeyTextTransform(field.name, "values")
    return expr.desc(nulls_last=True) if descending else expr.asc(nulls_first=True)
