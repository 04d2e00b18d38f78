"""The audit log and the auditor role in headless Chromium: an administrator
filters the log and downloads the CSV; an auditor opens a document of another
group without its edit controls, and sees the audit page."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from archive.integrity.audit import AuditAction
from archive.integrity.models import AuditEntry
from tests.integrity.auditors import AUDITOR_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_administrator_filters_the_log_and_downloads_the_csv(page, login, admin_user, alice, make_document):
    doc = make_document(values={"title": "Contract"})
    login("alice", "alice-pass-123")
    page.goto(f"/dms/doc/{doc.pk}/")
    page.wait_for_selector("#document")
    page.click("text=Log out alice")
    page.wait_for_load_state()

    login("admin", "admin-pass-123")
    page.click("#nav-audit")
    page.wait_for_selector("#audit-entries")
    page.fill("#id_who", "alice")
    page.select_option("#id_action", AuditAction.DOCUMENT_VIEW)
    page.click("#audit-apply")
    page.wait_for_selector("#audit-count[data-count='1']")
    rows = page.locator("#audit-entries tbody tr")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-action") == AuditAction.DOCUMENT_VIEW
    assert f"{doc.pk}" in rows.first.locator("td").nth(4).inner_text()

    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert download.suggested_filename.startswith("audit-log-") and download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8") as handle:
        exported = list(csv.DictReader(io.StringIO(handle.read())))
    assert [(r["actor"], r["action"], r["document"]) for r in exported] == [
        ("alice", AuditAction.DOCUMENT_VIEW, str(doc.pk))
    ]
    export = AuditEntry.objects.get(action=AuditAction.EXPORT)
    assert export.actor == "admin"
    assert export.details["filter"] == {"who": "alice", "action": AuditAction.DOCUMENT_VIEW}


def test_an_auditor_reads_another_groups_document_without_edit_controls(page, login, auditor, make_document):
    doc = make_document(values={"title": "Sales contract"})  # the group Sales; carol is not in it
    login("carol", AUDITOR_PASSWORD)
    page.goto(f"/dms/doc/{doc.pk}/")
    page.wait_for_selector("#document")
    assert "Sales contract" in page.inner_text("h1")
    page.click("#tab-fields")
    assert page.locator("#id_title").is_disabled()
    assert page.locator("#save-fields").count() == 0
    assert page.locator("#upload").count() == 0
    assert page.locator("nav >> text=Upload").count() == 0

    page.click("#nav-audit")
    page.wait_for_selector("#audit-entries")
    assert page.url.endswith(reverse("audit:log"))
    rows = page.locator("#audit-entries tbody tr")
    actions = [rows.nth(i).get_attribute("data-action") for i in range(rows.count())]
    assert AuditAction.DOCUMENT_VIEW in actions and AuditAction.SIGN_IN in actions
    view = AuditEntry.objects.filter(action=AuditAction.DOCUMENT_VIEW).get()
    assert (view.actor, view.document, view.outcome) == ("carol", doc.pk, "ok")
