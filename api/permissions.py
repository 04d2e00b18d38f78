"""Scopes: a token carries some of read, upload, admin; the session of the
product's own pages carries every scope its user may have. An auditor
(``archive.selectors.is_auditor``) reads: upload and every change are refused."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from api.models import ApiToken, Scope
from api.tokens import allowed_scopes, effective_scopes
from archive.selectors import is_auditor


def request_scopes(request: Request) -> set[str]:
    user = request.user
    if not (user and user.is_authenticated):
        return set()
    if isinstance(request.auth, ApiToken):
        return effective_scopes(request.auth)
    return allowed_scopes(user)


class _ScopeRequired(BasePermission):
    scope = ""
    message = "This token lacks the scope for this operation."
    writes = False  # every method of the scope changes the archive

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated) or self.scope not in request_scopes(request):
            return False
        if (self.writes or request.method not in SAFE_METHODS) and is_auditor(request.user):
            self.message = "Auditors have read-only access."
            return False
        return True


class ReadScope(_ScopeRequired):
    scope = Scope.READ.value


class UploadScope(_ScopeRequired):
    scope = Scope.UPLOAD.value
    writes = True


class AdminScope(_ScopeRequired):
    """Staff users only, with a token of the admin scope (or their session)."""

    scope = Scope.ADMIN.value
    message = "Administrators only (a staff user, with the admin scope)."
