"""The field and note history of a document (its integrity ledger) in
headless Chromium: change a field and the notes, see who changed what."""

from __future__ import annotations

import pytest

from archive.integrity.models import LedgerEntry, LedgerEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_history_tab_shows_old_and_new_values_and_who(page, login, alice, make_document):
    doc = make_document(values={"title": "Invoice 7"})
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{doc.pk}/")
    page.click("#tab-fields")
    page.fill("#id_title", "Invoice 8")
    with page.expect_navigation():
        page.click("#panel-fields button[type=submit]")
    page.click("#tab-notes")
    page.fill("#id_notes", "amount checked")
    with page.expect_navigation():
        page.click("#panel-notes button[type=submit]")

    page.click("#tab-history")
    title = page.locator("#history li[data-field='Title']")
    title.wait_for()
    assert title.locator("del").inner_text() == "Invoice 7"
    assert title.locator("ins").inner_text() == "Invoice 8"
    notes = page.locator("#history li[data-field='Notes']")
    assert notes.locator("ins").inner_text() == "amount checked"
    rows = page.locator("#history tbody tr")
    assert rows.count() == LedgerEntry.objects.filter(document=doc.pk).count() == 3
    newest = rows.first
    assert "alice" in newest.inner_text() and str(LedgerEvent.NOTES_CHANGED.label) in newest.inner_text()
    assert page.locator("#panel-history").is_visible()
