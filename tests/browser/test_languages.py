"""The languages in headless Chromium (issue 17): a browser set to Swiss German gets German
pages from the first visit, the top bar's language menu switches to French and Italian and
the choice stays on every page; screenshots of the main pages in each language are kept in
test-artifacts/languages-<language>-<page>.png."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.browser.settings_form import log_in_as
from tests.webadmin.test_i18n import compile_catalogues

pytestmark = pytest.mark.django_db(transaction=True)

# Each language's word on each main page (the top bar's "Archive" link, the page's heading).
WORDS = {
    "en": {"nav": "Archive", "login": "Log in", "home": "Archive health", "settings": "Primary archive usage"},
    "de": {
        "nav": "Archiv",
        "login": "Anmelden",
        "home": "Zustand des Archivs",
        "settings": "Primäre Archivnutzung",
        "audit": "Audit-Protokoll",
    },
    "fr": {
        "nav": "Archive",
        "login": "Se connecter",
        "home": "État de l'archive",
        "settings": "Utilisation principale",
    },
    "it": {"nav": "Archivio", "login": "Accedi", "home": "Stato dell'archivio", "settings": "Uso principale"},
}


@pytest.fixture(scope="module", autouse=True)
def compiled() -> None:
    compile_catalogues()


@pytest.fixture
def swiss_page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, locale="de-CH", viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def choose(page, language: str) -> None:
    page.click(f"#language-menu button[value={language}]")
    page.wait_for_selector(f"#language-menu[data-language={language}]")


def test_a_swiss_browser_gets_german_and_switches_language(
    swiss_page, live_server, admin_user, make_document, artifacts_dir
):
    page = swiss_page
    document = make_document(b"Offerte 2026", name="offerte.txt")
    page.goto(reverse("login"))
    assert page.get_attribute("html", "lang") == "de"
    assert "Anmelden" in page.text_content("h1")
    page.screenshot(path=str(artifacts_dir / "languages-de-login.png"), full_page=True)
    log_in_as(page, live_server, admin_user)  # (administrators' second step: tests/browser/test_directory_signin.py)
    pages = {
        "table": reverse("archive:table"),
        "document": reverse("archive:document", args=[document.pk]),
        "home": reverse("webadmin:home"),
        "settings": reverse("webadmin:archive_settings"),
        "audit": reverse("audit:log"),
        "sources": reverse("mailsources:list"),
    }
    for language in ("de", "fr", "it", "en"):
        if language != "de":
            choose(page, language)
        for name, url in pages.items():
            page.goto(url)
            page.wait_for_selector(f"#language-menu[data-language={language}]")
            assert page.get_attribute("html", "lang") == language, (language, name)
            assert WORDS[language]["nav"] in page.text_content("header nav"), (language, name)
            if name in WORDS[language]:
                assert WORDS[language][name] in page.text_content("main"), (language, name)
            page.screenshot(path=str(artifacts_dir / f"languages-{language}-{name}.png"), full_page=True)
    # The choice outlives the session: after logging out, the login page is in English (the last choice).
    page.click("header nav form button[type=submit]")
    page.wait_for_selector("#id_username")
    assert WORDS["en"]["login"] in page.text_content("h1")
    choose(page, "it")
    assert WORDS["it"]["login"] in page.text_content("h1")
    page.screenshot(path=str(artifacts_dir / "languages-it-login.png"), full_page=True)


def test_the_scripts_messages_are_in_the_pages_language(swiss_page, live_server, admin_user, make_document):
    """The WebDMS script's texts come translated from the page (data-text-* on <body>)."""
    page = swiss_page
    document = make_document(b"Offerte 2026", name="offerte.txt")
    page.goto(reverse("login"))
    log_in_as(page, live_server, admin_user)
    page.goto(reverse("archive:document", args=[document.pk]))
    page.wait_for_selector("#document[data-link-ready='true']", state="attached")
    page.click("#copy-link")
    page.wait_for_selector("#copy-status:has-text('Zugriffslink kopiert.')")
