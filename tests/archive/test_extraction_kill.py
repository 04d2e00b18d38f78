"""A real Celery worker on a private Redis, SIGKILLed while it extracts a file
(its attempt claimed, the extractor's text in hand, nothing written): the file
stays pending with that attempt counted; the sweep (on a clock the test moves)
re-queues it, and a new worker brings every file to "done", its text
searchable, each attempt counted once and nothing extracted twice. On the
configured database: run on SQLite and on MariaDB."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from archive import extraction, search
from archive.models import DocumentFile, ExtractionStatus
from tests.mailsources.test_queues import PrivateRedis, celery_broker, private_redis_server, queue_length
from tests.mailsources.test_worker_kill import REPO, Worker, wait_for, worker_database_url

WORDS = ["quokka", "narwhal", "axolotl", "pangolin"]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of this test's own: the real queue names, no other test's messages."""
    yield from private_redis_server(tmp_path)


@pytest.fixture
def start_extraction_worker(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """start(name, broker_url, **env) -> a real worker of the extraction queue on the test database."""
    workers: list[Worker] = []

    def start(name: str, broker_url: str, **env: str) -> Worker:
        log_path = tmp_path / f"{name}.log"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webadmin.settings",
            "DATABASE_URL": worker_database_url(),
            "CELERY_BROKER_URL": broker_url,
            "STORAGE_DIR": str(settings.STORAGE_DIR),
            "SOURCE_SECRET_KEY": settings.SOURCE_SECRET_KEY,
            "DATA_DIR": str(tmp_path / f"data-{name}"),
            "WORKER_NAME": f"{name}@%h",
            "PYTHONPATH": str(REPO),
            **env,
        }
        worker = Worker.start(["tests.archive.extraction_worker"], environment, log_path)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill()


def file_name(word: str) -> str:
    """Not the word itself: the name is indexed (as the title) before any text is."""
    return f"note-{WORDS.index(word)}.txt"


def files_by_word() -> dict[str, DocumentFile]:
    by_name = {f.name: f for f in DocumentFile.objects.all()}
    return {word: by_name[file_name(word)] for word in WORDS}


def test_a_worker_killed_while_extracting_loses_no_file_and_doubles_no_attempt(
    alice, make_document, private_redis: PrivateRedis, start_extraction_worker, tmp_path
):
    with celery_broker(private_redis.url):  # the uploads enqueue their extraction, as in production
        documents = {word: make_document(f"Delivery note: {word}.\n".encode(), name=file_name(word)) for word in WORDS}
    assert queue_length(private_redis, "extraction") == len(WORDS)
    assert {f.extraction_status for f in files_by_word().values()} == {ExtractionStatus.PENDING}

    # Worker A extracts the first file, then is killed in the second one's attempt.
    marker = tmp_path / "extraction-paused"
    worker_a = start_extraction_worker(
        "worker-a", private_redis.url, WORKER_PAUSE_AT_EXTRACTION="2", WORKER_PAUSE_MARKER=str(marker)
    )
    wait_for(marker.exists, "the pause inside the second file's extraction", [worker_a])
    killed = marker.read_text()
    worker_a.kill()

    files = files_by_word()
    first, second = WORDS[0], WORDS[1]  # the queue's order: the uploads' order
    assert killed == file_name(second)
    assert (files[first].extraction_status, files[first].extraction_attempts) == (ExtractionStatus.DONE, 1)
    assert (files[second].extraction_status, files[second].extraction_attempts, files[second].text) == (
        ExtractionStatus.PENDING,
        1,
        "",
    )
    for word in WORDS[2:]:
        assert (files[word].extraction_status, files[word].extraction_attempts) == (ExtractionStatus.PENDING, 0)
    assert list(search.search_documents(alice, first).documents) == [documents[first]]
    assert not search.search_documents(alice, second).documents.exists()
    # The killed task's message is unacknowledged until Redis' visibility timeout (1 h):
    # only the two never started wait on the queue.
    assert queue_length(private_redis, "extraction") == 2

    # Now: the sweep leaves files in their first half hour alone; later it re-queues the waiting ones.
    with celery_broker(private_redis.url):
        assert extraction.extraction_sweep(now=timezone.now()) == 0
        assert extraction.extraction_sweep(now=timezone.now() + timedelta(minutes=31)) == 3
    assert queue_length(private_redis, "extraction") == 2 + 3

    worker_b = start_extraction_worker("worker-b", private_redis.url)

    def all_done() -> bool:
        statuses = set(DocumentFile.objects.values_list("extraction_status", flat=True))
        return statuses == {ExtractionStatus.DONE} and queue_length(private_redis, "extraction") == 0

    wait_for(all_done, "every file extracted and the queue drained", [worker_b])
    worker_b.kill()

    # Each file once, with its own text; the killed attempt counted, no other attempt doubled.
    files = files_by_word()
    assert len(files) == len(WORDS) == DocumentFile.objects.count()
    for word in WORDS:
        assert files[word].text.strip() == f"Delivery note: {word}.", word
        assert files[word].extraction_error == ""
        assert files[word].extraction_attempts == (2 if word == second else 1), word
        assert list(search.search_documents(alice, word).documents) == [documents[word]]
    # A later sweep has nothing left to do.
    with celery_broker(private_redis.url):
        assert extraction.extraction_sweep(now=timezone.now() + timedelta(hours=2)) == 0


def extractor_children(root: int) -> list[int]:
    """The sandboxed extractor processes below ``root`` (archive.extraction_pool)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == root and b"archive.extractors\0--serve" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_a_worker_shut_down_leaves_no_extractor_process_or_zombie(
    alice, make_document, private_redis: PrivateRedis, start_extraction_worker
):
    with celery_broker(private_redis.url):
        document = make_document(b"Delivery note: quokka.\n", name=file_name("quokka"))
    worker = start_extraction_worker("worker-c", private_redis.url)
    wait_for(
        lambda: DocumentFile.objects.filter(extraction_status=ExtractionStatus.DONE).exists(),
        "the file extracted",
        [worker],
    )
    assert list(search.search_documents(alice, "quokka").documents) == [document]
    children = extractor_children(worker.process.pid)  # solo pool: the worker process's own child
    assert len(children) == 1

    worker.process.send_signal(signal.SIGTERM)  # a warm shutdown, as systemd stops it
    worker.process.wait(timeout=60)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
