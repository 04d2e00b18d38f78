"""The table settings, each changed through WebAdmin and checked in the WebDMS
(headless Chromium): primary usage, reduced table, internal fields, title."""

from __future__ import annotations

import struct
import zlib

import pytest

from archive import services
from tests.browser.settings_form import change_settings, column_names, log_in_as

pytestmark = pytest.mark.django_db(transaction=True)


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    """A real (decodable) PNG, so the browser really draws the thumbnail."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xd0\x40\x20" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


MAIL = (
    b"From: Anna Muster <anna@example.com>\r\nTo: office@example.com\r\n"
    b"Subject: Offer 2024\r\nDate: Mon, 3 Jun 2024 10:00:00 +0200\r\n\r\nHello.\r\n"
)


def test_primary_usage_mails_shows_mail_columns_and_the_mail_view(page, live_server, admin_user, make_document):
    eml = make_document(
        content=MAIL,
        name="offer.eml",
        values={"from": "anna@example.com", "subject": "Offer 2024", "date": "2024-06-03"},
    )
    log_in_as(page, live_server, admin_user)
    page.goto("/dms/")
    assert column_names(page)[:4] == ["number", "title", "date", "owner"]
    page.goto(f"/dms/doc/{eml.pk}/")
    assert page.locator("#panel-view .viewer-mail").is_visible()  # a mail is shown as mail in any archive (issue 15)

    change_settings(page, primary_usage="Mails")
    page.goto("/dms/")
    assert column_names(page)[:4] == ["number", "from", "subject", "date"]
    row = page.locator(f"tr[data-number='{eml.pk}']")
    assert row.locator("td.col-from").inner_text() == "anna@example.com"
    assert row.locator("td.col-subject").inner_text() == "Offer 2024"
    row.locator("td.col-number a").click()
    page.wait_for_url(f"**/dms/doc/{eml.pk}/")
    assert page.locator("#panel-view .viewer-mail").is_visible()


def test_primary_usage_media_shows_file_names_posters_and_the_player(page, live_server, admin_user, make_document):
    still = make_document(content=tiny_png(), name="matterhorn.png")
    clip = make_document(content=b"\x00\x00\x00\x18ftypmp42" + b"\0" * 64, name="viastockalperhd.mp4")
    log_in_as(page, live_server, admin_user)
    page.goto("/dms/")
    assert page.locator("td.poster").count() == 0

    change_settings(page, primary_usage="Media")
    page.goto("/dms/")
    assert column_names(page)[:2] == ["number", "filename"]
    assert page.locator(f"tr[data-number='{clip.pk}'] td.col-filename").inner_text() == "viastockalperhd.mp4"
    # The image is its own thumbnail, drawn by the browser (CSP and serving allow it).
    thumb = page.locator(f"tr[data-number='{still.pk}'] img.poster-image")
    thumb.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth === 4", arg=thumb.element_handle())
    # A video gets the browser's poster frame: a muted, control-less video of the file.
    poster = page.locator(f"tr[data-number='{clip.pk}'] video.poster-video")
    assert poster.get_attribute("src") == f"/dms/doc/{clip.pk}/file/{clip.original().pk}/#t=0.5"
    poster.click()  # the poster opens the player
    page.wait_for_url(f"**/dms/doc/{clip.pk}/")
    player = page.locator("#panel-view video.viewer-media")
    assert player.is_visible() and player.get_attribute("controls") is not None


def test_start_with_reduced_table_and_the_user_can_expand_it(page, live_server, admin_user, make_document):
    make_document(name="a.txt")
    log_in_as(page, live_server, admin_user)
    page.goto("/dms/")
    assert "to" in column_names(page) and "created" in column_names(page)  # starts with all columns

    change_settings(page, start_reduced_table=True)
    page.goto("/dms/")
    reduced = column_names(page)
    assert "to" not in reduced and "created" not in reduced and "subject" in reduced
    page.click("#expand-table")
    page.wait_for_selector("#reduce-table")
    expanded = column_names(page)
    assert {"to", "cc", "created", "modified"} <= set(expanded)
    # Sorting keeps the expanded table.
    page.click("th[data-field=title] a")
    page.wait_for_url("**sort=title**")
    assert column_names(page) == expanded
    page.click("#reduce-table")
    page.wait_for_selector("#expand-table")
    assert column_names(page) == reduced


def test_hide_internal_fields_in_reduced_table(page, live_server, admin_user, make_document):
    make_document(name="a.txt")
    log_in_as(page, live_server, admin_user)
    change_settings(page, start_reduced_table=True)
    page.goto("/dms/")
    assert {"number", "owner"} <= set(column_names(page))

    change_settings(page, hide_internal_in_reduced=True)
    page.goto("/dms/")
    reduced = column_names(page)
    assert not {"number", "owner", "created", "modified"} & set(reduced)
    assert reduced[0] == "title"
    page.click("#expand-table")
    page.wait_for_selector("#reduce-table")
    assert {"number", "owner", "created"} <= set(column_names(page))  # still in the full table


def test_suppress_field_title_in_main_view(page, live_server, admin_user, make_document):
    make_document(name="quarterly.txt")
    log_in_as(page, live_server, admin_user)
    page.goto("/dms/")
    assert "title" in column_names(page)
    assert page.locator("td.col-title", has_text="quarterly.txt").count() == 1

    change_settings(page, suppress_title=True)
    page.goto("/dms/")
    assert "title" not in column_names(page)
    assert page.locator("td.col-title").count() == 0


def test_width_of_field_title_is_in_fifteenths_of_a_pixel(page, live_server, admin_user, make_document):
    make_document(name="a-rather-long-title-that-would-like-more-room-than-it-gets.txt")
    log_in_as(page, live_server, admin_user)

    def title_width() -> float:
        page.goto("/dms/")
        return page.eval_on_selector("th[data-field=title]", "th => th.getBoundingClientRect().width")

    assert title_width() == pytest.approx(200, abs=0.5)  # the default 3000
    change_settings(page, title_width=4500)
    assert title_width() == pytest.approx(300, abs=0.5)
    change_settings(page, title_width=1500)
    assert title_width() == pytest.approx(100, abs=0.5)


def test_the_media_table_shows_a_document_without_a_file(page, live_server, admin_user, group_a):
    services.document_create(owner_group=group_a, values={"title": "Paper only"})
    log_in_as(page, live_server, admin_user)
    change_settings(page, primary_usage="Media")
    page.goto("/dms/")
    assert page.locator("td.col-title", has_text="Paper only").count() == 1
