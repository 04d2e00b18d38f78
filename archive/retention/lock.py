"""The deletion lock ("revisionssicher"): a ``pre_delete`` receiver on Document
and DocumentFile that raises unless the deletion service authorised exactly
that document. Django sends ``pre_delete`` for every row a model or queryset
delete removes (also for cascades and the admin's delete views), so the ORM
cannot delete a document past this. With ``RETENTION_DELETION_LOCK`` off other
deletes are allowed again — except of a document on legal hold."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db.models.signals import pre_delete
from django.utils.translation import gettext

from archive.models import Document, DocumentFile


class DeletionRefused(Exception):
    """A document or file was to be deleted outside the deletion service."""


# The document numbers the deletion service is deleting now (its approval token).
_authorised: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "retention_authorised", default=frozenset()
)


def lock_enabled() -> bool:
    return bool(getattr(settings, "RETENTION_DELETION_LOCK", True))


@contextlib.contextmanager
def authorised(numbers: Iterable[int]) -> Iterator[None]:
    """Only for ``deletion.documents_delete``: these documents may be deleted inside."""
    token = _authorised.set(frozenset(numbers))
    try:
        yield
    finally:
        _authorised.reset(token)


def _check(number: int) -> None:
    if number in _authorised.get():
        return
    if lock_enabled():
        raise DeletionRefused(
            gettext(
                "Document %(number)s cannot be deleted: the deletion lock is on — documents are deleted only "
                "through an approved expiry list, after their retention end."
            )
            % {"number": number}
        )
    from .holds import is_held

    if is_held(number):
        refusal = gettext("Document %(number)s is on legal hold and cannot be deleted.")
        raise DeletionRefused(refusal % {"number": number})


def _document_deleting(sender: Any, instance: Document, **kwargs: Any) -> None:
    _check(instance.pk)


def _file_deleting(sender: Any, instance: DocumentFile, **kwargs: Any) -> None:
    _check(instance.document_id)


def connect() -> None:
    pre_delete.connect(_document_deleting, sender=Document, dispatch_uid="retention_lock_document")
    pre_delete.connect(_file_deleting, sender=DocumentFile, dispatch_uid="retention_lock_file")
