"""Retries that cooperate with Microsoft Graph, and the mailboxes of one source side by side
(issue 10, requirements 4 and 5).

Everything real but the clock: the product's task (``tasks.sync_source``, run by Celery's own
``apply``: each retry it asks for comes back as a ``Retry`` carrying the countdown and the
arguments of the next attempt, which the test then runs — no waiting for time to pass), the
pipeline, the client factory and the Graph client against the local Entra ID + Graph fake.
"""

from __future__ import annotations

import collections
import time
import uuid
from typing import Any
from urllib.parse import unquote

import pytest
from celery.exceptions import Retry

from mailsources import pacing, tasks
from mailsources.clients.base import TransientSourceError
from mailsources.models import MailboxStatus, MailLocation, RunStatus, SourceStatus
from tests.fakes.graph_fake import GraphFake, ManualClock
from tests.mailsources import graph_pipeline
from tests.mailsources.graph_pipeline import ALICE, BOB, M365, add_mails, counts, originals

# The fixtures this module uses (the fake, Django configured to talk to it, a tenant in it).
graph_server = graph_pipeline.graph_server
fake = graph_pipeline.fake
loopback_only = graph_pipeline.loopback_only
graph_settings = graph_pipeline.graph_settings
m365 = graph_pipeline.m365

pytestmark = pytest.mark.django_db

CAROL = "carol@contoso.com"


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """The mailbox limiters' clock (a Retry-After pauses a mailbox until then), moved by
    :func:`attempt` by each countdown the task asks for: the retry comes when it should."""
    manual = ManualClock(start=time.monotonic())
    monkeypatch.setattr(pacing, "monotonic", manual)
    return manual


def attempt(source_id: int, kwargs: dict[str, Any] | None = None) -> Retry | None:
    """One attempt of the real task, as a worker runs it: the retry it asks Celery for
    (countdown: ``.when``, the next attempt's arguments: ``.sig``), or None when it completed.
    The clock then moves on by the countdown. (Celery's ``apply`` would run the retries at
    once, one inside the other; an eager request makes ``retry`` hand the retry back instead
    of sending it to the broker, so each attempt is the test's to run.)"""
    kwargs = dict(kwargs or {})
    task = tasks.sync_source
    task.push_request(
        id=str(uuid.uuid4()),
        args=[source_id],
        kwargs=kwargs,
        retries=0,
        is_eager=True,
        called_directly=False,
        hostname="test-worker",
    )
    try:
        task.run(source_id, **kwargs)
    except Retry as retry:
        assert isinstance(pacing.monotonic, ManualClock)
        pacing.monotonic.advance(float(retry.when))
        return retry
    finally:
        task.pop_request()
    return None


def next_kwargs(retry: Retry) -> dict[str, Any]:
    return dict(retry.sig.kwargs)


def mime_downloads(fake: GraphFake) -> collections.Counter[str]:
    """How many times each message's MIME was served (200) since the last reset_stats()."""
    return collections.Counter(
        unquote(r.path.split("/")[-2]) for r in fake.requests if r.kind == "value" and r.status == 200
    )


def ids_in_order(fake: GraphFake, mailbox: str = ALICE) -> list[str]:
    """The inbox's immutable ids in the order a delta round lists them (newest first)."""
    return list(reversed(fake.message_ids(mailbox, "inbox")))


# --------------------------------------------------------------------------- requirement 4


def test_retry_after_13_is_every_countdown_and_progress_resets_the_budget(fake: GraphFake, m365: M365) -> None:
    # 13 pages of 3 mails; each attempt archives a page or more, then Graph throttles it with
    # Retry-After: 13 on the first mail of the next page. 12 throttled attempts (more than the
    # budget of MAX_RETRIES attempts without progress), then the run completes.
    mails = add_mails(fake, "inbox", 39)
    order = ids_in_order(fake)
    source = m365.source(page_size=3)
    for page in range(1, 13):
        fake.inject_error(429, path=rf"/messages/{order[page * 3]}/\$value$", retry_after="13", times=1)
    assert 12 > tasks.MAX_RETRIES

    countdowns, stalled, archived_before = [], [], []
    kwargs: dict[str, Any] = {}
    while (retry := attempt(source.pk, kwargs)) is not None:
        countdowns.append(retry.when)
        kwargs = next_kwargs(retry)
        stalled.append(kwargs["stalled"])
        archived_before.append(MailLocation.objects.filter(source=source).count())
        run = source.runs.first()
        assert run.status == RunStatus.RETRY and "waiting for Microsoft 365 (Retry-After 13 s)" in run.errors
        source.refresh_from_db()
        assert source.status == SourceStatus.RETRYING
        assert source.status_message.startswith("waiting for Microsoft 365 (Retry-After 13 s)")
        assert len(countdowns) <= 12, "the chain did not end"

    assert countdowns == [13] * 12  # as Graph asked, never growing
    assert stalled == [0] * 12  # each attempt made progress: the budget started again
    assert archived_before == sorted(archived_before) and archived_before[0] >= 3
    assert len(set(archived_before)) == 12  # every attempt added something
    assert originals(source) == {("Inbox", i): raw for i, raw in mails.items()}
    assert counts() == {"documents": 39, "mails": 39, "locations": 39}
    source.refresh_from_db()
    assert source.status == SourceStatus.OK and source.runs.first().status == RunStatus.OK


def test_attempts_without_progress_keep_the_servers_wait_and_end_after_the_budget(fake: GraphFake, m365: M365) -> None:
    add_mails(fake, "inbox", 3)
    source = m365.source()
    fake.inject_error(429, path="/delta", retry_after="13", times=None)  # nothing ever commits

    countdowns, stalled = [], []
    kwargs: dict[str, Any] = {}
    with pytest.raises(TransientSourceError) as caught:
        while (retry := attempt(source.pk, kwargs)) is not None:
            countdowns.append(retry.when)
            kwargs = next_kwargs(retry)
            stalled.append(kwargs["stalled"])
            assert len(countdowns) <= tasks.MAX_RETRIES, "no end to attempts without progress"

    assert countdowns == [13] * tasks.MAX_RETRIES  # no backoff on top of the server's wait
    assert stalled == list(range(1, tasks.MAX_RETRIES + 1))
    assert caught.value.code == "throttled"
    source.refresh_from_db()
    assert source.status == SourceStatus.RETRYING and counts()["documents"] == 0


@pytest.mark.django_db(transaction=True)  # the mailboxes' threads commit on connections of their own
def test_one_throttled_mailbox_waits_while_the_others_complete_in_the_same_run(fake: GraphFake, m365: M365) -> None:
    m365.add_mailbox(BOB)
    m365.add_mailbox(CAROL)
    mails = {box: add_mails(fake, "inbox", 7, mailbox=box, prefix=box) for box in (ALICE, BOB, CAROL)}
    source = m365.source(mailboxes=[ALICE, BOB, CAROL], page_size=3)
    fake.inject_error(429, path="/delta", mailbox=BOB, retry_after="13", times=None)

    retry = attempt(source.pk)

    # Alice and Carol are archived by this run; Bob alone is rescheduled, after Graph's wait.
    assert retry is not None and retry.when == 13
    assert next_kwargs(retry) == {"stalled": 0, "mailboxes": [BOB]}
    run = source.runs.get()
    assert (run.status, run.new) == (RunStatus.RETRY, 14)
    assert run.errors.startswith(f"{BOB}: waiting for Microsoft 365 (Retry-After 13 s)")
    assert {m.mailbox: m.status for m in MailboxStatus.objects.filter(source=source)} == {
        ALICE: SourceStatus.OK,
        BOB: SourceStatus.RETRYING,
        CAROL: SourceStatus.OK,
    }
    assert "waiting for Microsoft 365 (Retry-After 13 s)" in MailboxStatus.objects.get(mailbox=BOB).message
    assert set(MailLocation.objects.values_list("mailbox", flat=True)) == {ALICE, CAROL}

    # Graph lets Bob go again: the retry syncs Bob only.
    fake.clear_errors()
    fake.reset_stats()
    assert attempt(source.pk, next_kwargs(retry)) is None
    assert fake.stats(ALICE).graph_requests == 0 and fake.stats(CAROL).graph_requests == 0
    expected = {("Inbox", i): raw for box in mails.values() for i, raw in box.items()}
    assert originals(source) == expected
    assert counts() == {"documents": 21, "mails": 21, "locations": 21}
    source.refresh_from_db()
    assert source.status == SourceStatus.OK
    assert MailboxStatus.objects.get(mailbox=BOB).status == SourceStatus.OK


@pytest.mark.django_db(transaction=True)  # as a worker runs it: batches committed as they come
def test_a_run_throttled_mid_page_never_downloads_a_committed_mail_again(fake: GraphFake, m365: M365) -> None:
    mails = add_mails(fake, "inbox", 30)
    order = ids_in_order(fake)
    source = m365.source(page_size=10)
    # Mid-page: the 6th mail of the second page is throttled for longer than a run may sleep.
    fake.inject_error(429, path=rf"/messages/{order[15]}/\$value$", retry_after="40", times=1)

    retry = attempt(source.pk)

    assert retry is not None and retry.when == 40
    committed = set(MailLocation.objects.values_list("location", flat=True))
    assert set(order[:10]) <= committed and order[15] not in committed
    assert next_kwargs(retry)["stalled"] == 0

    assert attempt(source.pk, next_kwargs(retry)) is None
    served = mime_downloads(fake)
    assert {i: served[i] for i in committed} == {i: 1 for i in committed}  # never fetched again
    assert set(served) == set(order)
    assert originals(source) == {("Inbox", i): raw for i, raw in mails.items()}
    assert counts() == {"documents": 30, "mails": 30, "locations": 30}


# --------------------------------------------------------------------------- requirement 5


@pytest.mark.django_db(transaction=True)  # the mailboxes' threads commit on connections of their own
@pytest.mark.parametrize("cap", ["none", "per_source", "per_worker"])
def test_the_mailboxes_of_one_source_sync_side_by_side_each_within_its_limit(
    fake: GraphFake, m365: M365, settings: Any, cap: str
) -> None:
    m365.add_mailbox(BOB)
    m365.add_mailbox(CAROL)
    boxes = (ALICE, BOB, CAROL)
    mails = {box: add_mails(fake, "inbox", 24, mailbox=box, prefix=box) for box in boxes}
    source = m365.source(mailboxes=list(boxes), page_size=6)
    fake.set_throttle(max_concurrent=4)  # the 5th request in flight of a mailbox would get a 429
    fake.set_latency(0.05, path=r"/\$value$")  # a download takes a while, as at Graph
    if cap == "per_source":
        settings.GRAPH_MAILBOXES_PER_SOURCE = 1
    elif cap == "per_worker":
        settings.GRAPH_MAILBOXES_PER_WORKER = 1

    assert attempt(source.pk) is None

    stats = fake.stats()
    if cap == "none":
        assert stats.max_mailboxes_in_flight > 1  # the mailboxes overlapped in time
    else:
        assert stats.max_mailboxes_in_flight == 1  # one mailbox after another
    for box in boxes:
        assert 1 <= fake.stats(box).max_in_flight <= 4
    assert stats.concurrency_rejections == 0 and stats.throttled == 0
    expected = {("Inbox", i): raw for box in mails.values() for i, raw in box.items()}
    assert originals(source) == expected
    run = source.runs.get()
    assert (run.status, run.new) == (RunStatus.OK, 72)
