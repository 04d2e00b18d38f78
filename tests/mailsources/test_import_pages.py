"""The WebAdmin import page: what lies in IMPORT_DIR, starting an import of it or of an
uploaded file, its progress and run history on the source page; administrators only."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from archive.models import Document
from mailsources import tasks
from mailsources.models import MailSource, RunStatus, SourceKind
from tests.mailsources.imap_pipeline import mail
from tests.mailsources.import_files import lf, write_mbox


@pytest.fixture
def import_dir(settings, tmp_path) -> Path:
    settings.IMPORT_DIR = tmp_path / "import"
    settings.IMPORT_DIR.mkdir()
    return settings.IMPORT_DIR


def start_data(entry: str, group, **extra: str) -> dict[str, object]:
    return {"start-entry": entry, "start-mailbox": "alice@example.com", "start-owner_group": group.pk, **extra}


def test_the_page_lists_the_import_directory_and_starts_an_import(client, admin_user, group_a, import_dir):
    write_mbox(import_dir / "Takeout.mbox", [lf(mail(f"takeout {i}")) for i in range(4)])
    (import_dir / "Thunderbird").mkdir()
    client.force_login(admin_user)

    page = client.get(reverse("mailsources:import")).content.decode()
    assert "Takeout.mbox" in page and "Thunderbird/" in page

    response = client.post(
        reverse("mailsources:import"), start_data("Takeout.mbox", group_a, **{"start-format": "auto"})
    )

    source = MailSource.objects.get(kind=SourceKind.IMPORT)
    assert response.status_code == 302 and response.url == reverse("mailsources:detail", args=[source.pk])
    assert source.import_path == str(import_dir / "Takeout.mbox") and source.queued_at is not None
    tasks.sync_source(source.pk)  # what the worker that takes the queued run does
    detail = client.get(reverse("mailsources:detail", args=[source.pk])).content.decode()
    assert "Takeout.mbox" in detail and "complete" in detail
    progress = client.get(reverse("mailsources:progress", args=[source.pk])).json()
    assert progress["run"]["new"] == 4 and progress["run"]["status"] == RunStatus.OK
    size = filesizeformat((import_dir / "Takeout.mbox").stat().st_size)
    assert progress["progress"].endswith(f"· {size} of {size} read")
    assert client.get(reverse("mailsources:edit", args=[source.pk])).status_code == 404


def test_only_entries_of_the_import_directory_can_be_started(client, admin_user, group_a, import_dir):
    client.force_login(admin_user)

    response = client.post(reverse("mailsources:import"), start_data("../../etc/passwd", group_a))

    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    assert not MailSource.objects.exists()


def test_a_link_out_of_the_import_directory_is_refused(client, admin_user, group_a, import_dir, tmp_path):
    write_mbox(tmp_path / "elsewhere.mbox", [lf(mail("not for the web page"))])
    (import_dir / "link.mbox").symlink_to(tmp_path / "elsewhere.mbox")
    client.force_login(admin_user)

    response = client.post(reverse("mailsources:import"), start_data("link.mbox", group_a))

    assert response.status_code == 400 and "is not inside the import directory" in response.content.decode()
    assert not MailSource.objects.exists()


def test_an_uploaded_mbox_is_imported(client, admin_user, group_a, import_dir, tmp_path):
    write_mbox(tmp_path / "x.mbox", [lf(mail("uploaded one")), lf(mail("uploaded two"))])
    client.force_login(admin_user)
    upload = SimpleUploadedFile("My Inbox.mbox", (tmp_path / "x.mbox").read_bytes())

    response = client.post(
        reverse("mailsources:import-upload"),
        {"upload-file": upload, "upload-mailbox": "alice@example.com", "upload-owner_group": group_a.pk},
    )

    source = MailSource.objects.get(kind=SourceKind.IMPORT)
    assert response.status_code == 302
    stored = Path(source.import_path)
    assert stored.parent == import_dir / "uploads" and stored.name.endswith("My_Inbox.mbox")
    tasks.sync_source(source.pk)
    assert set(Document.objects.values_list("title", flat=True)) == {"uploaded one", "uploaded two"}


def test_uploads_that_are_no_archive_or_too_large_are_refused_clearly(
    client, admin_user, group_a, import_dir, settings
):
    client.force_login(admin_user)
    data = {"upload-mailbox": "alice@example.com", "upload-owner_group": group_a.pk}

    response = client.post(
        reverse("mailsources:import-upload"), {**data, "upload-file": SimpleUploadedFile("a.exe", b"MZ")}
    )
    assert response.status_code == 400 and "is no mail archive this page takes" in response.content.decode()

    settings.MAX_UPLOAD_BYTES = 100
    big = SimpleUploadedFile("big.mbox", b"From x\n" + b"y" * 500)
    response = client.post(reverse("mailsources:import-upload"), {**data, "upload-file": big})
    assert response.status_code == 413 and "too large" in response.content.decode()
    assert not MailSource.objects.exists() and not (import_dir / "uploads").exists()


def test_the_import_pages_are_for_administrators_only(client, alice, import_dir):
    client.force_login(alice)
    assert client.get(reverse("mailsources:import")).status_code == 403
    assert client.post(reverse("mailsources:import-upload")).status_code == 403
