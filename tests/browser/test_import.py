"""The import page in headless Chromium: an administrator finds the file an IT partner
copied into the import directory, starts its import, and follows it on the source
page until it is complete; an upload of an MBOX starts one too. Screenshots in
test-artifacts/import-*.png."""

from __future__ import annotations

import pytest

from archive.models import Document
from mailsources import tasks
from mailsources.models import MailSource, SourceKind
from tests.browser.settings_form import log_in_as
from tests.mailsources.imap_pipeline import mail
from tests.mailsources.import_files import lf, write_mbox

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def import_dir(settings, tmp_path):
    settings.IMPORT_DIR = tmp_path / "import"
    settings.IMPORT_DIR.mkdir()
    return settings.IMPORT_DIR


def test_an_administrator_starts_an_import_and_follows_it_to_the_end(
    page, live_server, admin_user, group_a, import_dir, artifacts_dir
):
    write_mbox(import_dir / "Old Inbox.mbox", [lf(mail(f"old mail {i}")) for i in range(3)])
    log_in_as(page, live_server, admin_user)

    page.goto("/webadmin/sources/")
    page.click("#import-archives")
    page.wait_for_selector("#import-start")
    page.select_option("#id_start-entry", value="Old Inbox.mbox")
    page.fill("#id_start-mailbox", "alice@example.com")
    page.select_option("#id_start-owner_group", label=group_a.name)
    page.screenshot(path=str(artifacts_dir / "import-page.png"), full_page=True)
    page.click("#import-start-button")
    page.wait_for_selector("#source-queued:has-text('queued since')")
    assert "Old Inbox.mbox" in (page.text_content("#import-path") or "")

    source = MailSource.objects.get(kind=SourceKind.IMPORT)
    tasks.sync_source(source.pk)  # the worker that takes the queued run

    # The page follows the run without a reload (the batch commits before the run ends).
    page.wait_for_selector("#source-progress:has-text('Finished')")
    progress = page.text_content("#source-progress") or ""
    assert "new 3" in progress and " read" in progress
    assert (page.text_content("#source-queued") or "").strip() == "—"
    page.reload()
    assert "complete" in (page.text_content("#import-files") or "")
    page.screenshot(path=str(artifacts_dir / "import-done.png"), full_page=True)
    assert Document.objects.filter(title__startswith="old mail").count() == 3


def test_an_upload_that_is_no_archive_is_refused_on_the_page(
    page, live_server, admin_user, group_a, import_dir, tmp_path
):
    (tmp_path / "notes.txt").write_text("no mail")
    log_in_as(page, live_server, admin_user)

    page.goto("/webadmin/sources/import/")
    page.wait_for_selector("#import-dir-empty")
    page.set_input_files("#id_upload-file", str(tmp_path / "notes.txt"))
    page.fill("#id_upload-mailbox", "alice@example.com")
    page.select_option("#id_upload-owner_group", label=group_a.name)
    page.click("#import-upload-button")

    page.wait_for_selector("#import-upload:has-text('is no mail archive this page takes')")
    assert not MailSource.objects.exists()
