"""The approval's deletion runs in a real Celery worker (`celery -A webadmin
worker`, the command `make run` uses) on a Redis of the test's own: approving
queues the task after the commit, and the worker deletes the document, records
it in the ledger and removes its blob."""

from __future__ import annotations

import pytest

from archive import storage
from archive.integrity.models import LedgerEntry, LedgerEvent
from archive.models import Document
from archive.retention import expiry
from archive.retention.models import ExpiryList, ExpiryStatus
from tests.mailsources.test_queues import celery_broker, private_redis, start_queue_worker  # noqa: F401 - fixtures
from tests.mailsources.test_worker_kill import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_approved_list_is_deleted_by_the_worker(
    make_mail,
    policy,
    admin_user,
    private_redis,  # noqa: F811 - the fixture imported above
    start_queue_worker,  # noqa: F811
    monkeypatch,  # noqa: F811
):
    monkeypatch.setenv("RETENTION_BLOB_GRACE_SECONDS", "0")  # the worker's setting
    policy()
    old = make_mail("2001-01-01")
    sha = old.files.get().sha256
    expiry_list = expiry.expiry_list_build()
    worker = start_queue_worker(private_redis.url, "processing")
    with celery_broker(private_redis.url):
        expiry.expiry_list_approve(expiry_list.pk, admin_user)  # commits, then queues the task
    wait_for(
        lambda: ExpiryList.objects.get(pk=expiry_list.pk).status == ExpiryStatus.DONE, "the list deleted", [worker]
    )
    assert not Document.objects.filter(pk=old.pk).exists()
    assert LedgerEntry.objects.get(event=LedgerEvent.DELETED).document == old.pk
    wait_for(lambda: not storage.exists(sha), "the blob removed after the commit", [worker])
