"""LDAP / Active Directory sign-in through django-auth-ldap, with what WebAdmin
adds: the directory's groups mapped by ``LDAP_GROUP_MAP`` on every sign-in, and a
local account (one with a password of its own) never taken over by a directory
entry of the same name. A wrong password, an unknown or disabled user (one the
user filter leaves out) all end as one failed ``authenticate()`` — which the
login throttling counts like any other."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django_auth_ldap.backend import LDAPBackend, _LDAPUser

from webadmin.auth.groups import apply_group_map


class DirectoryLDAPBackend(LDAPBackend):  # type: ignore[misc]  # the library has no type hints
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        if not getattr(settings, "LDAP_ENABLED", False) or not username or not password:
            return None
        user: User | None = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None and getattr(settings, "AUTH_LDAP_GROUP_SEARCH", None) is not None:
            ldap_user: _LDAPUser = getattr(user, "ldap_user")  # noqa: B009  # set by django-auth-ldap
            apply_group_map(user, getattr(settings, "LDAP_GROUP_MAP", {}), ldap_user.group_names)
        return user

    def get_or_build_user(self, username: str, ldap_user: _LDAPUser) -> tuple[User, bool]:
        user, built = super().get_or_build_user(username, ldap_user)
        if not built and user.has_usable_password():
            raise _LDAPUser.AuthenticationFailed(f"{username!r} is a local account")
        return user, built
