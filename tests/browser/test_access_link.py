"""The access link end to end in headless Chromium (SPEC §5)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from archive.models import ArchiveSettings, FieldDefinition
from tests.browser.conftest import read_clipboard

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def video(alice, make_document):
    return make_document(content=b"\x00\x00\x00\x18ftypmp42" + b"\0" * 64, name="viastockalperhd.mp4")


def configure(dns_name: str = "https://192.168.0.233", title_field: str | None = "filename") -> None:
    settings = ArchiveSettings.load()
    settings.dns_name = dns_name
    settings.link_title_field = FieldDefinition.objects.get(name=title_field) if title_field else None
    settings.save()


def test_ctrl_c_in_view_tab_copies_title_line_and_url(page, login, alice, video):
    configure()
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{video.pk}/")
    # An attribute, not a polled JS predicate: polling needs eval, which the page CSP forbids.
    page.wait_for_selector("#document[data-link-ready='true']", state="attached")
    page.keyboard.press("Control+c")
    clip = read_clipboard(page)
    assert clip["text/plain"] == (
        f"viastockalperhd.mp4\nhttps://192.168.0.233/perl/avclient/index.pl?target=new&go={video.pk}"
    )
    assert clip["text/html"] == (
        f'<a href="https://192.168.0.233/perl/avclient/index.pl?target=new&amp;go={video.pk}">viastockalperhd.mp4</a>'
    )


def test_ctrl_c_in_fields_tab_copies_the_selected_text(page, login, alice, video):
    configure()
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{video.pk}/")
    # An attribute, not a polled JS predicate: polling needs eval, which the page CSP forbids.
    page.wait_for_selector("#document[data-link-ready='true']", state="attached")
    page.click("#tab-fields")
    page.fill("#id_title", "Quarterly report")
    page.focus("#id_title")
    page.keyboard.press("Control+a")
    page.keyboard.press("Control+c")
    assert read_clipboard(page)["text/plain"] == "Quarterly report"


def test_copy_button_without_title_field_uses_number_and_title(page, login, alice, video):
    configure(title_field=None)
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{video.pk}/#files")
    page.click("#copy-link")
    page.wait_for_selector("#copy-status:has-text('copied')")
    assert read_clipboard(page)["text/plain"] == (
        f"{video.pk}: viastockalperhd.mp4\nhttps://192.168.0.233/perl/avclient/index.pl?target=new&go={video.pk}"
    )


def test_copy_button_for_selected_table_rows(page, login, alice, make_document):
    configure(dns_name="http://archive.example.com:8080")
    first = make_document(name="a.txt")
    second = make_document(name="b.txt")
    login("alice", "alice-pass-123")
    page.goto("/dms/")
    page.check(f".row-select[value='{first.pk}']")
    page.check(f".row-select[value='{second.pk}']")
    page.click("#copy-selected")
    page.wait_for_selector("#copy-status:has-text('copied')")
    text = read_clipboard(page)["text/plain"]
    base = "http://archive.example.com:8080/perl/avclient/index.pl?target=new&go="
    # Rows are listed newest first by default; one pair per selected document.
    assert sorted(text.split("\n")) == sorted(["a.txt", f"{base}{first.pk}", "b.txt", f"{base}{second.pk}"])
    assert len(text.split("\n")) == 4


def test_without_dns_name_the_link_uses_the_browsers_address(page, login, alice, video, live_server, settings):
    configure(dns_name="", title_field="filename")
    settings.TOTP_REQUIRED_FOR_STAFF = False  # the second step: tests/browser/test_directory_signin.py
    User.objects.filter(pk=alice.pk).update(is_staff=True)
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{video.pk}/")
    assert page.is_visible("#dns-hint")
    page.click("#copy-link")
    page.wait_for_selector("#copy-status:has-text('copied')")
    assert read_clipboard(page)["text/plain"].split("\n")[1] == (
        f"{live_server.url}/perl/avclient/index.pl?target=new&go={video.pk}"
    )


def test_pasted_link_leads_a_logged_out_user_through_login_to_the_document(page, alice, video, live_server):
    page.goto(f"{live_server.url}/perl/avclient/index.pl?target=new&go={video.pk}")
    assert "/login/" in page.url
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-pass-123")
    page.click("main button[type=submit]")  # not the language menu's buttons
    page.wait_for_url(f"**/dms/doc/{video.pk}/")
    assert page.text_content("h1").startswith("viastockalperhd.mp4")
