"""An export built by a real Celery worker process (solo pool, Redis), as in
production: the task message names only the export's id; the page's progress
comes from the row; the result verifies."""

from __future__ import annotations

import pytest

from archive.exports import builder, tasks
from archive.exports.models import Export, ExportStatus
from tests.exports.helpers import record_archived, verify
from tests.mailsources.test_worker_kill import (  # noqa: F401 (fixtures)
    enqueue,
    redis_queue,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_builds_a_queued_export(start_worker, redis_queue, make_document, admin_user):  # noqa: F811
    for i in range(3):
        record_archived(make_document(content=f"file {i}".encode(), name=f"f{i}.txt"))
    export = Export.objects.create(created_by=admin_user)
    worker = start_worker("export-worker")
    enqueue(redis_queue, tasks.export_build, export.pk)

    def done() -> bool:
        export.refresh_from_db()
        return export.status in (ExportStatus.DONE, ExportStatus.FAILED)

    wait_for(done, "the export built by the worker", [worker])
    assert export.status == ExportStatus.DONE, export.error
    assert (export.done, export.files) == (3, 3)
    result = verify(builder.export_file(export))
    assert result.returncode == 0, result.stdout
