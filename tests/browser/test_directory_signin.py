"""Signing in through the company's directory and with the second step, in
headless Chromium: an access link pasted by a logged-out user leads through the
OpenID Connect provider's (real, tests/fakes/oidc/) login — or through the
password and the authenticator code — to the linked document."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, OidcProvider
from tests.fakes.signin import configure
from tests.webadmin.test_totp import current_code
from webadmin.auth.config import OIDC_BACKEND, oidc_settings

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def provider(live_server):
    running = OidcProvider([f"{live_server.url}/oidc/callback/"])
    yield running
    running.stop()


@pytest.fixture
def oidc(provider, settings, monkeypatch):
    env = {
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_SCOPES": "openid email profile groups",
        "OIDC_GROUP_MAP": "finance=Finance",
        "OIDC_PROVIDER_NAME": "Example ID",
    }
    configure(settings, monkeypatch, env, oidc_settings, OIDC_BACKEND)


def access_link(document) -> str:
    return f"/perl/avclient/index.pl?target=new&go={document.pk}"


def test_an_access_link_leads_through_the_providers_login_to_the_document(
    page, oidc, provider, make_document, live_server
):
    doc = make_document(name="invoice-2026.txt", owner_group=Group.objects.create(name="Finance"))
    page.goto(access_link(doc))
    assert "/login/" in page.url
    page.click("#oidc-sign-in")
    page.wait_for_selector("input[name=login]")
    assert page.url.startswith(f"{provider.issuer}/interaction/")  # at the provider now
    page.fill("input[name=login]", "olga")
    page.fill("input[name=password]", "any")
    page.click("button[type=submit]")  # the provider's own page
    page.wait_for_selector("button:has-text('Continue')")  # the provider's consent page
    page.click("button:has-text('Continue')")
    page.wait_for_url(f"{live_server.url}/dms/doc/{doc.pk}/")
    assert "Log out olga" in page.text_content("header")


def test_an_access_link_leads_through_the_password_and_the_code_to_the_document(page, login, alice, make_document):
    doc = make_document(name="contract.txt")
    login("alice", "alice-pass-123")
    page.goto("/account/two-factor/")
    assert page.is_visible("#totp-qr svg")
    device = TOTPDevice.objects.get(user=alice, confirmed=False)
    assert page.text_content("#totp-secret").replace(" ", "") in device.config_url
    page.fill("#id_code", current_code(device))
    page.click("#enrol-form button[type=submit]")
    page.wait_for_selector("#recovery-codes")
    assert page.locator("#recovery-codes li").count() == 10
    page.click("header button:has-text('Log out')")
    page.wait_for_load_state()

    page.goto(access_link(doc))
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pass-123")
    page.click("main button[type=submit]")  # not the language menu's buttons
    page.wait_for_selector("#code-form")
    page.fill("#id_code", "000000" if current_code(device) != "000000" else "111111")
    page.click("#code-form button[type=submit]")
    page.wait_for_selector("#code-form .errorlist")  # a wrong code: asked again, still a visitor
    page.fill("#id_code", current_code(device))
    page.click("#code-form button[type=submit]")
    page.wait_for_url(f"**/dms/doc/{doc.pk}/")
    assert "Log out alice" in page.text_content("header")
