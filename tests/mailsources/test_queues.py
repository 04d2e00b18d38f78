"""Separate queues: syncs never wait behind derived work.

Routing comes from settings (CELERY_TASK_ROUTES); `make run` and the README start
one worker for "sync" and one for "processing,extraction". With real workers
(`celery -A webadmin worker --queues=…`, the command `make run` uses) on a Redis of
the test's own: a sync completes while 1,000 extraction tasks wait; the source page
says "queued since …" until a sync worker takes the run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from kombu import Connection
from kombu import pools as kombu_pools

from archive import storage
from archive import tasks as archive_tasks
from archive.models import Document, DocumentFile, ExtractionStatus, FileRole
from mailsources import tasks
from mailsources.models import MailSource, RunStatus, SourceStatus
from tests.mailsources.imap_pipeline import archived_raws, mail, server_messages, sync
from tests.mailsources.test_worker_kill import REPO, Worker, wait_for, worker_database_url
from webadmin.celery import app

QUEUES = {"sync", "processing", "extraction"}


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """`redis-server` on a loopback port of its own, no persistence; killable."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(answers, "the private Redis to answer", [])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def private_redis_server(folder: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(folder)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    yield from private_redis_server(tmp_path)


def _reset_broker_pools() -> None:
    # The app keeps a connection (and producer) pool for its broker, from kombu's
    # global pools (keyed by the connection's parameters): a new URL needs new ones.
    kombu_pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """This process's Celery app publishes to ``url`` (as a web process configured so would)."""
    saved = (app.conf.broker_url, app.conf.broker_transport_options)
    app.conf.broker_url, app.conf.broker_transport_options = url, {}
    _reset_broker_pools()
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = saved
        _reset_broker_pools()


@pytest.fixture
def start_queue_worker(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """start(broker_url, queues) -> the real `celery -A webadmin worker --queues=…` on the test database."""
    workers: list[Worker] = []

    def start(broker_url: str, queues: str, data_dir: Path | None = None) -> Worker:
        name = queues.replace(",", "-")
        log_path = tmp_path / f"worker-{name}.log"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webadmin.settings",
            "DATABASE_URL": worker_database_url(),
            "CELERY_BROKER_URL": broker_url,
            "STORAGE_DIR": str(settings.STORAGE_DIR),
            "SOURCE_SECRET_KEY": settings.SOURCE_SECRET_KEY,
            "DATA_DIR": str(data_dir or tmp_path / f"data-{name}"),
            "PYTHONPATH": str(REPO),
        }
        command = [sys.executable, "-m", "celery", "-A", "webadmin", "worker", f"--queues={queues}"]
        command += [f"--hostname={name}@%h", "--pool=solo", "--without-mingle", "--without-gossip"]
        command += ["--without-heartbeat", "--loglevel=INFO"]
        worker = Worker.start(command, environment, log_path)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill()


def queue_length(server: PrivateRedis, queue: str) -> int:
    return int(server.client().llen(queue))


# --------------------------------------------------------------------------- routing


def our_tasks() -> list[str]:
    app.loader.import_default_modules()  # what a worker imports at start (autodiscovery)
    return sorted(name for name in app.tasks if name.split(".", 1)[0] in {"archive", "mailsources", "webadmin"})


def test_every_task_of_the_product_goes_to_one_of_the_three_queues():
    routed = {name: app.amqp.router.route({}, name)["queue"].name for name in our_tasks()}
    assert set(routed.values()) <= QUEUES, routed
    assert routed["mailsources.tasks.sync_source"] == "sync"
    assert routed["mailsources.tasks.dispatch_due_sources"] == "sync"
    # Only syncs on "sync": nothing derived can get in front of a run.
    assert {name for name, queue in routed.items() if queue == "sync"} == {
        "mailsources.tasks.sync_source",
        "mailsources.tasks.dispatch_due_sources",
    }
    for name, queue in routed.items():
        if "extract" in name.rsplit(".", 1)[1]:
            assert queue == "extraction", name
        if name.endswith(".process_mail_documents"):
            assert queue == "processing", name
    # Every beat entry's task exists and goes to a queue.
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in routed


def test_make_run_starts_a_sync_only_worker_and_one_for_derived_work():
    script = (REPO / "scripts" / "run.sh").read_text()
    served = [set(q.split(",")) for q in re.findall(r"worker --queues=([\w,]+)", script)]
    assert {"sync"} in served
    assert {"processing", "extraction"} in served
    assert set().union(*served) == QUEUES
    readme = (REPO / "README.md").read_text()
    assert "--queues=sync " in readme and "--queues=processing,extraction " in readme


# --------------------------------------------------------------------------- queued since


def test_sync_now_marks_the_source_queued_until_a_run_starts(admin_client, imap_source, imap_mailbox):
    imap_mailbox.append_many("INBOX", [mail("one")])
    response = admin_client.post(reverse("mailsources:sync", args=[imap_source.pk]), follow=True)
    assert "Sync queued" in response.content.decode()
    imap_source.refresh_from_db()
    queued_at = imap_source.queued_at
    assert queued_at is not None and imap_source.status == SourceStatus.IDLE

    page = admin_client.get(reverse("mailsources:detail", args=[imap_source.pk])).content.decode()
    assert "queued since" in page
    assert "queued since" in admin_client.get(reverse("mailsources:list")).content.decode()
    progress = admin_client.get(reverse("mailsources:progress", args=[imap_source.pk])).json()
    assert progress["queued"].startswith("queued since ")

    # A second press does not restart the clock.
    admin_client.post(reverse("mailsources:sync", args=[imap_source.pk]))
    imap_source.refresh_from_db()
    assert imap_source.queued_at == queued_at

    tasks.sync_source(imap_source.pk)  # a worker takes the run

    imap_source.refresh_from_db()
    assert imap_source.queued_at is None and imap_source.runs.get().status == RunStatus.OK
    page = admin_client.get(reverse("mailsources:detail", args=[imap_source.pk])).content.decode()
    assert "queued since" not in page
    progress = admin_client.get(reverse("mailsources:progress", args=[imap_source.pk])).json()
    assert progress["queued"] == "" and progress["run"]["done"] == 1


def test_the_dispatcher_marks_what_it_enqueues_as_queued(imap_source):
    past = timezone.now() - timedelta(minutes=1)
    MailSource.objects.filter(pk=imap_source.pk).update(next_run_at=past)
    tasks.dispatch_due_sources()
    imap_source.refresh_from_db()
    assert imap_source.queued_at is not None


def test_with_the_broker_down_the_dispatcher_leaves_the_source_due_for_the_next_tick(imap_source):
    past = timezone.now() - timedelta(minutes=1)
    MailSource.objects.filter(pk=imap_source.pk).update(next_run_at=past)
    with celery_broker(f"redis://127.0.0.1:{free_port()}/0"):
        tasks.dispatch_due_sources()
    imap_source.refresh_from_db()
    assert imap_source.queued_at is None
    assert imap_source.next_run_at is not None and imap_source.next_run_at <= timezone.now()


def test_with_the_broker_down_sync_now_says_so_and_nothing_looks_queued(admin_client, imap_source):
    port = free_port()  # nothing listens there
    with celery_broker(f"redis://127.0.0.1:{port}/0"):
        response = admin_client.post(reverse("mailsources:sync", args=[imap_source.pk]), follow=True)
    assert "task queue is unavailable" in response.content.decode()
    imap_source.refresh_from_db()
    assert imap_source.queued_at is None


# --------------------------------------------------------------------------- real workers


def test_a_sync_completes_while_1000_extraction_tasks_wait(
    admin_client, imap_mailbox, imap_source_factory, make_document, private_redis, start_queue_worker
):
    raws = [mail(f"order {i}", attachment=(f"order-{i}.csv", f"{i};EUR\n".encode())) for i in range(5)]
    imap_mailbox.append_many("INBOX", raws)
    held = server_messages(imap_mailbox)
    source = imap_source_factory(imap_mailbox)
    document = make_document(b"an uploaded text file\n", name="note.txt")
    DocumentFile.objects.filter(document=document).update(extraction_status=ExtractionStatus.PENDING)

    with celery_broker(private_redis.url), Connection(private_redis.url) as broker:
        # A backlog of derived work, as after a big first sync.
        with broker.Producer() as producer:
            for _ in range(1000):
                archive_tasks.extract_document.apply_async((document.pk,), producer=producer)
        admin_client.post(reverse("mailsources:sync", args=[source.pk]))
    assert queue_length(private_redis, "extraction") == 1000
    assert queue_length(private_redis, "sync") == 1

    # Before any worker takes it, the page says how long the run has been waiting.
    page = admin_client.get(reverse("mailsources:detail", args=[source.pk])).content.decode()
    assert "queued since" in page
    assert admin_client.get(reverse("mailsources:progress", args=[source.pk])).json()["run"] is None

    sync_worker = start_queue_worker(private_redis.url, "sync")

    def run_ended() -> bool:  # closed, then (last of all) the lease released
        released = MailSource.objects.filter(pk=source.pk, lease_owner="").exists()
        return released and source.runs.filter(finished__isnull=False).exists()

    wait_for(run_ended, "a finished run", [sync_worker])

    # The run finished while every extraction task still waits: nothing derived was in front.
    run = source.runs.get()
    assert (run.status, run.new, run.done) == (RunStatus.OK, 5, 5), run.errors
    assert queue_length(private_redis, "extraction") == 1000
    assert queue_length(private_redis, "processing") >= 1  # the new mails' processing, queued
    assert sorted(archived_raws(source)) == sorted(held.values())
    source.refresh_from_db()
    assert source.queued_at is None and source.status == SourceStatus.OK
    progress = admin_client.get(reverse("mailsources:progress", args=[source.pk])).json()
    assert progress["queued"] == "" and progress["run"]["done"] == 5

    # The worker for derived work drains both queues: mails processed, text extracted.
    derived_worker = start_queue_worker(private_redis.url, "processing,extraction")

    def drained() -> bool:
        processed = DocumentFile.objects.filter(role=FileRole.ATTACHMENT).values("document").distinct().count()
        note = DocumentFile.objects.get(document=document)
        return (
            processed == 5
            and note.extraction_status == ExtractionStatus.DONE
            and queue_length(private_redis, "extraction") == 0
            and queue_length(private_redis, "processing") == 0
        )

    wait_for(drained, "processing and extraction drained", [sync_worker, derived_worker])
    assert Document.objects.count() == 6
    assert storage.exists(DocumentFile.objects.get(document=document).sha256)
    assert sync(source) is not None  # the lease was released


def test_make_runs_filesystem_broker_keeps_the_queues_apart(
    admin_client, imap_mailbox, imap_source_factory, make_document, start_queue_worker
):
    """`make run` has no Redis: kombu's filesystem broker, one file per message, named
    after its queue. A sync-only worker on it takes the sync and leaves derived work."""
    assert settings.CELERY_BROKER_URL == "filesystem://"
    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    for stale in folder.glob("*.sync.msg"):  # runs other tests asked for, of sources long gone
        stale.unlink()
    imap_mailbox.append_many("INBOX", [mail("via the filesystem broker")])
    source = imap_source_factory(imap_mailbox)
    document = make_document(b"waits for extraction\n", name="waiting.txt")
    waiting = archive_tasks.extract_document.delay(document.pk).id
    admin_client.post(reverse("mailsources:sync", args=[source.pk]))

    def messages(queue: str) -> list[tuple[str, str]]:
        """(task name, task id) of the messages waiting on ``queue``."""
        found = []
        for path in folder.iterdir():
            if path.name.endswith(f".{queue}.msg"):
                headers = json.loads(path.read_text())["headers"]
                found.append((headers["task"], headers["id"]))
        return found

    assert ("archive.tasks.extract_document", waiting) in messages("extraction")
    assert "mailsources.tasks.sync_source" in {task for task, _ in messages("sync")}

    # The worker shares the broker folder (DATA_DIR) with this "web process".
    worker = start_queue_worker("filesystem://", "sync", data_dir=Path(settings.DATA_DIR))

    def run_ended() -> bool:
        released = MailSource.objects.filter(pk=source.pk, lease_owner="").exists()
        return released and source.runs.filter(finished__isnull=False).exists()

    wait_for(run_ended, "a finished run", [worker])
    run = source.runs.get()
    assert (run.status, run.new) == (RunStatus.OK, 1), run.errors
    assert ("archive.tasks.extract_document", waiting) in messages("extraction")  # left alone
    assert "mailsources.tasks.process_mail_documents" in {task for task, _ in messages("processing")}
    assert messages("sync") == []
