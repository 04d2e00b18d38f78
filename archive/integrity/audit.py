"""The audit log: ``log`` appends one access or administrative act."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest

from . import chain
from .ledger import actor_name
from .models import AuditEntry, Chain


class AuditAction:
    """The acts that are logged (``AuditEntry.action``)."""

    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    SIGN_OUT = "sign_out"
    DOCUMENT_VIEW = "document_view"
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


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def log(
    action: str,
    request: HttpRequest | None = None,
    *,
    user: Any = None,
    document: int | None = None,
    outcome: str = "ok",
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit entry; ``user`` defaults to the request's user."""
    if user is None and request is not None:
        user = getattr(request, "user", None)
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    return chain.append(  # type: ignore[return-value]
        Chain.AUDIT,
        action=action,
        actor=actor_name(user),
        user_id=user.pk if authenticated else None,
        document=document,
        ip=client_ip(request),
        outcome=outcome,
        details=dict(details or {}),
    )
