"""Retention in headless Chromium: an administrator creates a policy and a
legal hold, approves the expiry list, and reads the deletion report — a held
mail survives, the other one is gone. Screenshot: test-artifacts/retention-report.png."""

from __future__ import annotations

import pytest

from archive import services, storage
from archive.models import Document, DocumentKind, FileRole
from archive.retention import expiry
from archive.retention.models import ExpiryList, LegalHold, RetentionPolicy
from tests.browser.conftest import ARTIFACTS
from tests.browser.settings_form import log_in_as

pytestmark = pytest.mark.django_db(transaction=True)


def _mail(group, title: str, date: str) -> Document:
    blob = storage.put_bytes(f"Subject: {title}\r\n\r\n{title}\r\n".encode())
    return services.document_create(
        owner_group=group,
        values={"title": title, "date": date},
        kind=DocumentKind.MAIL,
        files=[services.NewFile(name="mail.eml", blob=blob, content_type="message/rfc822", role=FileRole.ORIGINAL)],
    )


def test_an_administrator_sets_retention_holds_a_mail_and_approves_the_expiry(page, live_server, admin_user, group_a):
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    newsletter = _mail(group_a, "Newsletter 2001", "2001-03-01")
    contract = _mail(group_a, "Contract ACME", "2001-04-01")
    log_in_as(page, live_server, admin_user)

    page.goto("/webadmin/")
    page.click("#retention-link")
    assert page.locator("#deletion-lock").get_attribute("data-lock") == "on"
    page.click("#new-policy")
    page.fill("#id_name", "Swiss law")
    page.select_option("#id_preset", "ch10")
    page.select_option("#id_kind", "mail")
    page.click("#policy-form button[type=submit]")
    page.wait_for_selector("tr[data-policy='Swiss law']")
    assert RetentionPolicy.objects.get().preset == "ch10"

    page.goto(f"/dms/doc/{contract.pk}/")
    page.click("#tab-fields")
    assert page.locator("#retention-end").inner_text().strip() == "Retention end\n2011-12-31"

    page.goto("/webadmin/retention/holds/")
    page.click("#new-hold")
    page.fill("#id_name", "ACME lawsuit")
    page.fill("#id_reason", "Court order 17/2026")
    page.fill("#id_query", "acme")
    page.click("#hold-form button[type=submit]")
    row = page.locator("tr[data-hold='ACME lawsuit']")
    row.wait_for()
    assert row.locator(".hold-count").inner_text() == "1"

    page.click("#nav-expiry")
    page.click("#expiry-check")
    page.wait_for_selector("#expiry-list[data-status='open']")
    assert page.locator(".expiry-items tr[data-number]").count() == 1  # the held contract is not listed
    page.click("#expiry-approve")
    page.wait_for_selector("#expiry-list[data-status='approved']")
    expiry.expiry_list_execute(ExpiryList.objects.get().pk)  # what the worker's task does
    page.reload()
    page.wait_for_selector("#expiry-list[data-status='done']")
    page.click("#report-link")
    report = page.locator("#deletion-report")
    report.wait_for()
    assert page.locator("#report-approvers").inner_text() == "admin"
    deleted = page.locator(f".report tr[data-number='{newsletter.pk}']")
    assert deleted.get_attribute("data-item-status") == "deleted" and "Newsletter 2001" in deleted.inner_text()
    page.screenshot(path=str(ARTIFACTS / "retention-report.png"), full_page=True)
    csv_link = page.locator("#report-csv").get_attribute("href")
    assert csv_link == f"/webadmin/retention/expiry/{ExpiryList.objects.get().pk}/report.csv"
    assert not Document.objects.filter(pk=newsletter.pk).exists()
    assert Document.objects.filter(pk=contract.pk).exists() and LegalHold.objects.get().active
    assert violations == []
