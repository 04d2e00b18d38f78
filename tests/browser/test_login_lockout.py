"""The login lockout as a browser shows it (headless Chromium); the rules
themselves are tested in tests/webadmin/test_login_throttle.py."""

from __future__ import annotations

import pytest

LOCKOUT_TEXT = "Too many failed logins."

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_login_page_shows_the_lockout_even_for_the_right_password(page, live_server, alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for i in range(3):
        page.goto("/login/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", f"wrong-{i}")
        page.click("main button[type=submit]")  # not the language menu's buttons
        page.wait_for_load_state()
    assert LOCKOUT_TEXT in page.text_content("#lockout")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pass-123")
    page.click("main button[type=submit]")  # not the language menu's buttons
    page.wait_for_load_state()
    assert "/login/" in page.url
    assert LOCKOUT_TEXT in page.text_content("#lockout")
