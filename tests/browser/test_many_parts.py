"""A mail with many parts in headless Chromium (issue 10, requirement 9): the
View tab and the Files tab list the first parts, and their "Show all N" links
open the same tab listing every part. Screenshot: test-artifacts/mail-many-parts.png."""

from __future__ import annotations

import re

import pytest

from archive import mailview, processing, views
from bench.bigmail_bench import many_parts_mail
from tests.archive.mail_samples import archive_mail

pytestmark = pytest.mark.django_db(transaction=True)


def test_show_all_lists_every_part_in_the_tab_it_came_from(page, login, alice, group_a, artifacts_dir, monkeypatch):
    monkeypatch.setattr(mailview, "PARTS_SHOWN", 4)
    monkeypatch.setattr(views, "FILES_SHOWN", 4)
    document = archive_mail(many_parts_mail(10), group_a)  # the body and 9 attachments
    processing.mail_documents_process([document.pk])
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{document.pk}/")
    page.wait_for_selector('#mail-body[data-sized="true"]')
    attachments = page.locator("#mail-attachments li > a")
    assert attachments.all_inner_texts() == [f"part-{n}.txt" for n in range(1, 5)]
    assert page.locator("#mail-attachments-more").inner_text() == "The first 4 of 9 parts are listed. Show all 9 parts"
    page.screenshot(path=str(artifacts_dir / "mail-many-parts.png"), full_page=True)

    page.click("#mail-attachments-all")
    # (the View tab, the default one, takes its "#view" off the address)
    page.wait_for_url(re.compile(r"\?parts=all(#view)?$"), wait_until="commit")
    page.wait_for_selector("#mail-attachments li:nth-child(9)")
    assert attachments.all_inner_texts() == [f"part-{n}.txt" for n in range(1, 10)]
    assert page.locator("#mail-attachments-more").count() == 0
    assert page.locator("#panel-view").is_visible()

    page.goto(f"/dms/doc/{document.pk}/#files")
    files = page.locator("table.files tbody td:first-child a")
    assert files.all_inner_texts() == [*(f"part-{n}.txt" for n in range(1, 5)), "mail.eml"]
    page.click("#files-all")
    page.wait_for_url(re.compile(r"\?parts=all#files$"), wait_until="commit")
    page.wait_for_selector("table.files tbody tr:nth-child(10)")
    page.wait_for_selector("#panel-files:not([hidden])")
    assert files.all_inner_texts() == [*(f"part-{n}.txt" for n in range(1, 10)), "mail.eml"]
    with page.expect_download() as download:
        files.nth(8).click()
    assert download.value.suggested_filename == "part-9.txt"
