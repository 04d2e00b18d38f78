"""A real Celery worker (solo pool) for tests/mailsources/test_worker_kill.py,
run as its own process: ``python -m tests.mailsources.celery_worker``.

The environment says where everything is (``DATABASE_URL``: the test database,
``CELERY_BROKER_URL``: Redis, ``STORAGE_DIR``) and, for the test:

- ``WORKER_QUEUE``: the only queue it consumes, also its default queue, so the
  tasks it enqueues itself (mail processing) stay within this test; text
  extraction's go to a parked queue next to it;
- ``WORKER_NAME``: its node name;
- ``WORKER_BATCH_SIZE``: mails per IMAP batch (to see batch boundaries);
- ``WORKER_PAUSE_AT_CURSOR_WRITE`` / ``WORKER_PAUSE_MARKER``: on the n-th write
  of a folder cursor — inside a batch's transaction, everything else of the
  batch written, not committed — create the marker file and hang there until
  the test kills the process;
- ``WORKER_PAUSE_AT_TABLE``: the same at the n-th write of another table instead
  (``archive_documentfile``: inside mail processing's transaction).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webadmin.settings")

import django  # noqa: E402

django.setup()

from mailsources import services  # noqa: E402
from tests.mailsources.kill_points import pause_at_write  # noqa: E402
from webadmin.celery import app  # noqa: E402


def small_batches(size: int) -> None:
    real = services.client_for_source

    def factory(source: Any, mailbox: str = "") -> Any:
        client = real(source, mailbox)
        client.batch_size = size
        return client

    services.client_for_source = factory  # tasks.sync_source looks it up at call time


def main() -> None:
    queue = os.environ["WORKER_QUEUE"]
    app.conf.task_default_queue = queue
    # Text extraction is not this test's subject: park its tasks unconsumed
    # (removed with the queue afterwards) instead of spending seconds on them.
    app.conf.task_routes = {"archive.tasks.*": {"queue": f"{queue}-extraction-parked"}}
    app.conf.worker_enable_remote_control = False
    if os.environ.get("WORKER_BATCH_SIZE"):
        small_batches(int(os.environ["WORKER_BATCH_SIZE"]))
    if os.environ.get("WORKER_PAUSE_AT_CURSOR_WRITE"):
        pause_at_write(
            os.environ.get("WORKER_PAUSE_AT_TABLE", "mailsources_foldercursor"),
            int(os.environ["WORKER_PAUSE_AT_CURSOR_WRITE"]),
            Path(os.environ["WORKER_PAUSE_MARKER"]),
        )
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--queues",
            queue,
            "--hostname",
            os.environ["WORKER_NAME"],
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--loglevel=INFO",
        ]
    )


if __name__ == "__main__":
    main()
