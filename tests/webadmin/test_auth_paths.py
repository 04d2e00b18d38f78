# ruff: noqa: F811  (the sign-in paths' fixtures, imported from their own test modules, are parameters here)
"""Issue 17, requirement 5: every sign-in path — a local password, a password and a TOTP
code, OpenID Connect (a real oidc-provider), LDAP (a real slapd) — starts where a signed-out
reader's access link sends it (the login page with ``next``), lands on that document, and is
in the audit log: the sign-in with the backend that let the user in, a failure as a failed
sign-in, and the login throttling's lockout as a locked-out sign-in."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from archive.integrity.audit import AuditAction, Outcome
from archive.integrity.models import AuditEntry
from tests.fakes.ldap.server import password_of
from tests.fakes.oidc import log_in_at_provider, path_of
from tests.webadmin.test_ldap import directory, slapd  # noqa: F401 - fixtures
from tests.webadmin.test_oidc import CALLBACK, oidc, provider  # noqa: F401 - fixtures
from tests.webadmin.test_totp import current_code, device, enrolled, wrong_code  # noqa: F401 - fixtures
from webadmin.auth.config import LDAP_BACKEND, OIDC_BACKEND
from webadmin.auth.totp import LOCAL_BACKEND

LOGIN = "/login/"
CODE = "/login/code/"


@pytest.fixture(autouse=True)
def throttling(settings):
    settings.AXES_FAILURE_LIMIT = 3


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("seq"))


def the_access_links_login(client: Client, document_url: str) -> str:
    """Open the document signed out: the ``next`` the login page was given."""
    response = client.get(document_url)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == LOGIN
    (next_url,) = parse_qs(location.query)["next"]
    assert next_url == document_url
    return next_url


def password(client: Client, username: str, secret: str, next_url: str):
    return client.post(LOGIN, {"username": username, "password": secret, "next": next_url})


def oidc_sign_in(client: Client, account: str, next_url: str):
    start = client.get("/oidc/authenticate/", {"next": next_url})
    assert start.status_code == 302, start
    return client.get(path_of(log_in_at_provider(start["Location"], account, CALLBACK)))


def signed_in_as(client: Client) -> str | None:
    from django.contrib.auth.models import User

    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).username if user_id else None


def test_a_local_password_lands_on_the_document_and_is_logged(alice, make_document):
    doc_url = f"/dms/doc/{make_document().pk}/"
    client = Client()
    response = password(client, "alice", "alice-pass-123", the_access_links_login(client, doc_url))
    assert response.status_code == 302 and response["Location"] == doc_url
    assert client.get(doc_url).status_code == 200
    (entry,) = entries(AuditAction.SIGN_IN)
    assert (entry.actor, entry.user_id, entry.outcome) == ("alice", alice.pk, Outcome.OK)
    assert entry.details == {"backend": LOCAL_BACKEND}


def test_a_password_and_a_code_land_on_the_document_and_only_the_code_signs_in(alice, device, make_document):
    doc_url = f"/dms/doc/{make_document().pk}/"
    client = Client()
    step = password(client, "alice", "alice-pass-123", the_access_links_login(client, doc_url))
    assert step.status_code == 302 and urlsplit(step["Location"]).path == CODE
    assert entries(AuditAction.SIGN_IN) == []  # the password alone is no sign-in
    done = client.post(CODE, {"code": current_code(device), "next": doc_url})
    assert done.status_code == 302 and done["Location"] == doc_url
    assert client.get(doc_url).status_code == 200
    (entry,) = entries(AuditAction.SIGN_IN)
    assert (entry.actor, entry.details) == ("alice", {"backend": LOCAL_BACKEND})


def test_oidc_lands_on_the_document_and_is_logged_with_its_backend(oidc, make_document):
    doc_url = f"/dms/doc/{make_document(owner_group=Group.objects.create(name='Finance')).pk}/"
    client = Client()
    response = oidc_sign_in(client, "olga", the_access_links_login(client, doc_url))
    assert response.status_code == 302 and response["Location"] == doc_url
    assert client.get(doc_url).status_code == 200
    (entry,) = entries(AuditAction.SIGN_IN)
    assert (entry.actor, entry.outcome, entry.details) == ("olga", Outcome.OK, {"backend": OIDC_BACKEND})


def test_ldap_lands_on_the_document_and_is_logged_with_its_backend(directory, make_document):
    doc_url = f"/dms/doc/{make_document(owner_group=Group.objects.create(name='Finance')).pk}/"
    client = Client()
    response = password(client, "dora", password_of("dora"), the_access_links_login(client, doc_url))
    assert response.status_code == 302 and response["Location"] == doc_url
    assert client.get(doc_url).status_code == 200
    (entry,) = entries(AuditAction.SIGN_IN)
    assert (entry.actor, entry.outcome, entry.details) == ("dora", Outcome.OK, {"backend": LDAP_BACKEND})


def test_wrong_codes_are_logged_as_failures_and_their_lockout_too(alice, device):
    client = Client(REMOTE_ADDR="10.17.0.1")
    password(client, "alice", "alice-pass-123", "")
    for _ in range(3):
        client.post(CODE, {"code": wrong_code(device)})
    assert client.post(CODE, {"code": current_code(device)}).status_code == 429
    assert [(e.details["username"], e.outcome) for e in entries(AuditAction.SIGN_IN_FAILED)] == [
        ("alice", Outcome.FAILED)
    ] * 3
    (locked,) = entries(AuditAction.SIGN_IN_LOCKED_OUT)
    assert (locked.details, locked.outcome, locked.ip) == ({"username": "alice"}, Outcome.DENIED, "10.17.0.1")
    assert entries(AuditAction.SIGN_IN) == []


def test_wrong_directory_passwords_are_logged_as_failures_and_their_lockout_too(directory):
    for i in range(3):
        response = password(Client(REMOTE_ADDR=f"10.17.1.{i}"), "dora", f"wrong-{i}", "")
    assert response.status_code == 429
    assert [e.details["username"] for e in entries(AuditAction.SIGN_IN_FAILED)] == ["dora"] * 3
    (locked,) = entries(AuditAction.SIGN_IN_LOCKED_OUT)
    assert (locked.details, locked.outcome) == ({"username": "dora"}, Outcome.DENIED)
    # The right directory password while locked: refused, and no sign-in logged.
    client = Client(REMOTE_ADDR="10.17.1.99")
    assert password(client, "dora", password_of("dora"), "").status_code == 429
    assert signed_in_as(client) is None and entries(AuditAction.SIGN_IN) == []


def test_a_refused_oidc_callback_is_logged_as_a_failed_sign_in(oidc):
    client = Client(REMOTE_ADDR="10.17.2.1")
    start = client.get("/oidc/authenticate/")
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    response = client.get("/oidc/callback/", {"code": "made-up-code", "state": state})
    assert response.status_code == 302 and signed_in_as(client) is None
    (failed,) = entries(AuditAction.SIGN_IN_FAILED)
    assert (failed.outcome, failed.ip, failed.user_id) == (Outcome.FAILED, "10.17.2.1", None)
    assert entries(AuditAction.SIGN_IN) == []


def test_an_address_locked_by_wrong_passwords_gets_no_oidc_sign_in_and_the_lockout_is_logged(oidc):
    client = Client(REMOTE_ADDR="10.17.3.1")
    for name in ("root", "admin", "guest"):
        password(client, name, "guess", "")
    (locked,) = entries(AuditAction.SIGN_IN_LOCKED_OUT)
    assert (locked.ip, locked.outcome) == ("10.17.3.1", Outcome.DENIED)
    assert oidc_sign_in(client, "olga", "/dms/").status_code == 429
    assert signed_in_as(client) is None and entries(AuditAction.SIGN_IN) == []
