"""Settings about files and links, each changed through WebAdmin and checked in
the WebDMS (headless Chromium): save filename in field, versioning, publishing,
and the two access-link settings."""

from __future__ import annotations

import pytest

from archive.models import Document, FieldDefinition, FieldType, PublicAccess
from tests.browser.conftest import read_clipboard
from tests.browser.settings_form import change_settings, log_in_as

pytestmark = pytest.mark.django_db(transaction=True)


def upload_file(page, name: str, content: bytes, mime: str = "application/octet-stream") -> int:
    """Upload one file through the upload page; the number of the document it landed in."""
    page.goto("/dms/upload/")
    page.set_input_files("#id_files", files=[{"name": name, "mimeType": mime, "buffer": content}])
    page.click("form[enctype='multipart/form-data'] button[type=submit]")
    page.wait_for_url("**/dms/doc/*/")
    return int(page.get_attribute("#document", "data-number"))


def test_save_filename_in_field(page, live_server, admin_user):
    FieldDefinition.objects.create(name="original_name", label="Original file name", type=FieldType.TEXT)
    log_in_as(page, live_server, admin_user)
    first = upload_file(page, "offer.pdf", b"%PDF-1.4 offer", "application/pdf")
    assert Document.objects.get(pk=first).values.get("filename") == "offer.pdf"  # the default field

    change_settings(page, filename_field="Original file name")
    number = upload_file(page, "viastockalperhd.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    page.click("#tab-fields")
    assert page.input_value("#id_original_name") == "viastockalperhd.mp4"
    assert page.input_value("#id_filename") == ""
    assert Document.objects.get(pk=number).values["original_name"] == "viastockalperhd.mp4"


def test_versioning_with_the_file_name_as_version_key(page, live_server, admin_user):
    log_in_as(page, live_server, admin_user)
    change_settings(page, versioning=True, version_key_field="File name")
    number = upload_file(page, "price-list.pdf", b"%PDF-1.4 prices 2024", "application/pdf")
    assert upload_file(page, "price-list.pdf", b"%PDF-1.4 prices 2025", "application/pdf") == number
    assert "as a new version" in page.text_content(".messages")
    assert "version 1.1" in page.text_content("h1")
    document = Document.objects.get(pk=number)
    newest, older = document.files.order_by("-version")
    # The View tab shows the newest version.
    assert page.get_attribute("#pdf-viewer", "data-url") == f"/dms/doc/{number}/file/{newest.pk}/"
    page.click("#tab-files")
    assert page.locator("#versions li").all_inner_texts()[0].startswith("1.1: price-list.pdf")
    assert "(current)" in page.locator("#versions li[data-version='1.1']").inner_text()
    old_link = page.locator("#versions li[data-version='1.0'] a")
    response = page.request.get(old_link.get_attribute("href"))
    assert response.ok and response.body() == b"%PDF-1.4 prices 2024"
    # Same number, same access link.
    page.goto(f"/perl/avclient/index.pl?target=new&go={number}")
    page.wait_for_url(f"**/dms/doc/{number}/")
    # Another name is another document.
    assert upload_file(page, "order-form.pdf", b"%PDF-1.4 form", "application/pdf") != number


def test_versioning_with_a_key_given_on_the_upload_form(page, live_server, admin_user, make_document):
    FieldDefinition.objects.create(name="reference", label="Reference", type=FieldType.TEXT)
    contract = make_document(content=b"draft", name="contract-draft.txt", values={"reference": "C-2024-17"})
    log_in_as(page, live_server, admin_user)
    change_settings(page, versioning=True, version_key_field="Reference")
    # The document offers "New version", which prefills the key on the upload form.
    page.goto(f"/dms/doc/{contract.pk}/")
    page.click("#new-version")
    page.wait_for_url("**/dms/upload/**")
    assert page.input_value("#id_version_key") == "C-2024-17"
    page.set_input_files(
        "#id_files", files=[{"name": "contract-signed.txt", "mimeType": "text/plain", "buffer": b"signed"}]
    )
    page.click("form[enctype='multipart/form-data'] button[type=submit]")
    page.wait_for_url(f"**/dms/doc/{contract.pk}/")
    assert [f.name for f in Document.objects.get(pk=contract.pk).files.order_by("version")] == [
        "contract-draft.txt",
        "contract-signed.txt",
    ]


def test_field_for_publishing(page, browser, live_server, admin_user, make_document):
    FieldDefinition.objects.create(name="published", label="Published", type=FieldType.YESNO)
    flyer = make_document(content=b"Open day on 1 June", name="open-day.txt")
    other = make_document(content=b"internal", name="internal.txt", values={"published": True})
    link = f"/perl/avclient/index.pl?target=new&go={flyer.pk}"
    visitor_context = browser.new_context(base_url=live_server.url)
    visitor = visitor_context.new_page()
    visitor.set_default_timeout(10_000)
    try:
        log_in_as(page, live_server, admin_user)
        change_settings(page, publish_field="Published")
        visitor.goto(link)
        assert "/login/" in visitor.url  # not published: login

        # Publish it in the document's Fields tab.
        page.goto(f"/dms/doc/{flyer.pk}/#fields")
        page.check("#id_published")
        page.click("#panel-fields button[type=submit]")
        page.wait_for_selector(".messages:has-text('Fields saved.')")

        visitor.goto(link)
        visitor.wait_for_url(f"**/dms/doc/{flyer.pk}/")
        assert visitor.locator(".tabs [role=tab]").all_inner_texts() == ["View"]
        assert visitor.locator("#panel-view iframe").is_visible()
        assert visitor.locator("form[method=post][action^='/dms/']").count() == 0
        hrefs = visitor.eval_on_selector_all("a[href]", "as => as.map(a => a.getAttribute('href'))")
        assert not [h for h in hrefs if f"/doc/{other.pk}/" in h or "upload" in h]
        assert PublicAccess.objects.filter(document=flyer).count() >= 1

        # Withdraw: unset the field; the very next open asks for a login.
        page.goto(f"/dms/doc/{flyer.pk}/#fields")
        page.uncheck("#id_published")
        page.click("#panel-fields button[type=submit]")
        page.wait_for_selector(".messages:has-text('Fields saved.')")
        visitor.goto(link)
        assert "/login/" in visitor.url
    finally:
        visitor_context.close()


def test_dns_name_and_title_field_for_the_access_link(page, live_server, admin_user, make_document):
    video = make_document(content=b"\x00\x00\x00\x18ftypmp42", name="viastockalperhd.mp4")
    log_in_as(page, live_server, admin_user)
    change_settings(page, dns_name="https://192.168.0.233", link_title_field="File name")
    page.goto(f"/dms/doc/{video.pk}/")
    page.click("#copy-link")
    page.wait_for_selector("#copy-status:has-text('copied')")
    assert read_clipboard(page)["text/plain"] == (
        f"viastockalperhd.mp4\nhttps://192.168.0.233/perl/avclient/index.pl?target=new&go={video.pk}"
    )
