"""OpenID Connect sign-in (mozilla-django-oidc) against a real provider process
(oidc-provider on node, tests/fakes/oidc/) on loopback: users created at first
sign-in, groups and the staff flag mapped from the groups claim at every
sign-in, ``next`` kept through the provider's redirect (never off-site), local
accounts untouched, and no error page for a provider that fails."""

from __future__ import annotations

import pytest
from django.contrib.auth import user_logged_in
from django.contrib.auth.models import Group, User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, OidcProvider, log_in_at_provider, path_of
from tests.fakes.signin import configure
from webadmin.auth.config import OIDC_BACKEND, oidc_settings

CALLBACK = "http://testserver/oidc/callback/"


@pytest.fixture(scope="module")
def provider():
    running = OidcProvider([CALLBACK])
    yield running
    running.stop()


@pytest.fixture
def oidc(db, provider, settings, monkeypatch):
    def with_env(**changes: str) -> None:
        env = {
            "OIDC_ISSUER": provider.issuer,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_SCOPES": "openid email profile groups",
            "OIDC_GROUP_MAP": "archive-admins=staff,finance=Finance",
            "OIDC_PROVIDER_NAME": "Example ID",
        }
        configure(settings, monkeypatch, env | changes, oidc_settings, OIDC_BACKEND)

    with_env()
    return with_env


def sign_in(client: Client, account: str, next_url: str | None = None):
    """The button, the provider's login and consent, the way back: WebAdmin's answer to the callback."""
    start = client.get("/oidc/authenticate/", {"next": next_url} if next_url is not None else {})
    assert start.status_code == 302, start
    back = log_in_at_provider(start["Location"], account, CALLBACK)
    return client.get(path_of(back))


def signed_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).username if user_id else None


def test_the_first_sign_in_creates_the_user_and_lands_on_the_linked_document(oidc, make_document):
    doc = make_document(owner_group=Group.objects.create(name="Finance"))
    client = Client()
    response = sign_in(client, "olga", f"/dms/doc/{doc.pk}/")
    assert response.status_code == 302 and response["Location"] == f"/dms/doc/{doc.pk}/"
    olga = User.objects.get(username="olga")
    assert signed_in_as(client) == "olga"
    assert olga.email == "olga@example.org" and not olga.has_usable_password() and not olga.is_staff
    assert [g.name for g in olga.groups.all()] == ["Finance"]
    assert client.get(response["Location"]).status_code == 200


def test_groups_and_the_staff_flag_are_mapped_at_every_sign_in(oidc):
    client = Client()
    sign_in(client, "oskar")
    oskar = User.objects.get(username="oskar")
    assert oskar.is_staff and not oskar.is_superuser and [g.name for g in oskar.groups.all()] == ["Finance"]
    client.logout()

    oidc(OIDC_GROUP_MAP="archive-admins=Archive admins,finance=Finance")  # the mapping changed: no staff any more
    sign_in(client, "oskar")
    oskar.refresh_from_db()
    assert signed_in_as(client) == "oskar"
    assert not oskar.is_staff and sorted(g.name for g in oskar.groups.all()) == ["Archive admins", "Finance"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "https:/\\evil.example"])
def test_next_never_leads_off_site(oidc, target):
    response = sign_in(Client(), "olga", target)
    assert response.status_code == 302 and response["Location"] == "/dms/"


def test_a_local_account_is_not_taken_over_by_the_providers_user_of_that_name(oidc, alice):
    client = Client()
    response = sign_in(client, "alice")
    assert response["Location"] == "/login/?directory=failed"
    assert signed_in_as(client) is None
    assert "did not work" in client.get(response["Location"]).content.decode()
    client.post("/login/", {"username": "alice", "password": "alice-pass-123"})
    assert signed_in_as(client) == "alice"


def test_the_login_page_offers_the_provider_keeping_next(oidc, client):
    page = client.get("/login/", {"next": "/dms/doc/7/"}).content.decode()
    assert 'href="/oidc/authenticate/?next=/dms/doc/7/"' in page and "Sign in with Example ID" in page
    assert 'name="password"' in page  # local accounts still sign in


def test_oidc_is_off_unless_configured(client, db, monkeypatch):
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/", {"code": "x", "state": "y"}).status_code == 404
    assert "Sign in with" not in client.get("/login/").content.decode()
    monkeypatch.delenv("OIDC_CLIENT_ID", raising=False)
    assert oidc_settings() == {"OIDC_ENABLED": False}


def test_bad_settings_stop_start_up(monkeypatch):
    monkeypatch.setenv("OIDC_CLIENT_ID", "webadmin")
    monkeypatch.delenv("OIDC_ISSUER", raising=False)
    with pytest.raises(ImproperlyConfigured, match="OIDC_ISSUER"):
        oidc_settings()
    monkeypatch.setenv("OIDC_ISSUER", "https://id.example.com")
    monkeypatch.delenv("OIDC_CLIENT_SECRET", raising=False)
    with pytest.raises(ImproperlyConfigured, match="OIDC_CLIENT_SECRET"):
        oidc_settings()
    monkeypatch.setenv("OIDC_CLIENT_SECRET", "s")
    monkeypatch.setenv("OIDC_GROUP_MAP", "no-target")
    with pytest.raises(ImproperlyConfigured, match="OIDC_GROUP_MAP"):
        oidc_settings()


def test_explicit_endpoints_work_without_discovery(oidc, provider):
    found = provider.discovery()
    oidc(
        OIDC_ISSUER="",
        OIDC_AUTHORIZATION_ENDPOINT=found["authorization_endpoint"],
        OIDC_TOKEN_ENDPOINT=found["token_endpoint"],
        OIDC_USERINFO_ENDPOINT=found["userinfo_endpoint"],
        OIDC_JWKS_ENDPOINT=found["jwks_uri"],
    )
    client = Client()
    sign_in(client, "olga")
    assert signed_in_as(client) == "olga"


def test_a_provider_that_cannot_be_reached_sends_back_to_the_login_with_a_message(oidc):
    from tests.imap_server import free_port

    oidc(OIDC_ISSUER=f"http://127.0.0.1:{free_port()}")
    client = Client()
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 302 and response["Location"] == "/login/?directory=unreachable"
    assert "cannot be reached" in client.get(response["Location"]).content.decode()


def test_a_forged_or_replayed_callback_signs_nobody_in(oidc):
    client = Client()
    assert client.get("/oidc/callback/", {"code": "forged", "state": "forged"})["Location"].startswith("/login/")
    client.get("/oidc/authenticate/")  # a state now in the session, but not this one
    assert client.get("/oidc/callback/", {"code": "forged", "state": "other"}).status_code == 400
    assert signed_in_as(client) is None


def test_a_refused_code_at_the_token_endpoint_is_a_failed_sign_in_not_an_error(oidc):
    client = Client()
    start = client.get("/oidc/authenticate/")
    state = dict(p.split("=", 1) for p in start["Location"].split("?", 1)[1].split("&"))["state"]
    response = client.get("/oidc/callback/", {"code": "made-up-code", "state": state})
    assert response.status_code == 302 and response["Location"] == "/login/?directory=failed"
    assert signed_in_as(client) is None


def test_a_locked_out_address_does_not_get_in_through_the_provider_either(oidc, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client(REMOTE_ADDR="10.7.0.1")
    for name in ("root", "admin", "guest"):
        client.post("/login/", {"username": name, "password": "guess"})
    response = sign_in(client, "olga")
    assert response.status_code == 429 and "Too many failed logins" in response.content.decode()
    assert signed_in_as(client) is None


def test_an_oidc_sign_in_reaches_the_login_signal(oidc):
    seen = []

    def on_login(sender, user, **kwargs):
        seen.append(user.username)

    user_logged_in.connect(on_login)
    try:
        sign_in(Client(), "olga")
    finally:
        user_logged_in.disconnect(on_login)
    assert seen == ["olga"]
