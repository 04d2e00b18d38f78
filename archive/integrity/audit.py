"""The audit log: ``log`` appends one access or administrative act.

Who calls it:

- sign-in, sign-out, failed sign-in and the login lockout: Django's and axes'
  signals (``signals.py``), so every authentication backend is covered;
- document view, file download, raw .eml download, access-link open (public,
  denied and failed ones too): ``archive.access.document_access``, the one
  access path of the document routes; the API's document routes in
  ``api/views.py``;
- search (query and hit count): the WebDMS table and the API's document list;
- changes of the archive settings and of mail sources: their WebAdmin views
  (``form_changes``); users, groups, permissions and field definitions: model
  signals (``signals.py``), whatever page made the change;
- export: ``log_export`` — the audit log's own export calls it, and so must
  every export of documents (one call before the first byte is sent).

**Fail closed.** An access that cannot be logged is refused: ``log`` raises
when the database refuses the entry, the view's response is dropped and the
outage middleware answers 503 ("try again later"). Nobody reads a document
without a trace because the log was unavailable.

Cost: one entry is one lock of the chain's head row, one insert and one update
of the head (``chain.append``), committed at once outside a transaction."""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.paginator import Page
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from archive.models import DocumentFile, FileRole

from . import chain
from .ledger import SYSTEM
from .models import AuditEntry, Chain

ANONYMOUS = "anonymous"  # a visitor without session (a published document, a failed sign-in)
MAX_DETAIL_CHARS = 500  # a search query, a user name tried: enough to read, bounded for the log


class AuditAction:
    """The acts that are logged (``AuditEntry.action``)."""

    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    SIGN_IN_LOCKED_OUT = "sign_in_locked_out"
    SIGN_OUT = "sign_out"
    DOCUMENT_VIEW = "document_view"
    DOCUMENT_EDIT = "document_edit"
    FILE_DOWNLOAD = "file_download"
    RAW_DOWNLOAD = "raw_download"
    LINK_OPEN = "link_open"
    SEARCH = "search"
    EXPORT = "export"
    SETTINGS_CHANGED = "settings_changed"
    SOURCE_CHANGED = "source_changed"
    FIELD_DEFINITION_CHANGED = "field_definition_changed"
    USER_CHANGED = "user_changed"
    GROUP_CHANGED = "group_changed"
    PERMISSION_CHANGED = "permission_changed"

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [
            (value, str(ACTION_LABELS.get(value, value.replace("_", " ").capitalize())))
            for name, value in vars(cls).items()
            if name.isupper() and isinstance(value, str)
        ]


# The actions' names on the audit log page, in the reader's language.
ACTION_LABELS = {
    AuditAction.SIGN_IN: _("Sign in"),
    AuditAction.SIGN_IN_FAILED: _("Sign in failed"),
    AuditAction.SIGN_IN_LOCKED_OUT: _("Sign in locked out"),
    AuditAction.SIGN_OUT: _("Sign out"),
    AuditAction.DOCUMENT_VIEW: _("Document view"),
    AuditAction.DOCUMENT_EDIT: _("Document edit"),
    AuditAction.FILE_DOWNLOAD: _("File download"),
    AuditAction.RAW_DOWNLOAD: _("Raw download"),
    AuditAction.LINK_OPEN: _("Link open"),
    AuditAction.SEARCH: _("Search"),
    AuditAction.EXPORT: _("Export"),
    AuditAction.SETTINGS_CHANGED: _("Settings changed"),
    AuditAction.SOURCE_CHANGED: _("Source changed"),
    AuditAction.FIELD_DEFINITION_CHANGED: _("Field definition changed"),
    AuditAction.USER_CHANGED: _("User changed"),
    AuditAction.GROUP_CHANGED: _("Group changed"),
    AuditAction.PERMISSION_CHANGED: _("Permission changed"),
}


class Outcome:
    OK = "ok"
    DENIED = "denied"  # not allowed (not found or not yours, read-only role, locked out)
    FAILED = "failed"  # allowed, but it did not work (wrong password, no such file, bad query)

    CHOICES = [(OK, _("ok")), (DENIED, _("denied")), (FAILED, _("failed"))]


# The request being answered, for acts recorded by model signals (a user saved
# in the Django admin): set by ``AuditContextMiddleware``.
current_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("audit_request", default=None)


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def actor_of(user: Any, request: HttpRequest | None) -> str:
    """The user's name; ``anonymous`` for a request without session; ``system`` without a request."""
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.get_username())
    return ANONYMOUS if request is not None else SYSTEM


def log(
    action: str,
    request: HttpRequest | None = None,
    *,
    user: Any = None,
    document: int | None = None,
    outcome: str = Outcome.OK,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit entry; ``user`` defaults to the request's user."""
    if user is None and request is not None:
        user = getattr(request, "user", None)
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    return chain.append(  # type: ignore[return-value]
        Chain.AUDIT,
        action=action,
        actor=actor_of(user, request),
        user_id=user.pk if authenticated else None,
        document=document,
        ip=client_ip(request),
        outcome=outcome,
        details=dict(details or {}),
    )


def log_in_context(action: str, details: Mapping[str, Any], *, outcome: str = Outcome.OK) -> AuditEntry:
    """An act found by a model signal: by the user of the request being answered, if any."""
    return log(action, current_request.get(), outcome=outcome, details=details)


def log_export(request: HttpRequest, what: str, *, count: int | None = None, **details: Any) -> AuditEntry:
    """THE call of every export (documents, the audit log…), before its first
    byte is sent: what is exported, in which format, with which filter."""
    data = {"what": what, **details}
    if count is not None:
        data["count"] = count
    return log(AuditAction.EXPORT, request, details=data)


def log_search(
    request: HttpRequest, query: str, page: Page[Any], error: str = "", *, user: Any = None, **details: Any
) -> AuditEntry:
    """A search: the query, its hits (as the page counts them: "more" past the
    count limit), the page; a refused query with its error."""
    paginator = page.paginator
    data = {
        "query": clip(query),
        "hits": paginator.count,
        "more": bool(getattr(paginator, "more", False)),
        "page": page.number,
        **details,
    }
    if error:
        data["error"] = clip(error)
    return log(AuditAction.SEARCH, request, user=user, outcome=Outcome.FAILED if error else Outcome.OK, details=data)


def file_action(file: DocumentFile) -> str:
    """A file served: the archived .eml itself (its bytes as received) is a raw download."""
    raw = file.role == FileRole.ORIGINAL and (
        file.content_type == "message/rfc822" or file.name.lower().endswith(".eml")
    )
    return AuditAction.RAW_DOWNLOAD if raw else AuditAction.FILE_DOWNLOAD


def clip(text: object) -> str:
    return str(text)[:MAX_DETAIL_CHARS]


def plain(value: Any) -> Any:
    """A form or model value as canonical JSON can hold it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Model):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | Decimal):
        return str(value)
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        return [plain(v) for v in value]
    return clip(value)


def form_changes(form: forms.BaseForm) -> dict[str, Any]:
    """What a valid form changes from its initial values: ``{field: {"old": …,
    "new": …}}``; a secret (a password input) only as ``{"changed": true}`` —
    never its value."""
    changes: dict[str, Any] = {}
    for name in form.changed_data:
        field = form.fields[name]
        if isinstance(field.widget, forms.PasswordInput):
            changes[name] = {"changed": True}
            continue
        old = form.get_initial_for_field(field, name)
        try:
            old = field.to_python(old)  # a foreign key's id → the object, as the new value is
        except ValidationError:
            pass
        changes[name] = {"old": plain(old), "new": plain(form.cleaned_data.get(name))}
    return changes


class AuditContextMiddleware:
    """Makes the request known to acts found by model signals (``current_request``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            current_request.reset(token)
