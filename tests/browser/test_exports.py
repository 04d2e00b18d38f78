"""Exports in headless Chromium: an administrator starts one, the page follows
its progress (queued, running with a count, ready) without reloading, and the
downloaded ZIP passes its own verifier. The build runs in a thread of the test
(the task's function, as a worker calls it), paused after its first page of
documents by an event, so the page is seen in the middle of the work."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from archive.exports import builder
from archive.exports.models import Export
from tests.browser.settings_form import log_in_as
from tests.exports.helpers import record_archived, verify

pytestmark = pytest.mark.django_db(transaction=True)


def test_start_an_export_follow_its_progress_and_download_it(
    page, live_server, admin_user, make_document, monkeypatch, tmp_path, artifacts_dir
):
    for i in range(3):
        record_archived(
            make_document(content=f"contract {i}".encode(), name=f"c{i}.txt", values={"title": f"Contract {i}"})
        )
    log_in_as(page, live_server, admin_user)
    page.goto("/webadmin/")
    page.click("text=Exports with proof")
    page.fill("#id_name", "Audit 2024")
    page.fill("#id_query", "Contract")
    page.click("#export-start")
    page.wait_for_selector("#export[data-status=pending]")
    assert "0 / 3 documents" in page.text_content("#export-progress")
    assert page.is_hidden("#export-download")

    first_page, release = threading.Event(), threading.Event()
    original = builder.Build.write_page

    def pausing(self, documents):
        original(self, documents)
        first_page.set()
        assert release.wait(timeout=60), "the test never released the build"

    monkeypatch.setattr(builder, "PAGE", 1)
    monkeypatch.setattr(builder.Build, "write_page", pausing)
    export = Export.objects.get()

    def work() -> None:
        try:
            builder.export_build(export.pk)
        finally:
            connections.close_all()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert first_page.wait(timeout=60)
        page.wait_for_selector("#export[data-status=running]")
        page.wait_for_selector("#export-progress:has-text('1 / 3 documents')")
        assert "Running" in page.text_content("#export-progress")
        page.screenshot(path=str(artifacts_dir / "exports-running.png"), full_page=True)
    finally:
        release.set()
        monkeypatch.setattr(builder.Build, "write_page", original)
        worker.join(timeout=120)
    page.wait_for_selector("#export[data-status=done]")
    assert "3 / 3 documents" in page.text_content("#export-progress")
    with page.expect_download() as download_info:
        page.click("#export-download a")
    target = tmp_path / "export.zip"
    download_info.value.save_as(target)
    result = verify(target)
    assert result.returncode == 0, result.stdout + result.stderr
    page.screenshot(path=str(artifacts_dir / "exports-done.png"), full_page=True)


def test_generate_the_procedure_documentation_and_open_it_under_its_own_csp(page, live_server, admin_user):
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    log_in_as(page, live_server, admin_user)
    page.goto("/webadmin/")
    page.click("text=Procedure documentation")
    page.click("#procedure-generate")
    page.wait_for_selector("#procedure-document")
    assert "Procedure documentation — technical part" in page.text_content("h1")
    # The stored page's one style block is allowed by its hash: the print layout applies.
    assert page.eval_on_selector("body", "el => getComputedStyle(el).maxWidth") == "960px"
    assert violations == []
    page.go_back()
    page.reload()
    assert page.locator("table.procedure tbody tr").count() == 1


def test_the_reconciliation_page_compares_a_source_with_its_server(
    page, live_server, admin_user, imap_mailbox, imap_source
):
    from tests.mailsources.imap_pipeline import mail, sync

    imap_mailbox.append("INBOX", mail("archived"))
    sync(imap_source)
    imap_mailbox.append("Elsewhere", mail("not archived"))
    log_in_as(page, live_server, admin_user)
    page.goto("/webadmin/")
    page.click("text=Reconciliation")
    page.select_option("#reconcile-source", str(imap_source.pk))
    page.click("#reconcile-run")
    page.wait_for_selector("#reconcile-report")
    rows = page.locator("table.reconcile tbody tr")
    assert rows.count() == 2
    assert "excluded folder" in page.text_content("table.reconcile-rows")
