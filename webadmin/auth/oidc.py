"""OpenID Connect sign-in through mozilla-django-oidc, with what WebAdmin adds:
the endpoints found from ``OIDC_ISSUER`` (discovery, once per process), users
matched by a username claim, the groups claim mapped on every sign-in, a local
account never taken over by a directory identity, and a provider that cannot
be reached answered with the login page's message instead of an error page."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import SuspiciousOperation
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from webadmin.auth.groups import apply_group_map

log = logging.getLogger("webadmin.security")

DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
UNREACHABLE = "/login/?directory=unreachable"


@cache
def discover(issuer: str) -> dict[str, str]:
    """The provider's ``/.well-known/openid-configuration`` (kept for the process)."""
    response = requests.get(
        f"{issuer}/.well-known/openid-configuration",
        timeout=setting("OIDC_TIMEOUT"),
        verify=setting("OIDC_VERIFY_SSL"),
    )
    response.raise_for_status()
    document: dict[str, str] = response.json()
    if document.get("issuer", "").rstrip("/") != issuer:
        raise SuspiciousOperation(f"OIDC discovery: issuer {document.get('issuer')!r} is not {issuer!r}")
    return document


def setting(name: str) -> Any:
    """One of the settings webadmin/auth/config.py adds when OIDC is configured."""
    return getattr(settings, name, None)


def oidc_setting(attr: str, *default: Any) -> Any:
    """A setting, with the provider's endpoints discovered when not given explicitly."""
    value = import_from_settings(attr, *default)
    issuer = setting("OIDC_ISSUER")
    if attr in DISCOVERED and not value and issuer:
        return discover(issuer)[DISCOVERED[attr]]
    return value


def enabled() -> bool:
    return bool(getattr(settings, "OIDC_ENABLED", False))


class DirectoryOIDCBackend(OIDCAuthenticationBackend):  # type: ignore[misc]  # the library has no type hints
    """Built for every ``authenticate()`` call, also a password's: the
    provider's endpoints are looked up only when a provider's answer comes in."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.UserModel = User
        self.OIDC_RP_CLIENT_ID = getattr(settings, "OIDC_RP_CLIENT_ID", "")
        self.OIDC_RP_CLIENT_SECRET = getattr(settings, "OIDC_RP_CLIENT_SECRET", "")
        self.OIDC_RP_SIGN_ALGO = getattr(settings, "OIDC_RP_SIGN_ALGO", "RS256")
        self.OIDC_RP_IDP_SIGN_KEY = None

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:  # noqa: N802  # the library's attribute names
        return str(oidc_setting("OIDC_OP_TOKEN_ENDPOINT"))

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:  # noqa: N802
        return str(oidc_setting("OIDC_OP_USER_ENDPOINT"))

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:  # noqa: N802
        return str(oidc_setting("OIDC_OP_JWKS_ENDPOINT"))

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> User | None:
        if request is None or not enabled() or "code" not in request.GET:
            return None
        try:
            user: User | None = super().authenticate(request, **kwargs)
        except (requests.RequestException, jwt.PyJWTError, SuspiciousOperation, ValueError, KeyError) as exc:
            log.warning("OIDC sign-in failed: %s", exc)
            return None
        return user

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(self.username_of(claims))

    @staticmethod
    def username_of(claims: dict[str, Any]) -> str:
        value = claims.get(setting("OIDC_USERNAME_CLAIM"))
        return value.strip()[:150] if isinstance(value, str) else ""

    def filter_users_by_claims(self, claims: dict[str, Any]) -> QuerySet[User]:
        users = User.objects.filter(username=self.username_of(claims))
        # A local account (one with a password of its own) is never signed in through the directory.
        if any(user.has_usable_password() for user in users):
            raise SuspiciousOperation(f"OIDC: {self.username_of(claims)!r} is a local account")
        return users

    def create_user(self, claims: dict[str, Any]) -> User:
        user = User.objects.create_user(self.username_of(claims))  # no usable password
        return self.update_user(user, claims)

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        user.email = str(claims.get("email") or user.email)[:254]
        user.save(update_fields=["email"])
        groups = claims.get(setting("OIDC_GROUPS_CLAIM")) or []
        apply_group_map(user, setting("OIDC_GROUP_MAP"), groups if isinstance(groups, list) else [groups])
        return user


class AuthenticateView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """Off (404) unless OIDC is configured; a provider that does not answer
    discovery sends the user back to the login page with a message."""

    get_settings = staticmethod(oidc_setting)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not enabled():
            raise Http404
        try:
            self.OIDC_OP_AUTH_ENDPOINT = oidc_setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except (requests.RequestException, SuspiciousOperation, ValueError, KeyError) as exc:
            log.warning("OIDC provider unreachable: %s", exc)
            return HttpResponseRedirect(UNREACHABLE)
        response: HttpResponse = super().dispatch(request, *args, **kwargs)
        return response

    def __init__(self, **kwargs: Any) -> None:  # the endpoint is looked up in dispatch
        super(OIDCAuthenticationRequestView, self).__init__(**kwargs)
        self.OIDC_RP_CLIENT_ID = getattr(settings, "OIDC_RP_CLIENT_ID", "")


class CallbackView(OIDCAuthenticationCallbackView):  # type: ignore[misc]
    get_settings = staticmethod(oidc_setting)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not enabled():
            raise Http404
        response: HttpResponse = super().dispatch(request, *args, **kwargs)
        return response
