"""Mail processing is state in the database: pending, claimed, done or failed
(transiently, retried with backoff; permanently, saying what is wrong with the
mail). The sweep re-queues what waits too long, what a killed worker left
claimed and what is due for its retry — on a clock the test moves (``now``),
re-queued onto the real (filesystem) broker of the test settings. A full disk
(a small tmpfs as STORAGE_DIR; needs root) fails transiently; once space
returns, the sweep completes it."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from archive import processing
from archive.models import Document, DocumentFile, FileRole, ProcessingStatus
from tests.archive.mail_samples import archive_mail


def mail_with_attachment(name: str, payload: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = "alice@example.com"
    msg["Subject"] = name
    msg.set_content("See the attachment.")
    msg.add_attachment(payload, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes()


def pending_mail(group: Any, name: str, payload: bytes = b"1;CHF\n") -> Document:
    """A mail as ingestion leaves it: archived, its processing pending."""
    document = archive_mail(mail_with_attachment(name, payload), group)
    processing.processing_register([document.pk])
    document.refresh_from_db()
    return document


def queued_processing(*, take: bool = False) -> list[list[int]]:
    """The document ids of every processing task waiting on the broker's "processing"
    queue; ``take``: taken off the queue, as a worker would."""
    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    found = []
    for path in sorted(folder.glob("*.processing.msg")):
        message = json.loads(path.read_text())
        if message["headers"]["task"] != processing.PROCESS_TASK:
            continue
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        found.append(args[0])
        if take:
            path.unlink()
    return found


@pytest.fixture
def processing_queue() -> Iterator[None]:
    """The filesystem broker's processing queue, empty before and after."""
    assert settings.CELERY_BROKER_URL == "filesystem://"
    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])

    def clear() -> None:
        for path in folder.glob("*.processing.msg"):
            path.unlink()

    clear()
    yield
    clear()


def status(document: Document) -> tuple[str, int, int]:
    document.refresh_from_db()
    return document.processing_status, document.processing_attempts, document.processing_lost


def attachments(document: Document) -> list[str]:
    return list(document.files.filter(role=FileRole.ATTACHMENT).values_list("name", flat=True))


def test_processing_records_done_and_a_rerun_adds_nothing(group_a):
    document = pending_mail(group_a, "invoice.csv")
    assert status(document) == (ProcessingStatus.PENDING, 0, 0)

    outcomes = processing.mail_documents_process([document.pk])

    assert outcomes == {document.pk: processing.DONE}
    assert status(document) == (ProcessingStatus.DONE, 0, 0)
    assert attachments(document) == ["invoice.csv"]
    # Redelivered, or queued again by the sweep: nothing is done twice.
    Document.objects.filter(pk=document.pk).update(processing_status=ProcessingStatus.PENDING)
    processing.mail_documents_process([document.pk])
    assert attachments(document) == ["invoice.csv"]
    assert status(document)[0] == ProcessingStatus.DONE


def test_a_live_claim_is_left_alone(group_a):
    document = pending_mail(group_a, "claimed.csv")
    claimed_at = timezone.now()
    assert processing._claim([document.pk], claimed_at) == [document.pk]
    # Another worker holding the same task: the document is claimed, it does nothing.
    assert processing._claim([document.pk], claimed_at) == []
    assert processing.mail_documents_process([document.pk]) == {}
    assert attachments(document) == []
    assert status(document) == (ProcessingStatus.PROCESSING, 1, 0)


def test_the_sweep_requeues_pending_mail_only_after_its_threshold(group_a, processing_queue, settings):
    settings.MAIL_PROCESSING_PENDING_SECONDS = 600
    document = pending_mail(group_a, "lost-message.csv")
    registered = document.processing_updated

    # Its task is lost (Redis restarted empty): nothing in the queue, the row says pending.
    assert processing.processing_sweep(now=registered + timedelta(seconds=599)).requeued == []
    assert queued_processing() == []

    later = registered + timedelta(seconds=601)
    assert processing.processing_sweep(now=later).requeued == [document.pk]
    assert queued_processing() == [[document.pk]]
    # Re-queued once per threshold, not at every tick.
    assert processing.processing_sweep(now=later + timedelta(seconds=60)).requeued == []
    assert processing.processing_sweep(now=later + timedelta(seconds=601)).requeued == [document.pk]

    first, second = queued_processing(take=True)
    processing.mail_documents_process(first)  # what the worker does with it
    processing.mail_documents_process(second)  # a no-op
    assert status(document) == (ProcessingStatus.DONE, 0, 0)
    assert processing.processing_sweep(now=later + timedelta(days=1)).requeued == []


def test_a_claim_lost_with_its_worker_is_taken_back_and_a_mail_that_kills_every_worker_fails(
    group_a, processing_queue, settings
):
    settings.MAIL_PROCESSING_STALE_SECONDS = 900
    settings.MAIL_PROCESSING_MAX_LOST = 2
    document = pending_mail(group_a, "killer.csv")
    claimed_at = timezone.now()
    processing._claim([document.pk], claimed_at)  # then the worker is SIGKILLed

    assert processing.processing_sweep(now=claimed_at + timedelta(seconds=899)).requeued == []
    swept = processing.processing_sweep(now=claimed_at + timedelta(seconds=901))
    assert (swept.lost, swept.requeued) == ([document.pk], [document.pk])
    assert status(document) == (ProcessingStatus.PENDING, 1, 1)

    # Claimed again, and killed again: the second loss is the last one.
    second = claimed_at + timedelta(seconds=1000)
    processing._claim([document.pk], second)
    swept = processing.processing_sweep(now=second + timedelta(seconds=901))
    assert swept.given_up == [document.pk] and swept.requeued == []
    document.refresh_from_db()
    assert document.processing_status == ProcessingStatus.FAILED_PERMANENT
    assert "did not finish in 2 attempts" in document.processing_error
    assert "worker was killed" in document.processing_error


def test_a_late_outcome_of_a_claim_taken_back_is_not_recorded(group_a):
    document = pending_mail(group_a, "late.csv")
    first = timezone.now() - timedelta(hours=1)
    processing._claim([document.pk], first)
    processing.processing_sweep(now=first + timedelta(hours=1))  # stale: taken back, re-queued
    processing.mail_documents_process([document.pk])  # another worker completes it
    assert status(document)[0] == ProcessingStatus.DONE
    # The first worker was not dead after all, only slow: its outcome is stale.
    processing._record({document.pk: processing.Outcome(ProcessingStatus.FAILED_TRANSIENT, "late")}, first)
    assert status(document)[0] == ProcessingStatus.DONE
    assert attachments(document) == ["late.csv"]


def test_a_permanent_failure_says_what_is_wrong_with_the_mail(group_a, settings):
    settings.MAIL_MAX_MESSAGE_BYTES = 2048
    document = pending_mail(group_a, "big.bin", os.urandom(4000))

    processing.mail_documents_process([document.pk])

    document.refresh_from_db()
    assert document.processing_status == ProcessingStatus.FAILED_PERMANENT
    assert "over the limit of 2048 bytes (MAIL_MAX_MESSAGE_BYTES)" in document.processing_error
    assert processing.processing_sweep(now=timezone.now() + timedelta(days=1)).requeued == []


@pytest.fixture
def small_disk(mount_small_disk: Callable[[str], Path]) -> Path:
    return mount_small_disk("384k")


def test_a_full_disk_fails_transiently_and_the_sweep_completes_it_once_space_returns(
    group_a, small_disk, processing_queue, settings
):
    settings.MAIL_PROCESSING_RETRY_SECONDS = 60
    # Three raw mails (~55 KiB each) fit; their attachments (~40 KiB each) do not, too.
    documents = [pending_mail(group_a, f"scan-{i}.bin", os.urandom(40_000)) for i in range(3)]
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * max(0, free - 60_000))  # room for one attachment, not three
    ids = [d.pk for d in documents]

    outcomes = processing.mail_documents_process(ids)

    assert {o.status for o in outcomes.values()} == {ProcessingStatus.FAILED_TRANSIENT}
    for document in documents:
        document.refresh_from_db()
        assert document.processing_status == ProcessingStatus.FAILED_TRANSIENT
        assert document.processing_error.startswith("disk full: [Errno 28]"), document.processing_error
        assert document.parse_error == ""  # not the mail's fault
        assert attachments(document) == []
    failed_at = documents[0].processing_updated

    # Backoff: not before MAIL_PROCESSING_RETRY_SECONDS; the disk is still full then.
    assert processing.processing_sweep(now=failed_at + timedelta(seconds=59)).requeued == []
    swept = processing.processing_sweep(now=failed_at + timedelta(seconds=61))
    assert swept.requeued == ids
    [task] = queued_processing(take=True)
    processing.mail_documents_process(task)
    assert {status(d)[:2] for d in documents} == {(ProcessingStatus.FAILED_TRANSIENT, 2)}

    # Space returns; the next retry waits twice as long, then completes everything once.
    filler.unlink()
    retry = Document.objects.get(pk=ids[0]).processing_updated
    assert processing.processing_sweep(now=retry + timedelta(seconds=119)).requeued == []
    assert processing.processing_sweep(now=retry + timedelta(seconds=121)).requeued == ids
    [task] = queued_processing(take=True)
    processing.mail_documents_process(task)
    for i, document in enumerate(documents):
        assert status(document) == (ProcessingStatus.DONE, 0, 0)
        assert attachments(document) == [f"scan-{i}.bin"]
    assert DocumentFile.objects.filter(role=FileRole.ATTACHMENT).count() == 3
