"""The sign-in settings, read from the environment by webadmin/settings.py.

OpenID Connect is on when ``OIDC_CLIENT_ID`` is set, LDAP when ``LDAP_URI`` is;
each adds its authentication backend after the local accounts'. Bad values stop
start-up with the variable's name."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from webadmin.env import env_bool, env_secret, env_str, env_url

OIDC_BACKEND = "webadmin.auth.oidc.DirectoryOIDCBackend"
LDAP_BACKEND = "webadmin.auth.ldap.DirectoryLDAPBackend"
OIDC_ENDPOINTS = ("AUTHORIZATION", "TOKEN", "USERINFO", "JWKS")


# Group-map targets that are flags, not group names (webadmin/auth/groups.py).
FLAGS = ("staff", "superuser")
GroupMap = dict[str, tuple[str, ...]]


def parse_group_map(name: str, raw: str) -> GroupMap:
    """``a=staff,a=Sales,finance=Finance`` → ``{"a": ("staff", "Sales"), "finance": ("Finance",)}``.
    The directory group's name is compared case-insensitively."""
    mapping: dict[str, list[str]] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        source, sep, target = item.rpartition("=")
        if not sep or not source.strip() or not target.strip():
            raise ImproperlyConfigured(f"{name}: {item!r} is not directory-group=target")
        mapping.setdefault(source.strip().casefold(), []).append(target.strip())
    return {source: tuple(targets) for source, targets in mapping.items()}


def oidc_settings() -> dict[str, Any]:
    client_id = env_str("OIDC_CLIENT_ID")
    if not client_id:
        return {"OIDC_ENABLED": False}
    issuer = env_str("OIDC_ISSUER").rstrip("/")
    endpoints = {name: env_str(f"OIDC_{name}_ENDPOINT") for name in OIDC_ENDPOINTS}
    if not issuer and not all(endpoints.values()):
        missing = ", ".join(f"OIDC_{name}_ENDPOINT" for name, url in endpoints.items() if not url)
        raise ImproperlyConfigured(f"OIDC_CLIENT_ID is set: set OIDC_ISSUER too (or {missing})")
    if issuer:
        env_url("OIDC_ISSUER", issuer)
    secret = env_secret("OIDC_CLIENT_SECRET") or ""
    if not secret:
        raise ImproperlyConfigured("OIDC_CLIENT_ID is set: set OIDC_CLIENT_SECRET (or OIDC_CLIENT_SECRET_FILE) too")
    ca_file = env_str("OIDC_CA_FILE")
    return {
        "OIDC_ENABLED": True,
        "OIDC_ISSUER": issuer,
        "OIDC_PROVIDER_NAME": env_str("OIDC_PROVIDER_NAME", "single sign-on"),
        "OIDC_RP_CLIENT_ID": client_id,
        "OIDC_RP_CLIENT_SECRET": secret,
        "OIDC_RP_SCOPES": env_str("OIDC_SCOPES", "openid email profile"),
        "OIDC_RP_SIGN_ALGO": env_str("OIDC_SIGN_ALGO", "RS256"),
        "OIDC_OP_AUTHORIZATION_ENDPOINT": endpoints["AUTHORIZATION"],
        "OIDC_OP_TOKEN_ENDPOINT": endpoints["TOKEN"],
        "OIDC_OP_USER_ENDPOINT": endpoints["USERINFO"],
        "OIDC_OP_JWKS_ENDPOINT": endpoints["JWKS"],
        "OIDC_USERNAME_CLAIM": env_str("OIDC_USERNAME_CLAIM", "preferred_username"),
        "OIDC_GROUPS_CLAIM": env_str("OIDC_GROUPS_CLAIM", "groups"),
        "OIDC_GROUP_MAP": parse_group_map("OIDC_GROUP_MAP", env_str("OIDC_GROUP_MAP")),
        "OIDC_USE_PKCE": True,
        "OIDC_VERIFY_SSL": ca_file or True,  # an in-house CA for the provider, else the system's
        "OIDC_TIMEOUT": 15,
        "OIDC_CREATE_USER": env_bool("OIDC_CREATE_USER", True),
        "OIDC_CALLBACK_CLASS": "webadmin.auth.oidc.CallbackView",
        "OIDC_AUTHENTICATE_CLASS": "webadmin.auth.oidc.AuthenticateView",
        "LOGIN_REDIRECT_URL_FAILURE": "/login/?directory=failed",
    }


def ldap_settings() -> dict[str, Any]:
    uri = env_str("LDAP_URI")
    if not uri:
        return {"LDAP_ENABLED": False}
    import ldap
    from django_auth_ldap.config import LDAPSearch

    if not uri.startswith(("ldap://", "ldaps://")):
        raise ImproperlyConfigured(f"LDAP_URI={uri!r} must start with ldap:// or ldaps://")
    base = env_str("LDAP_USER_SEARCH_BASE")
    if not base:
        raise ImproperlyConfigured("LDAP_URI is set: set LDAP_USER_SEARCH_BASE too")
    user_filter = env_str("LDAP_USER_FILTER", "(uid=%(user)s)")
    if "%(user)s" not in user_filter:
        raise ImproperlyConfigured(f"LDAP_USER_FILTER={user_filter!r} must contain %(user)s")
    options: dict[Any, Any] = {ldap.OPT_REFERRALS: 0, ldap.OPT_NETWORK_TIMEOUT: 10}
    ca_file = env_str("LDAP_CA_FILE")
    if ca_file:
        options[ldap.OPT_X_TLS_CACERTFILE] = ca_file
    options[ldap.OPT_X_TLS_REQUIRE_CERT] = ldap.OPT_X_TLS_DEMAND  # TLS is always verified
    options[ldap.OPT_X_TLS_NEWCTX] = 0  # last: applies the TLS options above
    result: dict[str, Any] = {
        "LDAP_ENABLED": True,
        "AUTH_LDAP_SERVER_URI": uri,
        "AUTH_LDAP_BIND_DN": env_str("LDAP_BIND_DN"),
        "AUTH_LDAP_BIND_PASSWORD": env_secret("LDAP_BIND_PASSWORD") or "",
        "AUTH_LDAP_START_TLS": env_bool("LDAP_START_TLS", False),
        "AUTH_LDAP_CONNECTION_OPTIONS": options,
        "AUTH_LDAP_USER_SEARCH": LDAPSearch(base, ldap.SCOPE_SUBTREE, user_filter),
        "AUTH_LDAP_USER_ATTR_MAP": {"first_name": "givenName", "last_name": "sn", "email": "mail"},
        "AUTH_LDAP_ALWAYS_UPDATE_USER": True,
        "AUTH_LDAP_CACHE_TIMEOUT": 0,
        "LDAP_GROUP_MAP": parse_group_map("LDAP_GROUP_MAP", env_str("LDAP_GROUP_MAP")),
    }
    result.update(_ldap_group_settings())
    return result


def _ldap_group_settings() -> dict[str, Any]:
    import ldap
    from django_auth_ldap.config import GroupOfNamesType, LDAPSearch, NestedActiveDirectoryGroupType

    group_base = env_str("LDAP_GROUP_SEARCH_BASE")
    if not group_base:
        return {}
    kinds = {"groupOfNames": GroupOfNamesType, "activeDirectory": NestedActiveDirectoryGroupType}
    kind = env_str("LDAP_GROUP_TYPE", "groupOfNames")
    if kind not in kinds:
        raise ImproperlyConfigured(f"LDAP_GROUP_TYPE={kind!r}: use groupOfNames or activeDirectory")
    object_class = "groupOfNames" if kind == "groupOfNames" else "group"
    return {
        "AUTH_LDAP_GROUP_SEARCH": LDAPSearch(group_base, ldap.SCOPE_SUBTREE, f"(objectClass={object_class})"),
        "AUTH_LDAP_GROUP_TYPE": kinds[kind](),
        "AUTH_LDAP_FIND_GROUP_PERMS": False,
    }


def directory_settings() -> dict[str, Any]:
    """Everything settings.py adds, including the backends after the local accounts'."""
    result = {**oidc_settings(), **ldap_settings()}
    result["DIRECTORY_BACKENDS"] = [LDAP_BACKEND] * result["LDAP_ENABLED"] + [OIDC_BACKEND] * result["OIDC_ENABLED"]
    return result
