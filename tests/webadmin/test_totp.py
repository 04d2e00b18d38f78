"""The TOTP second step of password sign-ins (django-otp): the password alone
signs nobody in who has an authenticator, a code or a recovery code does, wrong
codes lock the account like wrong passwords, administrators must enrol, and
``next`` survives every step — but never leads off the site."""

from __future__ import annotations

import re

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import user_login_failed
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from webadmin.auth import totp

LOGIN = "/login/"
CODE = "/login/code/"
TWO_FACTOR = "/account/two-factor/"


@pytest.fixture(autouse=True)
def throttling(settings):
    settings.AXES_FAILURE_LIMIT = 3


def current_code(device: TOTPDevice) -> str:
    """What the authenticator app shows now (each code is accepted once: the
    device remembers the last time step used, so it is forgotten here)."""
    TOTPDevice.objects.filter(pk=device.pk).update(last_t=-1)
    device.refresh_from_db()
    return f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():06d}"


def wrong_code(device: TOTPDevice) -> str:
    return f"{(int(current_code(device)) + 1) % 1_000_000:06d}"


@pytest.fixture
def enrolled(alice) -> tuple[TOTPDevice, list[str]]:
    device = totp.enrolment_device(alice)
    codes = totp.confirm(device, current_code(device))
    assert codes is not None
    return device, codes


@pytest.fixture
def device(enrolled) -> TOTPDevice:
    return enrolled[0]


def password_step(client: Client, username: str, password: str, next_url: str = ""):
    return client.post(LOGIN, {"username": username, "password": password, "next": next_url})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_the_password_leads_to_the_code_step_and_the_code_to_the_linked_document(alice, device, make_document):
    doc = make_document()
    client = Client()
    response = password_step(client, "alice", "alice-pass-123", f"/dms/doc/{doc.pk}/")
    assert response.status_code == 302 and response["Location"] == f"{CODE}?next=%2Fdms%2Fdoc%2F{doc.pk}%2F"
    assert not signed_in(client)
    assert client.get(f"/dms/doc/{doc.pk}/").status_code == 302  # still a visitor
    page = client.get(response["Location"])
    assert page.status_code == 200 and f'value="/dms/doc/{doc.pk}/"' in page.content.decode()
    done = client.post(CODE, {"code": current_code(device), "next": f"/dms/doc/{doc.pk}/"})
    assert done.status_code == 302 and done["Location"] == f"/dms/doc/{doc.pk}/"
    assert signed_in(client)
    assert client.get(done["Location"]).status_code == 200


def test_without_the_password_first_the_code_step_leads_back_to_the_login(alice, device):
    client = Client()
    response = client.post(CODE, {"code": current_code(device)})
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)
    assert not signed_in(client)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "https:/\\evil.example"])
def test_the_code_step_never_leads_off_site(alice, device, target):
    client = Client()
    password_step(client, "alice", "alice-pass-123", target)
    response = client.post(CODE, {"code": current_code(device), "next": target})
    assert response.status_code == 302 and response["Location"] == "/dms/"


def test_wrong_codes_lock_the_account_like_wrong_passwords(alice, device):
    client = Client(REMOTE_ADDR="10.8.0.1")
    password_step(client, "alice", "alice-pass-123")
    assert client.post(CODE, {"code": wrong_code(device)}).status_code == 400
    assert client.post(CODE, {"code": "not a code"}).status_code == 400
    assert client.post(CODE, {"code": wrong_code(device)}).status_code == 429  # the third failure
    assert client.post(CODE, {"code": current_code(device)}).status_code == 429
    assert not signed_in(client)
    elsewhere = Client(REMOTE_ADDR="10.8.0.2")
    assert password_step(elsewhere, "alice", "alice-pass-123").status_code == 429  # the account is locked
    assert AccessAttempt.objects.get(username="alice", ip_address="10.8.0.1").failures_since_start == 3


def test_a_wrong_code_reaches_the_failed_login_signal(alice, device):
    seen = []

    def on_failure(sender, credentials, **kwargs):
        seen.append(credentials)

    user_login_failed.connect(on_failure)
    try:
        client = Client()
        password_step(client, "alice", "alice-pass-123")
        client.post(CODE, {"code": wrong_code(device)})
    finally:
        user_login_failed.disconnect(on_failure)
    assert seen == [{"username": "alice"}]


def test_a_recovery_code_signs_in_once(alice, enrolled):
    code = enrolled[1][3]
    stored = set(StaticToken.objects.filter(device__user=alice).values_list("token", flat=True))
    assert len(stored) == 10 and code not in stored  # only a digest is kept
    client = Client()
    password_step(client, "alice", "alice-pass-123")
    assert client.post(CODE, {"code": code.upper()}).status_code == 302
    assert signed_in(client)
    again = Client()
    password_step(again, "alice", "alice-pass-123")
    assert again.post(CODE, {"code": code}).status_code == 400
    assert not signed_in(again)


def test_an_administrator_must_enrol_before_getting_in(admin_user, make_document):
    doc = make_document()
    client = Client()
    response = password_step(client, "admin", "admin-pass-123", f"/dms/doc/{doc.pk}/")
    assert response["Location"] == f"{TWO_FACTOR}?next=%2Fdms%2Fdoc%2F{doc.pk}%2F"
    assert not signed_in(client)
    assert client.get("/webadmin/").status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "Administrators sign in with a second step" in page and "<svg" in page
    assert client.post(CODE, {"code": "123456"})["Location"].startswith(LOGIN)  # no way around enrolling
    device = TOTPDevice.objects.get(user=admin_user, confirmed=False)
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1)
    assert secret.replace(" ", "") in device.config_url
    shown = client.post(TWO_FACTOR, {"code": current_code(device), "next": f"/dms/doc/{doc.pk}/"})
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", shown.content.decode())
    assert len(codes) == 10 and f'href="/dms/doc/{doc.pk}/"' in shown.content.decode()
    assert signed_in(client)
    assert not any(code in client.get(TWO_FACTOR).content.decode() for code in codes)  # shown once


def test_administrators_sign_in_with_the_password_alone_when_not_required(settings, admin_user):
    settings.TOTP_REQUIRED_FOR_STAFF = False
    client = Client()
    assert password_step(client, "admin", "admin-pass-123")["Location"] == "/dms/"
    assert signed_in(client)


def test_a_user_turns_the_second_step_on_and_off_on_the_account_page(client, alice):
    client.force_login(alice)
    page = client.get(TWO_FACTOR)
    assert page.status_code == 200 and "<svg" in page.content.decode()
    device = TOTPDevice.objects.get(user=alice, confirmed=False)
    assert client.post(TWO_FACTOR, {"code": wrong_code(device)}).status_code == 400
    assert totp.confirmed_device(alice) is None
    assert client.post(TWO_FACTOR, {"code": current_code(device)}).status_code == 200
    assert totp.confirmed_device(alice) is not None
    client.logout()
    assert password_step(client, "alice", "alice-pass-123")["Location"].startswith(CODE)

    client.force_login(alice)
    assert client.post(TWO_FACTOR, {"code": wrong_code(device), "action": "remove"}).status_code == 400
    assert client.post(TWO_FACTOR, {"code": current_code(device), "action": "remove"}).status_code == 302
    assert totp.confirmed_device(alice) is None
    client.logout()
    assert password_step(client, "alice", "alice-pass-123")["Location"] == "/dms/"


def test_an_administrator_cannot_turn_the_second_step_off(client, admin_user):
    device = totp.enrolment_device(admin_user)
    totp.confirm(device, current_code(device))
    client.force_login(admin_user)
    response = client.post(TWO_FACTOR, {"code": current_code(device), "action": "remove"})
    assert response.status_code == 400 and "must keep" in response.content.decode()
    assert totp.confirmed_device(admin_user) is not None


def test_new_recovery_codes_replace_the_old_ones(client, alice, enrolled):
    device, old = enrolled
    client.force_login(alice)
    page = client.post(TWO_FACTOR, {"code": current_code(device), "action": "recovery"}).content.decode()
    new = re.findall(r"<li><code>([a-z0-9]+)</code></li>", page)
    assert len(set(new)) == 10 and not set(new) & set(old)
    stored = set(StaticToken.objects.filter(device__user=alice).values_list("token", flat=True))
    assert stored == {totp.recovery_digest(code) for code in new}
    client.logout()
    password_step(client, "alice", "alice-pass-123")
    assert client.post(CODE, {"code": old[0]}).status_code == 400  # the old ones are gone
    assert client.post(CODE, {"code": new[0]}).status_code == 302


def test_guessing_codes_on_the_account_page_locks_like_wrong_passwords(client, alice, device):
    client.force_login(alice)
    for _ in range(2):
        assert client.post(TWO_FACTOR, {"code": wrong_code(device), "action": "recovery"}).status_code == 400
    assert client.post(TWO_FACTOR, {"code": wrong_code(device), "action": "recovery"}).status_code == 429
    response = client.post(TWO_FACTOR, {"code": current_code(device), "action": "recovery"})
    assert response.status_code == 429 and "<code>" not in response.content.decode()
