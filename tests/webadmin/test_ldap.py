"""LDAP / Active Directory sign-in (django-auth-ldap) against a real OpenLDAP
slapd started for each test on loopback, spoken to over StartTLS with the CA
verified: users created on first sign-in, groups mapped on every sign-in, and
every failure — wrong password, disabled or unknown user — counted by the login
throttling like a local one."""

from __future__ import annotations

import ldap
import pytest
from axes.models import AccessAttempt
from django.contrib.auth import user_logged_in, user_login_failed
from django.contrib.auth.models import Group, User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from tests.fakes.ldap.server import READER_DN, READER_PASSWORD, SUFFIX, SlapdServer, password_of
from tests.fakes.signin import configure
from webadmin.auth.config import LDAP_BACKEND, ldap_settings

LOGIN = "/login/"
ADMINS = f"cn=archive-admins,ou=groups,{SUFFIX}"


@pytest.fixture
def slapd():
    server = SlapdServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def directory(db, slapd, settings, monkeypatch):
    settings.AXES_FAILURE_LIMIT = 3

    def with_env(**changes: str) -> None:
        env = {
            "LDAP_URI": slapd.uri,
            "LDAP_BIND_DN": READER_DN,
            "LDAP_BIND_PASSWORD": READER_PASSWORD,
            "LDAP_USER_SEARCH_BASE": f"ou=people,{SUFFIX}",
            "LDAP_USER_FILTER": "(&(uid=%(user)s)(!(employeeType=disabled)))",
            "LDAP_GROUP_SEARCH_BASE": f"ou=groups,{SUFFIX}",
            "LDAP_GROUP_MAP": "archive-admins=staff,finance=Finance",
            "LDAP_START_TLS": "true",
            "LDAP_CA_FILE": slapd.ca_file,
        }
        configure(settings, monkeypatch, env | changes, ldap_settings, LDAP_BACKEND)

    with_env()
    return with_env


def sign_in(client: Client, username: str, password: str, next_url: str = ""):
    return client.post(LOGIN, {"username": username, "password": password, "next": next_url})


def signed_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).username if user_id else None


def failures(username: str) -> int:
    return sum(a.failures_since_start for a in AccessAttempt.objects.filter(username=username))


def test_a_directory_user_is_created_at_first_sign_in_and_lands_on_the_linked_document(directory, make_document):
    doc = make_document(owner_group=Group.objects.create(name="Finance"))
    client = Client()
    response = sign_in(client, "dora", password_of("dora"), f"/dms/doc/{doc.pk}/")
    assert response.status_code == 302 and response["Location"] == f"/dms/doc/{doc.pk}/"
    dora = User.objects.get(username="dora")
    assert (dora.email, dora.first_name, dora.last_name) == ("dora@example.org", "Dora", "Directory")
    assert not dora.has_usable_password() and not dora.is_staff
    assert [g.name for g in dora.groups.all()] == ["Finance"]
    assert client.get(response["Location"]).status_code == 200


def test_groups_and_the_staff_flag_follow_the_directory_at_every_sign_in(directory, slapd):
    client = Client()
    sign_in(client, "Erik", password_of("erik"))  # the directory and the throttle ignore case
    erik = User.objects.get(username="erik")
    assert erik.is_staff and [g.name for g in erik.groups.all()] == ["Finance"]
    local = Group.objects.create(name="Given in WebAdmin")
    erik.groups.add(local)
    client.logout()

    slapd.modify(ADMINS, [(ldap.MOD_DELETE, "member", [f"uid=erik,ou=people,{SUFFIX}".encode()])])
    sign_in(client, "erik", password_of("erik"))
    assert signed_in_as(client) == "erik"
    erik.refresh_from_db()
    assert not erik.is_staff
    assert sorted(g.name for g in erik.groups.all()) == ["Finance", "Given in WebAdmin"]


@pytest.mark.parametrize(
    "username, password",
    [("dora", "wrong-password"), ("carol", password_of("carol")), ("nobody", "whatever")],
    ids=["wrong password", "disabled user", "unknown user"],
)
def test_a_refused_directory_sign_in_counts_as_a_failed_login(directory, username, password):
    client = Client(REMOTE_ADDR="10.9.0.1")
    response = sign_in(client, username, password)
    assert response.status_code == 200 and signed_in_as(client) is None
    assert "Please enter a correct username and password" in response.content.decode()
    assert failures(username) == 1


def test_wrong_directory_passwords_lock_the_account_like_local_ones(directory):
    for i in range(3):
        response = sign_in(Client(REMOTE_ADDR=f"10.9.1.{i}"), "dora", f"wrong-{i}")
    assert response.status_code == 429
    client = Client(REMOTE_ADDR="10.9.1.99")
    assert sign_in(client, "dora", password_of("dora")).status_code == 429
    assert signed_in_as(client) is None


def test_a_local_account_is_never_taken_over_by_a_directory_entry_of_its_name(directory, alice):
    client = Client()
    sign_in(client, "alice", password_of("alice"))  # the directory's alice, not ours
    assert signed_in_as(client) is None
    sign_in(client, "alice", "alice-pass-123")
    assert signed_in_as(client) == "alice"


def test_starttls_verifies_the_directorys_certificate(directory, tmp_path):
    import trustme

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    directory(LDAP_CA_FILE=str(other_ca))
    client = Client()
    sign_in(client, "dora", password_of("dora"))
    assert signed_in_as(client) is None
    assert not User.objects.filter(username="dora").exists()


def test_every_directory_sign_in_reaches_the_login_signals(directory):
    seen: list[str] = []

    def on_success(sender, user, **kwargs):
        seen.append(f"in:{user.username}")

    def on_failure(sender, credentials, **kwargs):
        seen.append(f"failed:{credentials.get('username')}")

    user_logged_in.connect(on_success)
    user_login_failed.connect(on_failure)
    try:
        sign_in(Client(), "dora", "wrong")
        sign_in(Client(), "dora", password_of("dora"))
    finally:
        user_logged_in.disconnect(on_success)
        user_login_failed.disconnect(on_failure)
    assert seen == ["failed:dora", "in:dora"]


def test_ldap_is_off_unless_configured_and_bad_settings_stop_start_up(monkeypatch):
    for name in ("LDAP_URI", "LDAP_USER_SEARCH_BASE", "LDAP_USER_FILTER"):
        monkeypatch.delenv(name, raising=False)
    assert ldap_settings() == {"LDAP_ENABLED": False}
    monkeypatch.setenv("LDAP_URI", "ldap://127.0.0.1:1")
    with pytest.raises(ImproperlyConfigured, match="LDAP_USER_SEARCH_BASE"):
        ldap_settings()
    monkeypatch.setenv("LDAP_USER_SEARCH_BASE", SUFFIX)
    monkeypatch.setenv("LDAP_USER_FILTER", "(uid=someone)")
    with pytest.raises(ImproperlyConfigured, match="LDAP_USER_FILTER"):
        ldap_settings()
    monkeypatch.setenv("LDAP_URI", "http://127.0.0.1")
    with pytest.raises(ImproperlyConfigured, match="LDAP_URI"):
        ldap_settings()
