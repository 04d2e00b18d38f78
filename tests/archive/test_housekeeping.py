"""Housekeeping: temporary files of the store and of uploads older than the threshold
are swept on beat's schedule; orphan blobs are reported, never deleted. The clock is
the test's: file times set with os.utime, ``now`` passed in."""

from __future__ import annotations

import logging
import os
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.management import call_command

from archive import housekeeping, housekeeping_tasks, storage
from webadmin.celery import app

NOW = 2_000_000_000.0
HOUR = 3600.0


def aged(path: Path, seconds: float, content: bytes = b"leftover") -> Path:
    path.write_bytes(content)
    os.utime(path, (NOW - seconds, NOW - seconds))
    return path


@pytest.fixture
def upload_dir(settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "upload-tmp")
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()
    return Path(settings.FILE_UPLOAD_TEMP_DIR)


def staging_dir() -> Path:
    """Where the store stages its writes (``storage.put_*``)."""
    folder = Path(django_settings.STORAGE_DIR) / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_uploads_are_spooled_in_a_folder_of_their_own_under_the_data_dir():
    folder = Path(django_settings.FILE_UPLOAD_TEMP_DIR)
    assert folder.is_dir() and folder.is_relative_to(django_settings.DATA_DIR)


def test_temporary_files_older_than_the_threshold_are_swept_the_younger_kept(upload_dir):
    staging = staging_dir()
    old_blob = aged(staging / ".tmp-killed-writer", 25 * HOUR)
    young_blob = aged(staging / ".tmp-writing-now", 23 * HOUR)
    # What Django spools a large upload into (TemporaryUploadedFile, a name of its own).
    spooled = TemporaryUploadedFile("scan.pdf", "application/pdf", 0, None)
    spool_path = Path(spooled.temporary_file_path())
    assert spool_path.parent == upload_dir
    old_upload = aged(spool_path, 25 * HOUR, b"x" * 1000)
    young_upload = aged(upload_dir / "tmpyoung.upload.pdf", 1 * HOUR)
    not_an_upload = aged(upload_dir / "notes.txt", 1000 * HOUR)

    result = housekeeping.temporary_files_sweep(now=NOW)

    assert (result.store_files, result.upload_files, result.upload_bytes) == (1, 1, 1000)
    assert not old_blob.exists() and not old_upload.exists()
    assert young_blob.exists() and young_upload.exists() and not_an_upload.exists()
    spooled.close()


def test_the_threshold_is_a_setting(settings, upload_dir):
    staging = staging_dir()
    settings.TEMP_FILE_MAX_AGE_HOURS = 2
    three_hours = aged(staging / ".tmp-three-hours", 3 * HOUR)
    one_hour = aged(upload_dir / "tmpone.upload", 1 * HOUR)
    assert housekeeping.temporary_files_sweep(now=NOW).store_files == 1
    assert not three_hours.exists() and one_hour.exists()
    assert housekeeping.temporary_files_sweep(now=NOW + 1.5 * HOUR).upload_files == 1
    assert not one_hour.exists()


def test_housekeeping_is_scheduled_on_the_processing_queue():
    schedule = {entry["task"]: entry["schedule"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    for task in (housekeeping_tasks.temporary_files_sweep, housekeeping_tasks.orphan_blobs_report):
        assert task.name in schedule and task.name in app.tasks
        assert app.amqp.router.route({}, task.name)["queue"].name == "processing"
    assert schedule[housekeeping_tasks.temporary_files_sweep.name] == django_settings.HOUSEKEEPING_SECONDS


def test_the_scheduled_sweep_removes_what_is_old_by_the_real_clock(upload_dir):
    staging = staging_dir()
    ancient = staging / ".tmp-ancient"
    ancient.write_bytes(b"x")
    os.utime(ancient, (0, 0))  # 1970: older than any threshold
    fresh = staging / ".tmp-fresh"
    fresh.write_bytes(b"x")

    housekeeping_tasks.temporary_files_sweep()

    assert not ancient.exists() and fresh.exists()


@pytest.mark.django_db
def test_orphan_blobs_are_reported_and_kept(make_document, upload_dir, caplog):
    document = make_document(b"a referenced file\n")
    orphan = storage.put_bytes(b"stored, then its transaction never committed")
    staging = staging_dir()
    aged(staging / ".tmp-recent", 1 * HOUR, b"12345")

    report = housekeeping.store_report()

    referenced = document.files.get().sha256
    assert report.orphans == [(orphan.sha256, orphan.size)]
    assert report.blobs == 2
    assert (report.temporary_files, report.temporary_bytes) == (1, 5)
    with caplog.at_level(logging.WARNING, logger="archive.housekeeping"):
        housekeeping_tasks.orphan_blobs_report()
    assert any(orphan.sha256 in r.getMessage() and "orphan" in r.getMessage() for r in caplog.records)
    assert storage.verify(orphan.sha256) and storage.verify(referenced)  # nothing deleted


@pytest.mark.django_db
def test_an_archived_mails_blob_is_no_orphan(imap_source):
    from mailsources.models import ArchivedMail

    # Only the dedup row refers to it (its document's file points elsewhere).
    blob = storage.put_bytes(b"raw mail bytes")
    other = storage.put_bytes(b"the document's file")
    from archive import services

    document, _ = services.document_create_from_upload(
        name="x.txt", blob=other, content_type="text/plain", owner_group=imap_source.owner_group
    )
    ArchivedMail.objects.create(source=imap_source, mailbox="m", sha256=blob.sha256, document=document, size=blob.size)
    assert housekeeping.store_report().orphans == []


@pytest.mark.django_db
def test_storage_report_lists_orphans_and_deletes_nothing(make_document, upload_dir):
    make_document(b"referenced\n")
    orphans = sorted(storage.put_bytes(f"orphan {i}".encode()).sha256 for i in range(3))
    out = StringIO()
    call_command("storage_report", "--limit", "2", stdout=out)
    text = out.getvalue()
    assert "blobs: 4 " in text and "orphan blobs: 3 " in text
    assert orphans[0] in text and orphans[1] in text and orphans[2] not in text
    assert "and 1 more" in text
    assert all(storage.exists(sha) for sha in orphans)
