"""Failed logins are throttled per account and per client address (django-axes):
a lockout at AXES_FAILURE_LIMIT that grows with each repeat, that an
administrator lifts in WebAdmin, that is logged — and that tells nobody whether
an account exists or a password was right."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.contrib.auth.hashers import MD5PasswordHasher
from django.db.models import F
from django.test import Client

LOGIN = "/login/"
LOCKOUT_TEXT = "Too many failed logins."


class CountingHasher(MD5PasswordHasher):
    """The test's hasher: counts how often any password is checked."""

    algorithm = "md5"
    checks = 0

    def encode(self, password, salt):
        # Checking a password hashes it; so does Django's dummy check for unknown users.
        CountingHasher.checks += 1
        return super().encode(password, salt)


@pytest.fixture(autouse=True)
def throttling(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_MINUTES = 10
    settings.AXES_COOLOFF_MAX_MINUTES = 60
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]


def from_address(ip: str) -> Client:
    return Client(REMOTE_ADDR=ip)


def log_in(client: Client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password})


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def locked(response) -> bool:
    return response.status_code == 429 and LOCKOUT_TEXT in response.content.decode()


def time_passes(minutes: int) -> None:
    """The clock axes reads is the attempt times it stored: moving them back is time passing."""
    delta = timedelta(minutes=minutes)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - delta)
    AccessFailureLog.objects.update(attempt_time=F("attempt_time") - delta)


def test_the_account_is_locked_after_the_failure_limit_even_for_the_right_password(alice):
    client = from_address("10.0.0.1")
    assert log_in(client, "alice", "wrong-1").status_code == 200
    assert log_in(client, "alice", "wrong-2").status_code == 200
    assert locked(log_in(client, "alice", "wrong-3"))
    assert locked(log_in(client, "alice", "alice-pass-123"))
    assert not logged_in(client)


def test_the_account_is_locked_whatever_address_the_attempts_come_from(alice, bob):
    for i, name in enumerate(["alice", "Alice", " ALICE"]):  # case and spaces do not make new accounts
        log_in(from_address(f"10.0.1.{i}"), name, "wrong")
    elsewhere = from_address("10.0.1.99")
    assert locked(log_in(elsewhere, "alice", "alice-pass-123"))
    assert not logged_in(elsewhere)
    log_in(elsewhere, "bob", "bob-pass-123")  # another account from that address is not affected
    assert logged_in(elsewhere)


def test_an_address_is_locked_whatever_accounts_it_tries(alice):
    attacker = from_address("10.0.2.1")
    for name in ["root", "admin", "carol"]:
        log_in(attacker, name, "guess")
    assert locked(log_in(attacker, "alice", "alice-pass-123"))
    assert not logged_in(attacker)
    colleague = from_address("10.0.2.2")  # the account itself had no failure
    log_in(colleague, "alice", "alice-pass-123")
    assert logged_in(colleague)


def test_logging_in_to_an_own_account_does_not_reset_the_address_count(alice, bob):
    attacker = from_address("10.0.2.5")
    log_in(attacker, "root", "guess")
    log_in(attacker, "carol", "guess")
    log_in(attacker, "bob", "bob-pass-123")  # the attacker's own account
    assert logged_in(attacker)
    attacker.logout()
    assert locked(log_in(attacker, "admin", "guess"))


def page_without_token(response) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def test_the_lockout_tells_nothing_about_the_account_or_the_password(alice):
    """Known and unknown accounts, wrong and right passwords: while locked, the
    same status and page, and no password is even checked (so no timing either)."""
    for i, name in enumerate(("alice", "nobody-by-this-name")):
        for _ in range(3):
            log_in(from_address(f"10.0.3.{i}"), name, "wrong")
    answers = {}
    for name, password in [
        ("alice", "wrong"),
        ("alice", "alice-pass-123"),
        ("nobody-by-this-name", "wrong"),
        ("nobody-by-this-name", "alice-pass-123"),
    ]:
        CountingHasher.checks = 0
        response = log_in(from_address("10.0.3.9"), name, password)
        assert CountingHasher.checks == 0, (name, password)
        answers[(name, password)] = (response.status_code, page_without_token(response))
    assert len(set(answers.values())) == 1
    status, text = next(iter(answers.values()))
    assert status == 429 and LOCKOUT_TEXT in text
    assert "alice" not in text and "nobody-by-this-name" not in text


def test_before_the_lockout_known_and_unknown_accounts_cost_one_password_check(alice):
    for name in ("alice", "nobody-by-this-name"):
        CountingHasher.checks = 0
        response = log_in(from_address("10.0.4.1"), name, "wrong")
        assert response.status_code == 200
        assert CountingHasher.checks == 1


def test_each_lockout_lasts_twice_as_long_as_the_one_before(alice):
    client = from_address("10.0.5.1")

    def fail_until_locked() -> None:
        for i in range(3):
            response = log_in(client, "alice", f"wrong-{i}")
        assert locked(response)

    fail_until_locked()  # first lockout: 10 minutes
    time_passes(9)
    assert locked(log_in(client, "alice", "alice-pass-123"))
    time_passes(2)
    log_in(client, "alice", "alice-pass-123")
    assert logged_in(client)
    client.logout()

    fail_until_locked()  # second lockout: 20 minutes
    time_passes(11)
    assert locked(log_in(client, "alice", "alice-pass-123"))
    time_passes(10)
    log_in(client, "alice", "alice-pass-123")
    assert logged_in(client)
    client.logout()

    fail_until_locked()  # third: 40 minutes
    time_passes(39)
    assert locked(log_in(client, "alice", "alice-pass-123"))
    time_passes(2)
    log_in(client, "alice", "alice-pass-123")
    assert logged_in(client)


def test_every_lockout_is_logged(alice, caplog):
    caplog.set_level(logging.WARNING, logger="webadmin.security")
    for _ in range(3):
        log_in(from_address("10.0.6.1"), "Alice", "wrong")
    lockouts = [r.getMessage() for r in caplog.records if r.name == "webadmin.security"]
    assert len(lockouts) == 1
    assert "login lockout" in lockouts[0] and "'alice'" in lockouts[0] and "10.0.6.1" in lockouts[0]


def test_an_administrator_sees_and_lifts_the_lockout_in_webadmin(alice, admin_user):
    victim = from_address("10.0.7.1")
    for _ in range(3):
        log_in(victim, "alice", "wrong")
    assert locked(log_in(victim, "alice", "alice-pass-123"))

    admin = from_address("10.0.7.2")
    admin.force_login(admin_user)
    listing = admin.get("/webadmin/manage/axes/accessattempt/")
    assert listing.status_code == 200
    assert "alice" in listing.content.decode() and "10.0.7.1" in listing.content.decode()
    attempt = AccessAttempt.objects.get(username="alice")
    confirm = admin.get(f"/webadmin/manage/axes/accessattempt/{attempt.pk}/delete/")
    assert confirm.status_code == 200
    assert admin.post(f"/webadmin/manage/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not AccessAttempt.objects.exists()

    log_in(victim, "alice", "alice-pass-123")
    assert logged_in(victim)
