"""One sync run of a mail source in a process of its own, to be SIGKILLed by a test
(tests/mailsources/test_pipeline_graph.py): ``python -m tests.mailsources.graph_sync_process``.

What a worker does, minus Celery: ``pipeline.source_sync`` with the real client factory. The
environment says where everything is (``DATABASE_URL``: the test database, ``STORAGE_DIR``,
``SOURCE_SECRET_KEY``, ``GRAPH_*``/``MAIL_CA_FILE``: the fake) and ``SYNC_SOURCE_ID`` which
source. ``PAUSE_AT_CURSOR_WRITE``/``PAUSE_MARKER``: on the n-th write of a folder cursor —
inside a batch's transaction, the batch's other rows written, nothing committed — create the
marker file and hang until killed.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webadmin.settings")

import django  # noqa: E402

django.setup()

from mailsources import pipeline, services  # noqa: E402
from tests.mailsources.kill_points import pause_at_cursor_write  # noqa: E402


def main() -> None:
    if os.environ.get("PAUSE_AT_CURSOR_WRITE"):
        pause_at_cursor_write(int(os.environ["PAUSE_AT_CURSOR_WRITE"]), Path(os.environ["PAUSE_MARKER"]))
    pipeline.source_sync(int(os.environ["SYNC_SOURCE_ID"]), client_factory=services.client_for_source)


if __name__ == "__main__":
    main()
