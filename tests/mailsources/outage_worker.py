"""A real Celery worker (solo pool, the "sync" queue) for the MariaDB outage test in
tests/mailsources/test_transient_errors.py: ``python -m tests.mailsources.outage_worker``.

The environment says where everything is (``DATABASE_URL``: a private MariaDB,
``CELERY_BROKER_URL``: a private Redis, ``STORAGE_DIR``) and, for the test:

- ``OUTAGE_BATCH_SIZE``: mails per IMAP batch;
- ``OUTAGE_MARIADB_PID`` / ``OUTAGE_AT_CURSOR_WRITE``: on the n-th write of a folder
  cursor — inside a batch's transaction, not committed — SIGKILL the MariaDB server,
  and go on (the commit meets a dead server);
- ``OUTAGE_MARKER``: created once the task has failed and its retry is being scheduled;
  the retry comes as soon as the database answers again (the test restarts it), instead
  of after the real backoff, so that the test waits for an outcome, not for time.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webadmin.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from mailsources import services, tasks  # noqa: E402
from webadmin.celery import app  # noqa: E402


def database_answers() -> bool:
    db = settings.DATABASES["default"]
    try:
        with socket.create_connection((db["HOST"], int(db["PORT"])), timeout=1) as s:
            return bool(s.recv(1))  # MariaDB greets first
    except OSError:
        return False


def kill_database_at_cursor_write(number: int, pid: int) -> None:
    writes = 0

    def kill_after(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal writes
        result = execute(sql, params, many, context)
        if "mailsources_foldercursor" in sql and sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            writes += 1
            if writes == number:
                os.kill(pid, signal.SIGKILL)
                while database_answers():  # gone once its port is closed
                    time.sleep(0.01)
        return result

    connection.execute_wrappers.append(kill_after)


def retry_once_the_database_answers(marker: Path) -> None:
    def countdown(retries: int, retry_after: float | None, *, jitter: float | None = None) -> float:
        marker.write_text("retry scheduled")
        deadline = time.monotonic() + 120
        while not database_answers() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the restart, not waiting for time to pass
        return 0.0

    tasks.retry_countdown = countdown  # type: ignore[assignment]  # the task looks it up per call


def small_batches(size: int) -> None:
    real = services.client_for_source

    def factory(source: Any, mailbox: str = "") -> Any:
        client = real(source, mailbox)
        client.batch_size = size
        return client

    services.client_for_source = factory  # type: ignore[assignment]


def main() -> None:
    small_batches(int(os.environ["OUTAGE_BATCH_SIZE"]))
    kill_database_at_cursor_write(int(os.environ["OUTAGE_AT_CURSOR_WRITE"]), int(os.environ["OUTAGE_MARIADB_PID"]))
    retry_once_the_database_answers(Path(os.environ["OUTAGE_MARKER"]))
    app.conf.worker_enable_remote_control = False
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--queues=sync",
            "--hostname=outage@%h",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--loglevel=INFO",
        ]
    )


if __name__ == "__main__":
    main()
