"""In headless Chromium: a token made on the tokens page, and Swagger UI
running under its CSP from static files (no console errors, no CSP violation)."""

from __future__ import annotations

import requests

from tests.browser.conftest import ARTIFACTS


def test_a_token_made_in_the_ui_works_once_shown_and_revoked(page, login, live_server, alice, make_document):
    make_document(name="contract.txt")
    login("alice", "alice-pass-123")
    page.goto("/account/tokens/")
    page.fill("#id_name", "backup script")
    page.check("input[name=scopes][value=upload]")
    page.click("form >> text=Create token")
    secret = page.inner_text("#token-secret").strip()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-token-created.png"), full_page=True)
    url = f"{live_server.url}/api/v1/documents/"
    answer = requests.get(url, headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["results"][0]["title"] == "contract.txt"
    page.goto("/account/tokens/")
    assert secret not in page.content()
    page.click("text=Revoke")
    assert "revoked" in page.inner_text("table.tokens")
    assert requests.get(url, headers={"Authorization": f"Bearer {secret}"}, timeout=10).status_code == 401


def test_swagger_ui_shows_every_operation_without_csp_violations(page, login, alice):
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    login("alice", "alice-pass-123")
    page.goto("/api/docs/")
    page.wait_for_selector(".opblock")
    page.wait_for_load_state("networkidle")
    assert page.locator(".opblock").count() == 9
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=True)
    assert problems == []
