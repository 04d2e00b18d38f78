"""A real Celery worker on Redis, killed with SIGKILL in the middle of a run:
the committed batches stay, the open one vanishes, the lease keeps others
out until it expires, and the rerun completes with nothing lost or doubled.
Killed during mail processing: its claim goes stale, the sweep takes it back
and another worker processes every mail once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from kombu import Connection

from archive import tasks as archive_tasks
from archive.models import Document, DocumentFile, FileRole, ProcessingStatus
from mailsources import tasks
from mailsources.models import ArchivedMail, FolderCursor, MailLocation, MailSource, RunStatus, SourceStatus
from tests.mailsources.imap_pipeline import archived_raws, mail, server_messages, sync

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REPO = Path(__file__).resolve().parents[2]
DEADLINE = 180.0  # seconds: a deadline for failing, never waited out on success (a private MariaDB restarted after
# SIGKILL runs crash recovery first, which took over 60 s once on a loaded 2-core machine)


def worker_database_url() -> str:
    """The test database (not the configured one) as a DATABASE_URL for the worker."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        name = str(db["NAME"])
        assert Path(name).is_file(), f"the SQLite test database must be a file to share it: {name}"
        return f"sqlite:///{name}"
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"mysql://{user}{password}@{db['HOST'] or '127.0.0.1'}{port}/{db['NAME']}"


def wait_for(condition: Callable[[], bool], what: str, workers: list[Any]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(f"the worker exited while waiting for {what}:\n{worker.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE:g} s:\n" + "\n".join(w.log() for w in workers))
        time.sleep(0.05)  # polling a condition, not waiting for time to pass


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @classmethod
    def start(cls, command: list[str], environment: dict[str, str], log_path: Path) -> Worker:
        """``command`` (a list, or the module after ``python -m`` as a one-item list) in
        the repository, in a process group of its own (``kill`` ends all of it), its
        output in ``log_path``; the test database name is the parent's business."""
        environment = {k: v for k, v in environment.items() if k != "TEST_DATABASE_NAME"}
        if len(command) == 1:
            command = [sys.executable, "-m", command[0]]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return cls(process, log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, the whole process group (nothing may linger)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def redis_queue() -> Iterator[str]:
    """A queue of its own on the test Redis; everything about it removed afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"the test needs Redis at {REDIS_URL} (TEST_REDIS_URL): {exc}", pytrace=False)
    queue = f"webadmin-test-worker-kill-{uuid.uuid4().hex}"
    yield queue
    for key in client.scan_iter(match=f"*{queue}*"):
        client.delete(key)
    # A killed worker's unacknowledged message waits in kombu's shared "unacked" hash.
    for tag, payload in client.hgetall("unacked").items():
        with_routing = json.loads(payload)
        if queue in (with_routing[-1], with_routing[-2]):
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


@pytest.fixture
def start_worker(transactional_db: None, redis_queue: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """start(name, **env) -> a running worker process on the test database."""
    workers: list[Worker] = []

    def start(name: str, **env: str) -> Worker:
        log_path = tmp_path / f"{name}.log"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webadmin.settings",
            "DATABASE_URL": worker_database_url(),
            "CELERY_BROKER_URL": REDIS_URL,
            "STORAGE_DIR": str(settings.STORAGE_DIR),
            "SOURCE_SECRET_KEY": settings.SOURCE_SECRET_KEY,
            "WORKER_QUEUE": redis_queue,
            # Longer than lease_owner's 64 characters together with a task id.
            "WORKER_NAME": f"{name}-with-a-long-node-name-as-real-deployments-have@%h",
            "LOG_LEVEL": "INFO",
            "PYTHONPATH": str(REPO),
            **env,
        }
        worker = Worker.start(["tests.mailsources.celery_worker"], environment, log_path)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill()


def enqueue(queue: str, task: Any, *args: Any) -> None:
    """Send a task message to the test queue on Redis, as the dispatcher or "Sync now" do."""
    with Connection(REDIS_URL) as broker:
        task.apply_async(args, connection=broker, queue=queue)


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(
    imap_mailbox, imap_source_factory, start_worker, redis_queue, tmp_path
):
    raws = [
        mail(f"invoice {i}", f"Invoice number {i}.", attachment=(f"invoice-{i}.csv", f"{i};CHF\n".encode()))
        for i in range(12)
    ]
    imap_mailbox.append_many("INBOX", raws)
    held = server_messages(imap_mailbox)
    source = imap_source_factory(imap_mailbox)
    marker = tmp_path / "worker-a-paused"

    # Batches of 5: the first is committed, the second hangs before its commit.
    worker_a = start_worker(
        "worker-a", WORKER_BATCH_SIZE="5", WORKER_PAUSE_AT_CURSOR_WRITE="2", WORKER_PAUSE_MARKER=str(marker)
    )
    enqueue(redis_queue, tasks.sync_source, source.pk)
    wait_for(marker.exists, "pause inside the second batch's transaction", [worker_a])
    worker_a.kill()

    # What survives is exactly the committed batch.
    assert Document.objects.count() == 5
    assert ArchivedMail.objects.count() == 5 and MailLocation.objects.count() == 5
    assert FolderCursor.objects.get(source=source).cursor["last_uid"] == 5
    dead_run = source.runs.get()
    assert (dead_run.status, dead_run.new, dead_run.finished) == (RunStatus.RUNNING, 5, None)
    source.refresh_from_db()
    assert source.status == SourceStatus.RUNNING and len(source.lease_owner) <= 64
    assert source.lease_until > timezone.now()

    # Until the dead worker's lease expires nobody else runs the source.
    assert sync(source) is None
    assert source.runs.count() == 1

    # The lease expires (the clock moves past it); the dispatcher finds the source due.
    past = timezone.now() - timedelta(seconds=1)
    MailSource.objects.filter(pk=source.pk).update(lease_until=past, next_run_at=past)
    worker_b = start_worker("worker-b", WORKER_BATCH_SIZE="5")
    enqueue(redis_queue, tasks.dispatch_due_sources)

    def finished_and_processed() -> bool:
        run = source.runs.order_by("-pk").first()
        processed = DocumentFile.objects.filter(role=FileRole.ATTACHMENT).values("document").distinct()
        return (
            run is not None
            and run.pk != dead_run.pk
            and run.finished is not None
            and (processed.count() == Document.objects.count())
        )

    wait_for(finished_and_processed, "a finished rerun with every mail processed", [worker_b])
    worker_b.kill()

    rerun = source.runs.order_by("-pk").first()
    assert (rerun.status, rerun.new, rerun.duplicate) == (RunStatus.OK, 7, 0), rerun.errors
    dead_run.refresh_from_db()
    assert dead_run.status == RunStatus.RETRY and "interrupted" in dead_run.errors
    # Nothing lost, nothing doubled: every mail once, byte for byte, with its attachment.
    assert sorted(archived_raws(source)) == sorted(held.values())
    assert Document.objects.count() == 12 and ArchivedMail.objects.count() == 12
    assert sorted(int(u) for u in MailLocation.objects.values_list("location", flat=True)) == sorted(held)
    for document in Document.objects.all():
        [attachment] = document.files.filter(role=FileRole.ATTACHMENT)
        assert attachment.name == f"invoice-{document.title.split()[1]}.csv"
    source.refresh_from_db()
    assert source.status == SourceStatus.OK and source.archived_count == 12
    assert source.lease_owner == "" and source.lease_until is None


def test_a_worker_killed_during_processing_leaves_a_claim_the_sweep_takes_back(
    imap_mailbox, imap_source_factory, start_worker, redis_queue, tmp_path
):
    raws = [
        mail(f"invoice {i}", f"Invoice number {i}.", attachment=(f"invoice-{i}.csv", f"{i};CHF\n".encode()))
        for i in range(6)
    ]
    imap_mailbox.append_many("INBOX", raws)
    source = imap_source_factory(imap_mailbox)
    # Archived; the processing task is never sent (as when Redis restarts empty).
    assert sync(source).new == 6
    ids = sorted(Document.objects.values_list("pk", flat=True))
    assert set(Document.objects.values_list("processing_status", flat=True)) == {ProcessingStatus.PENDING}

    # Worker A claims the documents and hangs inside the transaction recording their parts.
    marker = tmp_path / "processing-paused"
    worker_a = start_worker(
        "worker-a",
        WORKER_PAUSE_AT_TABLE="archive_documentfile",
        WORKER_PAUSE_AT_CURSOR_WRITE="1",
        WORKER_PAUSE_MARKER=str(marker),
    )
    enqueue(redis_queue, archive_tasks.process_mail_documents, ids)
    wait_for(marker.exists, "pause inside processing's transaction", [worker_a])
    worker_a.kill()

    assert not DocumentFile.objects.filter(role=FileRole.ATTACHMENT).exists()
    assert set(Document.objects.values_list("processing_status", flat=True)) == {ProcessingStatus.PROCESSING}

    # The clock moves past the stale threshold; the sweep (beat) runs on worker B.
    stale = timedelta(seconds=settings.MAIL_PROCESSING_STALE_SECONDS + 1)
    Document.objects.update(processing_updated=F("processing_updated") - stale)
    worker_b = start_worker("worker-b")
    enqueue(redis_queue, archive_tasks.processing_sweep)

    def all_processed() -> bool:
        statuses = set(Document.objects.values_list("processing_status", flat=True))
        return statuses == {ProcessingStatus.DONE}

    wait_for(all_processed, "every mail processed after the sweep", [worker_b])
    worker_b.kill()

    # Every mail with its attachment, once; each claim lost once.
    assert Document.objects.count() == 6
    for document in Document.objects.all():
        [attachment] = document.files.filter(role=FileRole.ATTACHMENT)
        assert attachment.name == f"invoice-{document.title.split()[1]}.csv"
        assert (document.processing_lost, document.processing_attempts, document.processing_error) == (1, 0, "")
