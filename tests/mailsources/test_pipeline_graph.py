"""Microsoft 365 ingestion end to end: the real pipeline (``source_sync``), the real client
factory and store, against the local Entra ID + Graph fake — configured, not patched
(SPEC §2, issue 4 items 3 and 6)."""

from __future__ import annotations

import bisect
import email.utils
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from archive.models import Document, DocumentKind, FileRole
from mailsources import tasks
from mailsources.clients.base import TransientSourceError
from mailsources.clients.graph import GraphClient
from mailsources.models import (
    ArchivedMail,
    FolderCursor,
    MailboxStatus,
    MailLocation,
    MailSource,
    RunStatus,
    SourceStatus,
)
from mailsources.pacing import RedisRequestGate, redis_request_gate
from tests.fakes.graph_fake import GraphFake, free_port, make_mime
from tests.mailsources import graph_pipeline
from tests.mailsources.graph_pipeline import ALICE, BOB, M365, add_mails, counts, downloads, originals, sync

# The fixtures this module uses (the fake, Django configured to talk to it, a tenant in it).
graph_server = graph_pipeline.graph_server
fake = graph_pipeline.fake
loopback_only = graph_pipeline.loopback_only
graph_settings = graph_pipeline.graph_settings
m365 = graph_pipeline.m365

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
# The test run's own Redis database: the teardown removes every gate key in it, which would
# reset the pacing state of another run's tests sharing the database.
REDIS_URL = os.environ.get("TEST_GRAPH_REDIS_URL") or os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
DEADLINE = 60.0  # seconds; generous for a loaded machine, never waited out on success


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE:g} s")
        time.sleep(0.02)  # polling a condition, not waiting for time to pass


# --------------------------------------------------------------------------- first sync, increments


def test_a_first_sync_archives_every_folder_with_its_fields_and_the_servers_mime(fake: GraphFake, m365: M365) -> None:
    fake.add_folder(ALICE, "Projects", "inbox")
    fake.add_folder(ALICE, "Unread mail", "inbox", search=True, search_sources=["inbox"])
    offer = make_mime(
        "Offerte für Zürich",
        sender="Jürg Müller <juerg@example.ch>",
        to="René <rene@example.com>, bob@example.com",
        body="Anbei die Offerte.\n",
        date=datetime(2025, 3, 4, 8, 30, tzinfo=UTC),
        attachments=[("offerte.pdf", b"%PDF-1.4 fake\n")],
        extra_headers={"Cc": '"Kunz, Anna" <anna@example.com>'},
    )
    expected = {("Inbox", fake.add_message(ALICE, "inbox", offer)): offer}
    for folder, path, count in (
        ("inbox", "Inbox", 3),
        ("Inbox/Projects", "Inbox/Projects", 2),
        ("sentitems", "Sent Items", 2),
    ):
        expected.update({(path, i): raw for i, raw in add_mails(fake, folder, count).items()})
    fake.add_message(ALICE, "clutter", make_mime("hidden folder"))  # hidden: not a folder to archive
    source = m365.source(folders="", page_size=2)  # all folders; small pages: several batches each

    run = sync(source)

    assert run.status == RunStatus.OK, run.errors
    assert (run.new, run.duplicate) == (8, 0)
    # Every mail once, where it was seen, byte for byte what Graph's $value served.
    assert originals(source) == expected
    assert counts() == {"documents": 8, "mails": 8, "locations": 8}
    assert not MailLocation.objects.filter(folder="Inbox/Unread mail").exists()  # a search folder
    assert set(MailLocation.objects.values_list("epoch", flat=True)) == {""}

    document = Document.objects.get(title="Offerte für Zürich")
    assert document.kind == DocumentKind.MAIL and document.owner_group == source.owner_group
    assert document.values["from"] == "Jürg Müller <juerg@example.ch>"
    assert document.values["to"] == "René <rene@example.com>, bob@example.com"
    assert document.values["cc"] == '"Kunz, Anna" <anna@example.com>'
    assert document.values["subject"] == "Offerte für Zürich"
    assert document.date == datetime(2025, 3, 4, 8, 30, tzinfo=UTC)
    original = document.files.get(role=FileRole.ORIGINAL)
    assert original.name == "Offerte für Zürich.eml" and original.content_type == "message/rfc822"

    # Each folder's delta round is complete; the mailbox and the source say so.
    cursors = {c.folder: c.cursor for c in FolderCursor.objects.filter(source=source)}
    assert {"Inbox", "Inbox/Projects", "Sent Items", "Drafts"} <= set(cursors)
    assert all("delta_link" in cursor and "next_link" not in cursor for cursor in cursors.values())
    assert MailboxStatus.objects.get(source=source).status == SourceStatus.OK
    assert MailboxStatus.objects.get(source=source).mailbox == ALICE
    source.refresh_from_db()
    assert source.status == SourceStatus.OK and source.archived_count == 8
    assert source.lease_owner == "" and source.lease_until is None


def test_incremental_rounds_archive_only_new_mail(fake: GraphFake, m365: M365) -> None:
    add_mails(fake, "inbox", 4)
    source = m365.source()
    sync(source)
    new = add_mails(fake, "inbox", 2, prefix="new")
    fake.reset_stats()

    run = sync(source)

    assert sorted(downloads(fake)) == sorted(new)
    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 2, 0)
    assert counts() == {"documents": 6, "mails": 6, "locations": 6}

    # An unchanged mailbox: one delta request, no message body.
    fake.reset_stats()
    run = sync(source)
    assert downloads(fake) == [] and fake.stats().by_kind["delta"] == 1
    assert (run.status, run.new, run.duplicate, run.done) == (RunStatus.OK, 0, 0, 0)


def test_a_mail_moved_between_folders_is_neither_downloaded_nor_archived_twice(fake: GraphFake, m365: M365) -> None:
    fake.add_folder(ALICE, "Projects", "inbox")
    inbox = add_mails(fake, "inbox", 3)
    add_mails(fake, "Inbox/Projects", 1)
    source = m365.source(folders="Inbox, Inbox/Projects")
    sync(source)
    moved = next(iter(inbox))

    fake.move_message(ALICE, moved, "Inbox/Projects")
    fake.reset_stats()
    run = sync(source)

    assert downloads(fake) == []  # its immutable id is known mailbox-wide
    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 0, 0)
    assert counts() == {"documents": 4, "mails": 4, "locations": 5}
    rows = {row.folder: row for row in MailLocation.objects.filter(location=moved)}
    assert set(rows) == {"Inbox", "Inbox/Projects"}
    assert rows["Inbox"].mail_id == rows["Inbox/Projects"].mail_id
    assert rows["Inbox"].removed_at is not None and rows["Inbox/Projects"].removed_at is None

    # And back again: still one document; the ledger follows the mail.
    fake.move_message(ALICE, moved, "inbox")
    fake.reset_stats()
    sync(source)
    assert downloads(fake) == []
    assert counts() == {"documents": 4, "mails": 4, "locations": 5}
    rows = {row.folder: row for row in MailLocation.objects.filter(location=moved)}
    assert rows["Inbox"].removed_at is None and rows["Inbox/Projects"].removed_at is not None


def test_a_deleted_mail_is_recorded_removed_and_its_archive_copy_stays(fake: GraphFake, m365: M365) -> None:
    mails = add_mails(fake, "inbox", 3)
    source = m365.source()
    sync(source)
    gone = next(iter(mails))
    fake.delete_message(ALICE, gone)

    sync(source)

    row = MailLocation.objects.get(location=gone)
    assert row.removed_at is not None and row.acted_at is None
    assert originals(source)[("Inbox", gone)] == mails[gone]
    assert counts() == {"documents": 3, "mails": 3, "locations": 3}


@pytest.mark.django_db(transaction=True)  # committed batches: the next page is read while one is stored
def test_replayed_entries_and_empty_pages_are_downloaded_once(fake: GraphFake, m365: M365) -> None:
    fake.delta_replay = True  # Graph may repeat an entry of the previous page
    fake.delta_empty_page = True  # and hand out an empty page with a nextLink
    mails = add_mails(fake, "inbox", 10)
    source = m365.source(page_size=3)
    fake.reset_stats()

    run = sync(source)

    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 10, 0), run.errors
    assert sorted(downloads(fake)) == sorted(mails)
    assert originals(source) == {("Inbox", i): raw for i, raw in mails.items()}


def test_moving_after_archiving_happens_once_the_copy_is_verified(fake: GraphFake, m365: M365) -> None:
    mails = add_mails(fake, "inbox", 4)
    source = m365.source(after_archive="move", move_to_folder="Archive", page_size=2)

    run = sync(source)

    assert (run.status, run.new) == (RunStatus.OK, 4), run.errors
    assert fake.message_count(ALICE, "inbox") == 0 and sorted(fake.message_ids(ALICE, "archive")) == sorted(mails)
    assert originals(source) == {("Inbox", i): raw for i, raw in mails.items()}
    assert not MailLocation.objects.filter(acted_at__isnull=True).exists()
    assert ArchivedMail.objects.filter(verified_at__isnull=False).count() == 4
    sync(source)  # the Inbox's next round reports them gone; nothing is archived again
    assert counts() == {"documents": 4, "mails": 4, "locations": 4}
    assert not MailLocation.objects.filter(removed_at__isnull=True).exists()


def test_moving_or_deleting_without_mail_readwrite_stops_before_archiving(fake: GraphFake, m365: M365) -> None:
    fake.update_app(m365.client_id, roles=["Mail.Read"])
    add_mails(fake, "inbox", 2)
    source = m365.source(after_archive="delete")

    run = sync(source)

    source.refresh_from_db()
    assert run.status == RunStatus.FAILED and source.status == SourceStatus.ERROR
    assert "Mail.ReadWrite" in source.status_message
    assert counts()["documents"] == 0 and fake.message_count(ALICE, "inbox") == 2
    status = MailboxStatus.objects.get(source=source)  # the mailbox shows it too
    assert status.status == SourceStatus.ERROR and "Mail.ReadWrite" in status.message


@pytest.mark.parametrize("code", ["syncStateNotFound", "resyncRequired"])
def test_a_delta_reset_resyncs_the_folder_without_duplicates(fake: GraphFake, m365: M365, code: str) -> None:
    first = add_mails(fake, "inbox", 5)
    source = m365.source(page_size=2)
    sync(source)
    more = add_mails(fake, "inbox", 2, prefix="more")
    fake.invalidate_delta(ALICE, code=code)  # every state token of the mailbox now answers 410
    fake.reset_stats()

    run = sync(source)

    assert fake.stats().by_status[410] == 1
    assert sorted(downloads(fake)) == sorted(more)  # the resync lists everything, downloads the new
    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 2, 0), run.errors
    assert originals(source) == {("Inbox", i): raw for i, raw in {**first, **more}.items()}
    assert counts() == {"documents": 7, "mails": 7, "locations": 7}
    assert "delta_link" in FolderCursor.objects.get(source=source).cursor


# --------------------------------------------------------------------------- throttling and outages


@pytest.mark.parametrize("form", ["integer", "fraction", "absent", "http-date"])
def test_429_is_ridden_out_whatever_form_retry_after_takes(fake: GraphFake, m365: M365, form: str) -> None:
    mails = add_mails(fake, "inbox", 6)
    source = m365.source(page_size=3)
    retry_after = {
        "integer": "1",
        "fraction": "0.4",
        "absent": None,
        "http-date": email.utils.formatdate(time.time() + 1, usegmt=True),
    }[form]
    fake.inject_error(429, path=r"/\$value$", retry_after=retry_after, times=2)
    fake.inject_error(429, path="/delta", retry_after=retry_after, times=1)

    run = sync(source)

    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 6, 0), run.errors
    assert fake.stats().throttled == 3
    assert originals(source) == {("Inbox", i): raw for i, raw in mails.items()}


def test_a_long_retry_after_ends_the_run_retrying_and_the_task_waits_that_long(fake: GraphFake, m365: M365) -> None:
    add_mails(fake, "inbox", 3)
    source = m365.source()
    fake.inject_error(429, path=r"/\$value$", retry_after="90.5", times=1)

    with pytest.raises(TransientSourceError) as caught:
        sync(source)  # what tasks.sync_source calls; it turns the error into a retry

    # Not slept inside the worker: the run ends and the task is retried after Retry-After.
    assert caught.value.code == "throttled" and caught.value.retry_after == 90.5
    assert tasks.retry_countdown(0, caught.value.retry_after) == 91  # as given, rounded up
    assert tasks.retry_countdown(tasks.MAX_RETRIES, caught.value.retry_after, jitter=0.5) == 91  # nothing on top
    source.refresh_from_db()
    assert source.status == SourceStatus.RETRYING and "throttling" in source.status_message
    assert source.status_message.startswith("waiting for Microsoft 365 (Retry-After 91 s)")
    assert source.lease_owner == "" and source.lease_until is None
    assert MailboxStatus.objects.get(source=source).status == SourceStatus.RETRYING
    run = source.runs.get()
    assert run.status == RunStatus.RETRY and "throttling" in run.errors


def test_the_retry_countdown_backs_off_and_honours_retry_after() -> None:
    # No wait named: exponential backoff over the attempts without progress (30 s doubling,
    # at most an hour) with jitter in [0.5, 1.0].
    assert [tasks.retry_countdown(n, None, jitter=1.0) for n in (0, 1, 3, 7, 20)] == [30, 60, 240, 3600, 3600]
    assert tasks.retry_countdown(2, None, jitter=0.5) == 60
    assert all(15 <= tasks.retry_countdown(0, None) <= 30 for _ in range(200))
    # A server's Retry-After is the countdown as given, rounded up (Graph sends fractions),
    # however many attempts came before: no backoff on top, none instead.
    assert tasks.retry_countdown(0, 120, jitter=1.0) == 120
    assert tasks.retry_countdown(0, 90.2, jitter=0.5) == 91
    assert tasks.retry_countdown(0, 2.128, jitter=0.5) == 3
    assert [tasks.retry_countdown(n, 13, jitter=1.0) for n in (0, 1, 5, 20)] == [13, 13, 13, 13]
    assert tasks.retry_countdown(0, 0.0, jitter=1.0) == 1  # "now": the next second


def test_503_bursts_are_ridden_out(fake: GraphFake, m365: M365) -> None:
    mails = add_mails(fake, "inbox", 8)
    source = m365.source(page_size=4)
    fake.inject_error(503, path=r"/\$value$", times=4)  # no Retry-After: the client backs off
    fake.inject_error(503, path="/delta", retry_after="0.2", times=2)
    fake.inject_error(504, path="/mailFolders$", retry_after="0.1", times=1)

    run = sync(source)

    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 8, 0), run.errors
    assert fake.stats().by_status[503] == 6
    assert originals(source) == {("Inbox", i): raw for i, raw in mails.items()}


def test_a_persistent_outage_leaves_the_source_retrying(fake: GraphFake, m365: M365) -> None:
    add_mails(fake, "inbox", 2)
    source = m365.source()
    fake.inject_error(503, path="/delta", retry_after="0.05", times=None)

    with pytest.raises(TransientSourceError):
        sync(source)

    source.refresh_from_db()
    assert source.status == SourceStatus.RETRYING and "unavailable" in source.status_message
    assert counts()["documents"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_token_that_expires_mid_run_is_renewed_and_the_run_completes(fake: GraphFake, m365: M365) -> None:
    # Five pages: the run can be at most a page or two ahead of the first commit.
    mails = add_mails(fake, "inbox", 20)
    source = m365.source(page_size=4)
    expired: list[list[int]] = []

    def expire_tokens_after_the_first_batch(document_ids: list[int]) -> None:
        if not expired:
            fake.revoke_tokens()  # Graph answers 401 "Lifetime validation failed" from now on
        expired.append(document_ids)

    run = sync(source, after_commit=expire_tokens_after_the_first_batch)

    assert (run.status, run.new, run.duplicate) == (RunStatus.OK, 20, 0), run.errors
    assert len(expired) == 5
    stats = fake.stats()
    # Renewed once, however many requests in flight saw the revoked token fail.
    assert stats.tokens_issued == 2 and stats.tokens_refused == 1
    assert 1 <= stats.by_status[401] <= 4
    assert originals(source) == {("Inbox", i): raw for i, raw in mails.items()}


# --------------------------------------------------------------------------- several mailboxes


def test_one_mailbox_failing_does_not_stop_the_others(fake: GraphFake, m365: M365, admin_client: Any) -> None:
    m365.add_mailbox(BOB)
    fake.update_app(m365.client_id, allowed_mailboxes=[ALICE, "nobody@contoso.com"])  # an access policy
    mails = add_mails(fake, "inbox", 3)
    add_mails(fake, "inbox", 2, mailbox=BOB)
    source = m365.source(mailboxes=[BOB, ALICE, "nobody@contoso.com"])

    run = sync(source)

    assert run.status == RunStatus.PARTIAL and run.new == 3
    assert originals(source) == {("Inbox", i): raw for i, raw in mails.items()}
    statuses = {s.mailbox: s for s in MailboxStatus.objects.filter(source=source)}
    assert statuses[ALICE].status == SourceStatus.OK and statuses[ALICE].message == ""
    assert statuses[BOB].status == SourceStatus.ERROR
    assert "denied" in statuses[BOB].message and "access policy" in statuses[BOB].message
    assert statuses["nobody@contoso.com"].status == SourceStatus.ERROR
    assert "ErrorInvalidUser" in statuses["nobody@contoso.com"].message
    source.refresh_from_db()
    assert source.status == SourceStatus.PARTIAL and "2 of 3 mailboxes failing" in source.status_message  # not stopped

    page = admin_client.get(reverse("mailsources:detail", args=[source.pk])).content.decode()
    assert BOB in page and "Access to mailbox bob@contoso.com was denied" in page
    assert "nobody@contoso.com was not found" in page

    # All mailboxes failing stops the source with a clear status.
    fake.update_app(m365.client_id, allowed_mailboxes=["carol@contoso.com"])
    run = sync(source)
    source.refresh_from_db()
    assert run.status == RunStatus.FAILED and source.status == SourceStatus.ERROR
    assert source.next_run_at is None
    assert set(MailboxStatus.objects.filter(source=source).values_list("status", flat=True)) == {SourceStatus.ERROR}


@pytest.mark.django_db(transaction=True)
def test_the_fifth_concurrent_request_never_happens(fake: GraphFake, m365: M365) -> None:
    fake.set_throttle(max_concurrent=4)  # the 5th concurrent request per mailbox would get 429
    fake.set_latency(0.01)
    m365.add_mailbox(BOB)
    for mailbox in (ALICE, BOB):
        add_mails(fake, "inbox", 30, mailbox=mailbox)
    # Two sources on the same mailboxes, run at the same time by two workers' threads.
    sources = [m365.source(mailboxes=[ALICE, BOB]), m365.source(mailboxes=[BOB, ALICE])]
    runs: list[Any] = []
    errors: list[BaseException] = []

    def run(source: MailSource) -> None:
        try:
            runs.append(sync(source))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors and [r.status for r in runs] == [RunStatus.OK, RunStatus.OK]
    # One document per mail and mailbox (SPEC §2 rule 2); each source records its locations.
    assert ArchivedMail.objects.count() == 60
    assert (
        MailLocation.objects.filter(source=sources[0]).count()
        == MailLocation.objects.filter(source=sources[1]).count()
        == 60
    )
    for mailbox in (ALICE, BOB):
        stats = fake.stats(mailbox)
        assert stats.concurrency_rejections == 0 and stats.throttled == 0
        assert 2 <= stats.max_in_flight <= 4  # the two runs overlapped, and never beyond 4


@pytest.mark.django_db(transaction=True)  # the mailboxes' threads commit on connections of their own
def test_four_mailboxes_are_each_paced_under_their_own_budget(fake: GraphFake, m365: M365, settings: Any) -> None:
    # Issue 18: 4 mailboxes at ~4x one mailbox's ceiling with 0 x 429. Graph's 10,000 requests
    # per 600 s per mailbox scaled down to 10 per 1 s in the fake; the product paces each
    # mailbox under 8 per 1 s (the headroom absorbs a loaded machine's late wake-ups).
    fake.set_throttle(max_concurrent=4, window_requests=10, window_seconds=1.0, retry_after="float")
    settings.GRAPH_RATE_LIMIT_REQUESTS, settings.GRAPH_RATE_LIMIT_SECONDS = 8, 1
    boxes = [ALICE, BOB, "carol@contoso.com", "dave@contoso.com"]
    for box in boxes[1:]:
        m365.add_mailbox(box)
    mails = {box: add_mails(fake, "inbox", 20, mailbox=box, prefix=box) for box in boxes}
    source = m365.source(mailboxes=boxes, page_size=10)
    fake.reset_stats()

    run = sync(source)

    assert (run.status, run.new) == (RunStatus.OK, 80)
    assert originals(source) == {("Inbox", i): raw for box in mails.values() for i, raw in box.items()}
    for box in boxes:
        stats = fake.stats(box)
        assert stats.throttled == 0 and stats.window_rejections == 0 and stats.concurrency_rejections == 0
        assert stats.graph_requests == 20 + 2 + 1  # a download per mail, 2 delta pages, the folder
    # Side by side, each on its own budget: in some second the source as a whole sent more than
    # one mailbox may (a single budget for the source would never exceed 10 in a second).
    arrivals = sorted(r.started for r in fake.requests if r.mailbox in boxes)
    busiest = max(bisect.bisect_left(arrivals, t + 1.0) - i for i, t in enumerate(arrivals))
    assert busiest > 10


# --------------------------------------------------------------------------- the Redis gate


@pytest.fixture
def redis_url(settings: Any) -> Iterator[str]:
    """The broker (and so the request gate) on the test Redis; our keys removed afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"the test needs Redis at {REDIS_URL} (TEST_GRAPH_REDIS_URL or TEST_REDIS_URL): {exc}", pytrace=False
        )
    settings.CELERY_BROKER_URL = REDIS_URL
    yield REDIS_URL
    for key in client.scan_iter(match="webadmin:graph:*"):
        client.delete(key)
    client.close()


def test_the_redis_gate_never_admits_a_fifth_request(redis_url: str) -> None:
    gate = RedisRequestGate(redis_url, max_concurrent=4)
    key = f"graph:{uuid.uuid4()}:app:alice@contoso.com"
    inside, peak, entries = [0], [0], [0]
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(10):
            with gate(key):
                with lock:
                    inside[0] += 1
                    entries[0] += 1
                    peak[0] = max(peak[0], inside[0])
                time.sleep(0.001)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=hammer) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert entries[0] == 120 and 2 <= peak[0] <= 4
    assert redis.Redis.from_url(redis_url).zcard(gate.slots_key(key)) == 0
    gate.close()


def test_the_redis_gate_paces_every_workers_requests_on_one_schedule(redis_url: str) -> None:
    # Two "workers" (gates of their own, as in two processes) for one app + mailbox.
    gates = [RedisRequestGate(redis_url, rate_limit=(100, 1.0)) for _ in range(2)]
    key = f"graph:{uuid.uuid4()}:app:alice@contoso.com"
    r = redis.Redis.from_url(redis_url)
    seconds, micros = r.time()
    started, clock = seconds + micros / 1e6, time.monotonic()

    def send(gate: RedisRequestGate) -> None:
        for _ in range(15):
            with gate(key):
                pass

    threads = [threading.Thread(target=send, args=(gate,)) for gate in gates for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Every request took its own turn on the shared schedule (a burst of 4, then evenly spaced).
    interval = gates[0].interval
    assert float(r.get(f"webadmin:graph:pace:{key}")) >= started + 60 * interval
    assert time.monotonic() - clock >= (60 - 4) * interval
    for gate in gates:
        gate.close()


def test_a_killed_workers_slots_expire_and_a_long_request_keeps_its_own(redis_url: str) -> None:
    gate = RedisRequestGate(redis_url, max_concurrent=1, lease_seconds=3.0)
    key = f"graph:{uuid.uuid4()}:app:alice@contoso.com"
    slots = gate.slots_key(key)
    r = redis.Redis.from_url(redis_url)
    seconds, micros = r.time()
    # What a worker killed in mid-request leaves behind: a slot whose lease runs out.
    r.zadd(slots, {"killed-worker": seconds + micros / 1e6 + 1.0})

    with gate(key):  # waits for the dead worker's lease, then enters
        assert [m.decode() for m in r.zrange(slots, 0, -1)] != ["killed-worker"]
        [(_, first_expiry)] = r.zrange(slots, 0, -1, withscores=True)
        entered = threading.Event()

        def second_request() -> None:
            with gate(key):
                entered.set()

        other = threading.Thread(target=second_request)
        other.start()
        # A request running longer than the lease keeps its slot: the lease is renewed.
        wait_for(lambda: r.zrange(slots, 0, -1, withscores=True)[0][1] > first_expiry + 0.5, "lease renewal")
        assert r.zcard(slots) == 1 and not entered.is_set()
    other.join(timeout=DEADLINE)
    assert entered.is_set() and r.zcard(slots) == 0
    gate.close()


def test_an_unreachable_redis_is_a_transient_error(settings: Any) -> None:
    gate = RedisRequestGate(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(TransientSourceError) as caught:
        with gate("graph:t:c:m"):
            pass
    assert caught.value.code == "gate_unavailable"


def test_two_clients_for_one_mailbox_share_the_redis_gate(fake: GraphFake, m365: M365, redis_url: str) -> None:
    fake.set_throttle(max_concurrent=4)
    fake.set_latency(0.01)
    fake.add_folder(ALICE, "Projects", "inbox")
    add_mails(fake, "inbox", 30)
    add_mails(fake, "Inbox/Projects", 30)
    gate = redis_request_gate()
    assert gate is not None
    # Two workers' clients (two processes in production): here two instances whose in-process
    # limiters are not shared (different pacing), so only the gate keeps them to 4 together.
    clients = [
        GraphClient(
            m365.tenant,
            m365.client_id,
            m365.secret,
            ALICE,
            page_size=10,
            rate_limit=rate,
            request_gate=gate,
            **fake.client_config(),
        )
        for rate in (None, (1_000_000, 1.0))
    ]
    fetched: list[int] = []
    errors: list[BaseException] = []

    def run(client: GraphClient, folder: str) -> None:
        try:
            fetched.append(sum(len(b.messages) for b in client.sync_folder(folder, None, lambda epoch, ids: set())))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            client.close()

    folders = ["Inbox", "Inbox/Projects"]
    threads = [threading.Thread(target=run, args=pair) for pair in zip(clients, folders, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and fetched == [30, 30]
    stats = fake.stats(ALICE)
    assert stats.concurrency_rejections == 0 and stats.throttled == 0 and stats.max_in_flight <= 4


def test_a_sync_on_a_redis_broker_goes_through_the_gate(fake: GraphFake, m365: M365, redis_url: str) -> None:
    add_mails(fake, "inbox", 5)
    source = m365.source()
    run = sync(source)
    assert (run.status, run.new) == (RunStatus.OK, 5)
    key = f"graph:{m365.tenant}:{m365.client_id}:{ALICE}".lower()
    r = redis.Redis.from_url(redis_url)
    assert r.exists(f"webadmin:graph:pace:{key}")  # every request was paced through Redis
    assert r.zcard(f"webadmin:graph:slots:{key}") == 0  # and gave its slot back


# --------------------------------------------------------------------------- a killed worker


def database_url_of_the_test_database() -> str:
    """The test database (not the configured one) as a DATABASE_URL for another process."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        assert Path(str(db["NAME"])).is_file(), "the SQLite test database must be a file to share it"
        return f"sqlite:///{db['NAME']}"
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"mysql://{user}{password}@{db['HOST'] or '127.0.0.1'}{port}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_run_loses_and_doubles_nothing(
    fake: GraphFake, m365: M365, graph_settings: Any, tmp_path: Path
) -> None:
    mails = add_mails(fake, "inbox", 12)
    source = m365.source(page_size=5)
    marker = tmp_path / "paused"
    connection.close()  # nothing of ours open while the other process writes
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webadmin.settings",
        "DATABASE_URL": database_url_of_the_test_database(),
        "STORAGE_DIR": str(settings.STORAGE_DIR),
        "SOURCE_SECRET_KEY": settings.SOURCE_SECRET_KEY,
        "CELERY_BROKER_URL": "memory://",
        "GRAPH_AUTHORITY_HOST": fake.base_url,
        "GRAPH_URL": fake.base_url,
        "MAIL_CA_FILE": fake.ca_pem,
        "GRAPH_RATE_LIMIT_REQUESTS": "1000000",
        "GRAPH_RATE_LIMIT_SECONDS": "1",
        "SYNC_SOURCE_ID": str(source.pk),
        # Inside the second batch's transaction, everything but the commit done: SIGKILL there.
        "PAUSE_AT_CURSOR_WRITE": "2",
        "PAUSE_MARKER": str(marker),
        "PYTHONPATH": str(REPO),
    }
    environment.pop("TEST_DATABASE_NAME", None)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.mailsources.graph_sync_process"],
            cwd=REPO,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + DEADLINE
        while not marker.exists():
            assert worker.poll() is None, f"the worker exited early:\n{log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"the worker never paused:\n{log.read_text(errors='replace')}"
            time.sleep(0.02)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=DEADLINE)

    # What survives is exactly the committed batch; the dead run still holds the lease.
    assert counts() == {"documents": 5, "mails": 5, "locations": 5}
    assert "next_link" in FolderCursor.objects.get(source=source).cursor
    dead = source.runs.get()
    assert (dead.status, dead.new, dead.finished) == (RunStatus.RUNNING, 5, None)
    assert sync(source) is None  # nobody else runs the source until the lease expires
    committed = set(MailLocation.objects.values_list("location", flat=True))

    # The lease expires (the clock moves past it): the next run takes over and finishes.
    MailSource.objects.filter(pk=source.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    fake.reset_stats()
    rerun = sync(source)

    assert (rerun.status, rerun.new, rerun.duplicate) == (RunStatus.OK, 7, 0), rerun.errors
    assert not committed & set(downloads(fake))  # what was committed is not fetched again
    assert originals(source) == {("Inbox", i): raw for i, raw in mails.items()}
    assert counts() == {"documents": 12, "mails": 12, "locations": 12}
    dead.refresh_from_db()
    assert dead.status == RunStatus.RETRY and "interrupted" in dead.errors
    source.refresh_from_db()
    assert source.status == SourceStatus.OK and source.archived_count == 12
    assert source.lease_owner == "" and source.lease_until is None
