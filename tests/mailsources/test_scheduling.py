"""Scheduling (SPEC §2 rule 5): which sources are due, the per-source lease
(runs never overlap, a dead run's lease expires), permanent errors stop a
source visibly, transient ones retry with backoff."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from mailsources import pipeline, services, tasks
from mailsources.clients.base import PermanentSourceError, TransientSourceError
from mailsources.models import MailSource, RunStatus, SourceStatus, SyncRun
from tests.imap_server import free_port
from tests.mailsources.imap_pipeline import mail, sync

pytestmark = pytest.mark.django_db


def test_due_sources_are_the_enabled_unleased_unstopped_ones_and_are_claimed_once(
    imap_mailbox_factory, imap_source_factory
):
    now = timezone.now()
    past, future = now - timedelta(minutes=1), now + timedelta(minutes=10)

    def source(name, **fields):
        return imap_source_factory(imap_mailbox_factory(), name=name, **fields)

    never_run = source("never run", next_run_at=None)
    due = source("due", next_run_at=past, interval_minutes=30)
    expired_lease = source("expired lease", next_run_at=past, lease_owner="dead", lease_until=past)
    source("not yet", next_run_at=future)
    source("disabled", next_run_at=past, enabled=False)
    source("stopped", next_run_at=past, status=SourceStatus.ERROR)
    source("running", next_run_at=past, lease_owner="alive", lease_until=future)

    assert sorted(services.sources_due(now)) == sorted([never_run.pk, due.pk, expired_lease.pk])
    assert services.sources_due(now) == []  # claimed: the next tick does not enqueue them again
    due.refresh_from_db()
    assert due.next_run_at == now + timedelta(minutes=30)


def test_the_dispatcher_enqueues_each_due_source_by_its_id(imap_mailbox, imap_source, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.sync_source, "delay", lambda *args, **kwargs: sent.append((args, kwargs)))

    tasks.dispatch_due_sources()
    tasks.dispatch_due_sources()

    assert sent == [((imap_source.pk,), {})]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_of_one_source_never_overlap(imap_mailbox, imap_source_factory):
    imap_mailbox.append("INBOX", mail("only once"))
    source = imap_source_factory(imap_mailbox)
    inside, go = threading.Event(), threading.Event()
    outcome = {}

    def slow_factory(src, mailbox=""):
        inside.set()  # the first run holds the lease now
        assert go.wait(30)
        return services.client_for_source(src, mailbox)

    def first_run():
        try:
            outcome["run"] = pipeline.source_sync(source.pk, client_factory=slow_factory, owner="worker-a")
        finally:
            connection.close()

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert inside.wait(30)
        # A second worker (another owner) gets nothing: no run, no row, no client.
        assert pipeline.source_sync(source.pk, client_factory=slow_factory, owner="worker-b") is None
        assert SyncRun.objects.filter(source=source).count() == 1
    finally:
        go.set()
        thread.join(30)

    assert outcome["run"].status == RunStatus.OK and outcome["run"].new == 1
    source.refresh_from_db()
    assert source.lease_owner == "" and source.archived_count == 1


def test_a_lease_held_by_a_dead_run_is_respected_until_it_expires_then_taken_over(imap_mailbox, imap_source):
    imap_mailbox.append("INBOX", mail("after the crash"))
    assert pipeline.lease_acquire(imap_source.pk, "killed-worker")
    dead_run = SyncRun.objects.create(source=imap_source)  # it never finished

    assert sync(imap_source) is None  # the lease is still valid

    MailSource.objects.filter(pk=imap_source.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    run = sync(imap_source)

    assert run is not None and (run.status, run.new) == (RunStatus.OK, 1)
    dead_run.refresh_from_db()
    assert dead_run.status == RunStatus.RETRY and dead_run.finished is not None
    assert "interrupted" in dead_run.errors
    # The old holder, should it wake up, learns it lost the lease and stops.
    with pytest.raises(TransientSourceError) as exc_info:
        pipeline.lease_renew(imap_source.pk, "killed-worker")
    assert exc_info.value.code == "lease_lost"


def test_a_wrong_password_stops_the_source_with_a_visible_error(imap_mailbox, imap_source_factory, client, admin_user):
    imap_mailbox.append("INBOX", mail("unreachable for now"))
    source = imap_source_factory(imap_mailbox, password="not-the-password", next_run_at=timezone.now())

    tasks.sync_source(source.pk)  # the task itself: a permanent error is not retried

    source.refresh_from_db()
    assert source.status == SourceStatus.ERROR and source.next_run_at is None
    assert "Authentication failed" in source.status_message
    assert source.lease_owner == ""
    run = source.runs.get()
    assert run.status == RunStatus.FAILED and "Authentication failed" in run.errors
    assert source.pk not in services.sources_due(timezone.now() + timedelta(days=1))
    client.force_login(admin_user)
    page = client.get(reverse("mailsources:detail", args=[source.pk])).content.decode()
    assert "Authentication failed" in page

    # Fixed by the administrator, then "Sync now".
    services.source_set_secret(source, imap_mailbox.user.password)
    source.save()
    services.source_request_sync(source)
    assert source.pk in services.sources_due()
    assert sync(source).status == RunStatus.OK
    source.refresh_from_db()
    assert source.status == SourceStatus.OK and source.archived_count == 1


def test_an_undecryptable_password_is_a_permanent_error(imap_mailbox, imap_source, settings):
    settings.SOURCE_SECRET_KEY = "another-key-than-the-one-it-was-encrypted-with"

    run = sync(imap_source)

    assert run.status == RunStatus.FAILED
    imap_source.refresh_from_db()
    assert imap_source.status == SourceStatus.ERROR and "enter it again" in imap_source.status_message


def test_an_unreachable_server_is_a_transient_error_and_the_source_keeps_retrying(imap_mailbox, imap_source_factory):
    source = imap_source_factory(imap_mailbox, port=free_port())  # nothing listens there

    with pytest.raises(TransientSourceError):
        sync(source)

    source.refresh_from_db()
    assert source.status == SourceStatus.RETRYING and "refused the connection" in source.status_message
    assert source.lease_owner == "" and source.lease_until is None
    assert source.runs.get().status == RunStatus.RETRY
    assert source.pk in services.sources_due()


class RetryRequested(Exception):
    pass


@pytest.mark.parametrize("retry_after, low, high", [(None, 15, 30), (600, 600, 600)])
def test_the_task_retries_transient_errors_with_jittered_backoff_honouring_retry_after(
    retry_after, low, high, monkeypatch
):
    def failing(source_id, **kwargs):
        raise TransientSourceError("server busy", retry_after=retry_after)

    requested = []

    def retry(countdown=None, exc=None, **kwargs):
        requested.append((countdown, exc))
        raise RetryRequested

    monkeypatch.setattr(pipeline, "source_sync", failing)
    monkeypatch.setattr(tasks.sync_source, "retry", retry)

    with pytest.raises(RetryRequested):
        tasks.sync_source(4711)

    [(countdown, exc)] = requested
    assert low <= countdown <= high and isinstance(exc, TransientSourceError)


def test_the_task_does_not_retry_permanent_errors(monkeypatch):
    def failing(source_id, **kwargs):
        raise PermanentSourceError("bad")

    monkeypatch.setattr(pipeline, "source_sync", failing)
    monkeypatch.setattr(tasks.sync_source, "retry", lambda **kwargs: pytest.fail("retried"))

    with pytest.raises(PermanentSourceError):
        tasks.sync_source(4711)


def test_only_transient_database_errors_are_retried():
    from django.db import OperationalError

    from mailsources.tasks import is_transient_db_error

    assert is_transient_db_error(OperationalError(1213, "Deadlock found when trying to get lock"))
    assert is_transient_db_error(OperationalError(1205, "Lock wait timeout exceeded"))
    assert is_transient_db_error(OperationalError("database is locked"))
    assert not is_transient_db_error(OperationalError(1054, "Unknown column 'x'"))
    assert not is_transient_db_error(OperationalError("no such table: archive_document"))
