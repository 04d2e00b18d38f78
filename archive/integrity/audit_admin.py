"""The audit log in the Django admin: read-only for everyone, superusers too
(entries are appended by the application only, never added, changed or
deleted by hand). And the admin site itself refuses every change by an
auditor who is also staff (read-only, like every other route)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from archive.access import SAFE_METHODS
from archive.selectors import is_auditor

from .admin import ReadOnlyAdmin
from .models import AuditEntry

_site_has_permission = admin.site.has_permission


def _no_changes_by_auditors(request: HttpRequest) -> bool:
    if request.method not in SAFE_METHODS and is_auditor(request.user):
        return False  # the admin answers with its login page: nothing is saved
    return _site_has_permission(request)


admin.site.has_permission = _no_changes_by_auditors  # type: ignore[method-assign]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("seq", "at", "actor", "action", "document", "outcome", "ip")
    list_filter = ("action", "outcome")
    search_fields = ("=document", "actor", "action")
    ordering = ("-seq",)
    actions = None  # no "delete selected"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff)
