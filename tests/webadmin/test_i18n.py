"""German, French and Italian (issue 17): the catalogues are complete, a browser that asks
for German gets German pages, the language menu's choice persists, dates and numbers follow
the language.

The completeness test runs ``makemessages`` over a copy of the sources in a temporary
directory and compares its message ids with each catalogue in ``locale/``: a string marked
in a template or module but missing from a catalogue (or left empty or fuzzy) fails here."""

from __future__ import annotations

import ast
import datetime as dt
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import formats, translation

from archive import charts
from archive.models import ArchiveSettings

BASE_DIR = Path(settings.BASE_DIR)
LANGUAGES = ("de", "fr", "it")
SOURCES = ("api", "archive", "mailsources", "webadmin", "templates")
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")
GERMAN = "de-CH,de;q=0.9,en;q=0.5"
# English words German, French and Italian text never has: a page in those languages that
# shows one shows an unmarked (or untranslated) English string. ("from:" is search syntax.)
ENGLISH = re.compile(r"\b(the|and|of|is|are|with|not|your|this|these|to|for|from|has|have|was|be)\b(?!:)")


def read_po(path: Path) -> dict[str, dict[str, object]]:
    """msgid -> {"plural": msgid_plural or None, "strings": [msgstr…], "fuzzy": bool}."""
    entries: dict[str, dict[str, object]] = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, list[str]] = {}
        key = ""
        fuzzy = False
        for line in block.strip().splitlines():
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                fields[key].append(line)
            else:
                key, _, value = line.partition(" ")
                fields[key] = [value]
        text = {k: "".join(ast.literal_eval(v) for v in values) for k, values in fields.items()}
        if not text.get("msgid"):
            continue  # the header
        strings = [v for k, v in sorted(text.items()) if k.startswith("msgstr")]
        entries[text["msgid"]] = {"plural": text.get("msgid_plural"), "strings": strings, "fuzzy": fuzzy}
    return entries


@pytest.fixture(scope="module")
def marked(tmp_path_factory) -> dict[str, dict[str, object]]:
    """Every string marked in the sources now, as ``makemessages`` finds it (in a copy)."""
    root = tmp_path_factory.mktemp("makemessages")
    for name in SOURCES:
        shutil.copytree(BASE_DIR / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (root / "locale").mkdir()
    cwd = Path.cwd()
    try:
        os.chdir(root)
        with override_settings(LOCALE_PATHS=[root / "locale"]):
            call_command("makemessages", locale=["de"], no_location=True, verbosity=0)
    finally:
        os.chdir(cwd)
    return read_po(root / "locale" / "de" / "LC_MESSAGES" / "django.po")


def compile_catalogues() -> None:
    """The .mo files as the install step makes them (scripts/common.sh: compilemessages)."""
    cwd = Path.cwd()
    try:
        os.chdir(BASE_DIR)
        call_command("compilemessages", ignore_patterns=[".venv", "var", "test-artifacts"], verbosity=0)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module", autouse=True)
def compiled() -> None:
    compile_catalogues()


@pytest.fixture(autouse=True)
def back_to_the_default_language():
    """A request's language stays active in the thread after it (LocaleMiddleware does not
    reset it): the tests after these ones must not run in German."""
    yield
    translation.deactivate()


def test_the_sources_mark_the_pages_strings(marked):
    assert len(marked) > 400
    for expected in ("Archive administration", "Log in", "Primary archive usage", "Not found", "Second step"):
        assert expected in marked


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_marked_string_is_translated(marked, language):
    catalogue = read_po(BASE_DIR / "locale" / language / "LC_MESSAGES" / "django.po")
    missing = sorted(set(marked) - set(catalogue))
    assert not missing, f"locale/{language}: {len(missing)} strings missing, e.g. {missing[:5]}"
    stale = sorted(set(catalogue) - set(marked))
    assert not stale, f"locale/{language}: strings no longer in the sources: {stale[:5]}"
    for msgid, entry in catalogue.items():
        strings = entry["strings"]
        assert isinstance(strings, list)
        assert not entry["fuzzy"], f"{language}: fuzzy: {msgid!r}"
        assert strings and all(s.strip() for s in strings), f"{language}: empty: {msgid!r}"
        assert entry["plural"] == marked[msgid]["plural"], msgid
        wanted = set(PLACEHOLDER.findall(msgid)) | set(PLACEHOLDER.findall(str(entry["plural"] or "")))
        for s in strings:
            found = set(PLACEHOLDER.findall(s))
            assert found <= wanted and (entry["plural"] or found == wanted), f"{language}: {msgid!r} -> {s!r}"


def test_the_german_is_swiss():
    text = (BASE_DIR / "locale" / "de" / "LC_MESSAGES" / "django.po").read_text(encoding="utf-8")
    assert "ß" not in text
    catalogue = read_po(BASE_DIR / "locale" / "de" / "LC_MESSAGES" / "django.po")
    assert catalogue["Archive administration"]["strings"] == ["Archivverwaltung"]
    assert catalogue["Size"]["strings"] == ["Grösse"]


def test_every_language_is_offered():
    assert [code for code, _ in settings.LANGUAGES] == ["en", "de", "fr", "it"]
    assert "django.middleware.locale.LocaleMiddleware" in settings.MIDDLEWARE


@pytest.mark.django_db
def test_a_german_browser_gets_the_login_page_in_german(client):
    html = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE=GERMAN).content.decode()
    assert '<html lang="de">' in html
    assert "Anmelden" in html and "Benutzername" in html and "Passwort" in html
    assert 'id="language-menu"' in html and 'value="fr"' in html


@pytest.mark.django_db
def test_a_german_browser_gets_german_pages(client, admin_user, make_document):
    document = make_document(b"hello", name="hello.txt")
    client.force_login(admin_user)
    pages = {
        reverse("archive:table"): ["Archiv", "Hochladen", "Audit-Protokoll"],
        reverse("archive:document", args=[document.pk]): ["Archiv", "Zweiter Schritt"],
        reverse("webadmin:home"): ["Archivverwaltung", "Zustand des Archivs", "Mailquellen", "Suchabdeckung"],
        reverse("webadmin:archive_settings"): ["Archivverwaltung", "Primäre Archivnutzung", "Speichern"],
        reverse("archive:upload"): ["Dateien hochladen", "Eigentümergruppe"],
        reverse("tokens"): ["API-Tokens", "Token erstellen"],
    }
    for url, words in pages.items():
        response = client.get(url, HTTP_ACCEPT_LANGUAGE=GERMAN)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert '<html lang="de">' in html, url
        for word in words:
            assert word in html, (url, word)
    missing = client.get(reverse("archive:document", args=[document.pk + 1000]), HTTP_ACCEPT_LANGUAGE=GERMAN)
    assert missing.status_code == 404 and "Nicht gefunden" in missing.content.decode()


@pytest.mark.django_db
def test_the_messages_and_errors_of_a_form_are_german(client, admin_user):
    client.force_login(admin_user)
    url = reverse("webadmin:archive_settings")
    data = {
        "primary_usage": "documents",
        "theme": "bright",
        "field_columns": 9,
        "title_width": 3000,
        "combobox_elements": 0,
    }
    response = client.post(url, data, HTTP_ACCEPT_LANGUAGE=GERMAN)
    html = response.content.decode()
    assert "Nicht gespeichert: Bitte korrigieren Sie die markierten Einstellungen." in html
    assert "Dieser Wert muss kleiner oder gleich 3 sein." in html  # Django's own validator, in German too
    data["field_columns"] = 2
    saved = client.post(url, data, HTTP_ACCEPT_LANGUAGE=GERMAN, follow=True)
    assert "Archiveinstellungen gespeichert." in saved.content.decode()
    assert ArchiveSettings.objects.get().field_columns == 2


@pytest.mark.django_db
def test_the_language_menu_switches_and_the_choice_persists(client, admin_user):
    client.force_login(admin_user)
    home = reverse("webadmin:home")
    response = client.post(reverse("set_language"), {"language": "fr", "next": home}, HTTP_ACCEPT_LANGUAGE=GERMAN)
    assert response.status_code == 302 and response["Location"] == home
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "fr" and int(cookie["max-age"]) == settings.LANGUAGE_COOKIE_AGE
    # The browser still asks for German; the choice wins, on every page.
    html = client.get(home, HTTP_ACCEPT_LANGUAGE=GERMAN).content.decode()
    assert '<html lang="fr">' in html and "Administration de l'archive" in html
    assert 'aria-current="true"' in html.split('value="fr"')[1].split(">")[0]
    # Logging out and in again keeps it (the cookie outlives the session).
    client.post(reverse("logout"))
    login = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE=GERMAN).content.decode()
    assert "Se connecter" in login and "Nom d'utilisateur" in login
    client.force_login(admin_user)
    client.post(reverse("set_language"), {"language": "it", "next": home})
    assert "Amministrazione dell'archivio" in client.get(home, HTTP_ACCEPT_LANGUAGE=GERMAN).content.decode()
    client.post(reverse("set_language"), {"language": "en", "next": home})
    assert "Archive administration" in client.get(home, HTTP_ACCEPT_LANGUAGE=GERMAN).content.decode()


@pytest.mark.django_db
def test_the_language_menu_refuses_a_foreign_next_and_an_unknown_language(client):
    response = client.post(reverse("set_language"), {"language": "xx", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies


def test_dates_and_numbers_follow_the_language():
    moment = dt.datetime(2026, 12, 1, 23, 46)
    expected = {"en": "2026-12-01 23:46", "de": "01.12.2026 23:46", "fr": "01/12/2026 23:46", "it": "01/12/2026 23:46"}
    for language, text in expected.items():
        with translation.override(language):
            assert formats.date_format(moment, "SHORT_DATETIME_FORMAT") == text, language
            assert formats.date_format(moment, "j F Y").endswith("2026")
    with translation.override("de"):
        assert formats.number_format(1234.5, 1) == "1234,5"
        assert formats.date_format(moment, "F") == "Dezember"
    with translation.override("fr"):
        assert formats.date_format(moment, "F") == "décembre"
    with translation.override("it"):
        assert formats.date_format(moment, "F") == "Dicembre"


class VisibleText(HTMLParser):
    """The text a reader sees (and hears: title, placeholder, aria-label, alt), without
    scripts, styles and code samples (commands, file names, hashes)."""

    HIDDEN = ("script", "style", "code", "pre")

    def __init__(self) -> None:
        super().__init__()
        self.hidden = 0
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hidden += tag in self.HIDDEN
        self.texts += [v.strip() for k, v in attrs if k in ("title", "placeholder", "aria-label", "alt") and v]

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in self.HIDDEN

    def handle_data(self, data: str) -> None:
        if not self.hidden and data.strip():
            self.texts.append(" ".join(data.split()))


def page_texts(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    return parser.texts


def routes_without_parameters(patterns=None, prefix: str = "") -> list[str]:
    """Every page of ``urlpatterns`` that takes no parameter: a new page is checked too."""
    found = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += routes_without_parameters(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and not re.search(r"[<(]", route):
            found.append("/" + route.lstrip("^").rstrip("$"))
    return found


@pytest.mark.django_db
@pytest.mark.parametrize("language", LANGUAGES)
def test_no_page_shows_english_text_in_another_language(client, admin_user, make_document, language):
    document = make_document(b"Offerte 2026", name="offerte.txt")
    urls = [reverse("login"), reverse("archive:document", args=[document.pk])]
    urls += [url for url in routes_without_parameters() if not url.startswith("/webadmin/manage/")]  # Django's admin
    shown = {}
    for url in urls:
        if url != reverse("login"):
            client.force_login(admin_user)
        response = client.get(url, HTTP_ACCEPT_LANGUAGE=language)
        if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            shown[url] = [text for text in page_texts(response.content.decode()) if ENGLISH.search(text)]
    assert len(shown) > 25, sorted(shown)  # the pages are really looked at
    assert {url: texts for url, texts in shown.items() if texts} == {}


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_translation_is_the_english_text_left_in_place(language):
    catalogue = read_po(BASE_DIR / "locale" / language / "LC_MESSAGES" / "django.po")
    copied = [msgid for msgid, entry in catalogue.items() if msgid in entry["strings"] and ENGLISH.search(msgid)]
    assert copied == []


def test_the_english_word_check_finds_english():
    assert ENGLISH.search("The look of every WebDMS page.")
    assert not ENGLISH.search("Das Aussehen jeder WebDMS-Seite. Suche: from:alice")
    texts = page_texts('<p title="Copy the link">Kopieren <code>manage.py verify --all of it</code></p>')
    assert texts == ["Copy the link", "Kopieren"]


def test_figures_are_grouped_the_swiss_way():
    """Not Germany's 1.234.567,5 nor Italy's: a non-breaking space and a decimal comma in all
    three languages (webadmin/formats), English as before."""
    expected = {"en": "1,234,567.5", "de": "1\xa0234\xa0567,5", "fr": "1\xa0234\xa0567,5", "it": "1\xa0234\xa0567,5"}
    for language, text in expected.items():
        with translation.override(language):
            assert formats.number_format(1234567.5, 1, force_grouping=True) == text, language


def test_the_dashboard_charts_write_figures_in_the_pages_language():
    with translation.override("de"):
        assert charts.count(1234567) == "1\xa0234\xa0567"
        assert charts.size(1536 * 1024) == "1,5 MiB" and charts.seconds(9000) == "2,5 h"
        assert ">42,5 %</text>" in charts.meter(42.5, title="Suchabdeckung")
    with translation.override("en"):
        assert charts.count(1234567) == "1,234,567" and charts.size(1536 * 1024) == "1.5 MiB"


@pytest.mark.django_db
def test_the_audit_log_names_its_acts_and_outcomes_in_the_readers_language(client, admin_user):
    client.post(reverse("login"), {"username": "mallory", "password": "guess"})
    client.force_login(admin_user)
    html = client.get(reverse("audit:log"), HTTP_ACCEPT_LANGUAGE=GERMAN).content.decode()
    rows = {row.split('data-action="')[1].split('"')[0]: row for row in html.split("<tr data-seq=")[1:]}
    assert "Anmeldung fehlgeschlagen" in rows["sign_in_failed"] and "<td>fehlgeschlagen</td>" in rows["sign_in_failed"]
    assert "Anmeldung" in rows["sign_in"] and "<td>ok</td>" in rows["sign_in"]
    assert '<option value="sign_in_locked_out">Anmeldung gesperrt</option>' in html  # the filter too


@pytest.mark.django_db
def test_the_mail_viewer_labels_a_forwarded_message_in_the_readers_language(client, alice, group_a):
    from tests.archive.mail_samples import archive_mail, forward_as_body

    doc = archive_mail(forward_as_body(), group_a)
    client.force_login(alice)
    response = client.get(reverse("archive:mail_body", args=[doc.pk]), HTTP_ACCEPT_LANGUAGE=GERMAN)
    body = (b"".join(response.streaming_content) if response.streaming else response.content).decode()
    assert "Weitergeleitete Nachricht" in body and "<dt>Von</dt>" in body and "<dt>Betreff</dt>" in body
    assert "Forwarded message" not in body
