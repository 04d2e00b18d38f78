"""A real Celery worker (solo pool) of the "extraction" queue for
tests/archive/test_extraction_kill.py, run as its own process:
``python -m tests.archive.extraction_worker``. The environment says where
everything is (``DATABASE_URL``, ``CELERY_BROKER_URL``, ``STORAGE_DIR``) and, for
the test, where it stops: ``WORKER_PAUSE_AT_EXTRACTION=n`` /
``WORKER_PAUSE_MARKER``: in the n-th file's extraction, after the attempt was
claimed and the sandboxed extractor returned its text, before the result is
written, create the marker (holding the file's name) and hang there until the
test kills the process. Instrumentation of this test process only: the product
code is unchanged."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webadmin.settings")

import django  # noqa: E402

django.setup()

from archive import extraction  # noqa: E402
from webadmin.celery import app  # noqa: E402


def pause_in_extraction(number: int, marker: Path) -> None:
    real = extraction.run_sandboxed
    calls = 0

    def run_then_hang(path: str, content_type: str, name: str, skip_sha256: list[str] | None = None) -> Any:
        nonlocal calls
        outcome = real(path, content_type, name, skip_sha256)
        calls += 1
        if calls == number:
            marker.write_text(name)
            while True:  # the claimed attempt stays open until SIGKILL
                time.sleep(3600)
        return outcome

    extraction.run_sandboxed = run_then_hang  # extract_file looks it up at call time


def main() -> None:
    if os.environ.get("WORKER_PAUSE_AT_EXTRACTION"):
        pause_in_extraction(int(os.environ["WORKER_PAUSE_AT_EXTRACTION"]), Path(os.environ["WORKER_PAUSE_MARKER"]))
    app.conf.worker_enable_remote_control = False
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--queues=extraction",
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
