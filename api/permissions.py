"""Scopes: a token carries some of read, upload, admin; the session of the
product's own pages carries every scope its user may have."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from api.models import ApiToken, Scope
from api.tokens import allowed_scopes, effective_scopes


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

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) and self.scope in request_scopes(request)


class ReadScope(_ScopeRequired):
    scope = Scope.READ.value


class UploadScope(_ScopeRequired):
    scope = Scope.UPLOAD.value


class AdminScope(_ScopeRequired):
    """Staff users only, with a token of the admin scope (or their session)."""

    scope = Scope.ADMIN.value
    message = "Administrators only (a staff user, with the admin scope)."
