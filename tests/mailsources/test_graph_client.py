# ruff: noqa: F811  (pytest fixtures imported from graph_pipeline are parameters here)
"""The Microsoft Graph client against the local Entra ID + Graph fake.

No Django, no database: the client is exercised through its real code paths and only configured
to talk to the fake (authority host, Graph URL, CA bundle). ``Ledger`` plays the ingestion
pipeline: it answers ``known`` mailbox-wide and stores a batch's cursor only after its messages.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
import requests
import trustme

from mailsources import pacing
from mailsources.clients.base import FolderBatch, PermanentSourceError, SourceError, TransientSourceError
from mailsources.clients.graph import GraphClient, parse_retry_after
from tests.fakes.graph_fake import GraphFake, ManualClock, free_port, iter_mime_batch, make_mime

# The fake server, its per-test reset and the loopback-only guard are shared
# with the pipeline tests.
from tests.mailsources.graph_pipeline import ALICE, BOB, fake, graph_server, loopback_only  # noqa: E402, F401

# ------------------------------------------------------------------------------------- helpers


class Tenant:
    """One Entra tenant with an app registration and alice's mailbox."""

    def __init__(self, fake: GraphFake, *, roles: Iterable[str] = ("Mail.Read",)) -> None:
        self.fake = fake
        self.tenant = fake.add_tenant(domains=["contoso.com"])
        self.client_id, self.secret = fake.add_app(self.tenant, roles=roles)
        fake.add_mailbox(ALICE, tenant=self.tenant)
        self._clients: list[GraphClient] = []

    def client(self, mailbox: str = ALICE, **overrides: Any) -> GraphClient:
        settings: dict[str, Any] = {
            "page_size": 25,
            "rate_limit": None,  # pacing has its own test; keep the others fast
            "backoff_base": 0.05,
            "timeout": (2.0, 5.0),
            **self.fake.client_config(),
        }
        settings.update(overrides)
        tenant = settings.pop("tenant", self.tenant)
        client_id = settings.pop("client_id", self.client_id)
        secret = settings.pop("client_secret", self.secret)
        client = GraphClient(tenant, client_id, secret, mailbox, **settings)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def m365(fake: GraphFake) -> Iterator[Tenant]:
    tenant = Tenant(fake, roles=("Mail.ReadWrite",))
    yield tenant
    tenant.close()


class Ledger:
    """What the pipeline records: locations (mailbox-wide), blobs, cursors, removals."""

    def __init__(self) -> None:
        self.locations: dict[str, str] = {}  # immutable id -> sha256
        self.blobs: dict[str, bytes] = {}
        self.cursors: dict[str, dict[str, Any]] = {}
        self.downloads: collections.Counter[str] = collections.Counter()
        self.removed: list[str] = []
        self.seen_known: list[str] = []
        self.batches: list[FolderBatch] = []

    def known(self, epoch: str, locations: Iterable[str]) -> set[str]:
        assert epoch == ""
        return {loc for loc in locations if loc in self.locations}

    def commit(self, folder: str, batch: FolderBatch) -> None:
        for message in batch.messages:
            sha = hashlib.sha256(message.raw).hexdigest()
            self.downloads[message.location] += 1
            self.locations[message.location] = sha
            self.blobs[sha] = message.raw
        self.removed.extend(batch.removed)
        self.seen_known.extend(batch.known_locations)
        self.cursors[folder] = batch.cursor  # only after the messages, as the pipeline does
        self.batches.append(batch)

    def sync(
        self,
        client: GraphClient,
        folder: str,
        *,
        min_age_days: int = 0,
        known: Callable[[str, Iterable[str]], set[str]] | None = None,
    ) -> list[FolderBatch]:
        batches = []
        for batch in client.sync_folder(
            folder, self.cursors.get(folder), known or self.known, min_age_days=min_age_days
        ):
            self.commit(folder, batch)
            batches.append(batch)
        return batches


def add_messages(fake: GraphFake, folder: str, count: int, *, mailbox: str = ALICE, prefix: str = "m") -> list[str]:
    base = datetime.now(UTC) - timedelta(days=5)
    return [
        fake.add_message(
            mailbox,
            folder,
            make_mime(subject=f"{prefix} {folder} {i}", date=base + timedelta(minutes=i)),
            base + timedelta(minutes=i),
        )
        for i in range(count)
    ]


def raw_of(fake: GraphFake, ids: Iterable[str], mailbox: str = ALICE) -> set[str]:
    """sha256 of what the fake serves for these ids (through its own store)."""
    with fake._lock:  # test-side peek into the fake's state, not the client's
        box = fake._mailboxes[mailbox]
        return {hashlib.sha256(box.messages[box.ids[i]].raw).hexdigest() for i in ids}


def delta_requests(fake: GraphFake) -> list[Any]:
    return [r for r in fake.requests if r.kind == "delta"]


# ------------------------------------------------------------------------------------ sync


def test_first_sync_archives_every_folder_once_and_skips_search_folders(fake: GraphFake, m365: Tenant) -> None:
    fake.add_folder(ALICE, "Projects", "inbox")
    fake.add_folder(ALICE, "2024", "Inbox/Projects")
    fake.add_folder(ALICE, "Unread mail", "inbox", search=True, search_sources=["inbox"])
    inbox = add_messages(fake, "inbox", 12)
    projects = add_messages(fake, "Inbox/Projects", 3)
    deep = add_messages(fake, "Inbox/Projects/2024", 2)
    sent = add_messages(fake, "sentitems", 4)
    hidden = add_messages(fake, "clutter", 1)
    client = m365.client(page_size=5)

    folders = client.list_folders()
    names = [f.name for f in folders]
    assert names[:4] == ["Inbox", "Inbox/Projects", "Inbox/Projects/2024", "Drafts"]
    assert "Sent Items" in names and "Inbox/Unread mail" not in names and "Clutter" not in names
    assert {f.name: f.total for f in folders}["Inbox"] == 12

    ledger = Ledger()
    for folder in names:
        ledger.sync(client, folder)

    expected = inbox + projects + deep + sent
    assert sorted(ledger.locations) == sorted(expected)
    assert set(ledger.downloads.values()) == {1}
    assert set(ledger.locations.values()) == raw_of(fake, expected)
    assert not set(hidden) & set(ledger.locations)
    # Every folder ends on a deltaLink; the last page of a round is the only one that has it.
    assert all("delta_link" in ledger.cursors[name] for name in names)
    assert all("next_link" in b.cursor for b in ledger.batches if "delta_link" not in b.cursor)
    # Delta with immutable ids, the page size and only the minimal properties.
    for record in delta_requests(fake):
        assert 'IdType="ImmutableId"' in record.prefer and "odata.maxpagesize=5" in record.prefer
    first_pages = [r for r in delta_requests(fake) if "token" not in r.query]
    assert first_pages and all("$select=id,receivedDateTime" in r.query for r in first_pages)
    assert fake.stats().by_kind["value"] == len(expected)


def test_incremental_round_fetches_only_new_mail(fake: GraphFake, m365: Tenant) -> None:
    add_messages(fake, "inbox", 8)
    client = m365.client(page_size=3)
    ledger = Ledger()
    ledger.sync(client, "Inbox")
    fake.reset_stats()

    unchanged = ledger.sync(client, "Inbox")
    assert [m for b in unchanged for m in b.messages] == []
    assert fake.stats().by_kind["value"] == 0  # an unchanged mailbox downloads no body

    new = add_messages(fake, "inbox", 4, prefix="new")
    fake.reset_stats()
    batches = ledger.sync(client, "Inbox")
    assert sorted(m.location for b in batches for m in b.messages) == sorted(new)
    assert fake.stats().by_kind["value"] == 4
    assert set(ledger.downloads.values()) == {1}
    assert all(b.resync is False for b in batches)


def test_moved_mail_keeps_its_immutable_id_and_is_not_downloaded_again(fake: GraphFake, m365: Tenant) -> None:
    ids = add_messages(fake, "inbox", 5)
    client = m365.client()
    ledger = Ledger()
    ledger.sync(client, "Inbox")
    ledger.sync(client, "Archive")
    regular_before = set(fake.message_ids(ALICE, "inbox", immutable=False))

    moved = ids[2]
    fake.move_message(ALICE, moved, "archive")
    assert moved in fake.message_ids(ALICE, "archive")  # same immutable id after the move
    assert not set(fake.message_ids(ALICE, "archive", immutable=False)) & regular_before  # regular id changed

    fake.reset_stats()
    ledger.sync(client, "Inbox")
    ledger.sync(client, "Archive")
    assert ledger.removed == [moved]  # @removed from the Inbox ...
    assert ledger.seen_known == [moved]  # ... listed in Archive, known, not fetched
    assert ledger.downloads[moved] == 1
    assert fake.stats().by_kind["value"] == 0


def test_delta_reset_410_resyncs_the_folder_without_duplicates(fake: GraphFake, m365: Tenant) -> None:
    add_messages(fake, "inbox", 6)
    client = m365.client(page_size=4)
    ledger = Ledger()
    ledger.sync(client, "Inbox")
    new = add_messages(fake, "inbox", 2, prefix="after")
    fake.invalidate_delta(ALICE, "inbox")
    fake.reset_stats()

    batches = ledger.sync(client, "Inbox")

    assert fake.stats().by_status[410] == 1
    assert batches and all(b.resync for b in batches)
    assert sorted(m.location for b in batches for m in b.messages) == sorted(new)
    assert set(ledger.downloads.values()) == {1}
    assert "delta_link" in ledger.cursors["Inbox"] and "resync" not in ledger.cursors["Inbox"]
    # The next round is an ordinary one again.
    add_messages(fake, "inbox", 1, prefix="later")
    assert [b.resync for b in ledger.sync(client, "Inbox")] == [False]


def test_a_run_killed_mid_round_resumes_from_the_stored_next_link(fake: GraphFake, m365: Tenant) -> None:
    ids = add_messages(fake, "inbox", 11)
    ledger = Ledger()
    first = m365.client(page_size=4)
    run = first.sync_folder("Inbox", None, ledger.known)
    ledger.commit("Inbox", next(run))  # one page committed, then the worker dies
    run.close()
    assert "next_link" in ledger.cursors["Inbox"]

    ledger.sync(m365.client(page_size=4), "Inbox")  # a new worker, a new client
    assert sorted(ledger.locations) == sorted(ids)
    assert set(ledger.downloads.values()) == {1}

    # Killed mid-round and the skip token expired meanwhile: a resync, still nothing doubled.
    more = add_messages(fake, "inbox", 9, prefix="more")
    run = m365.client(page_size=4).sync_folder("Inbox", ledger.cursors["Inbox"], ledger.known)
    ledger.commit("Inbox", next(run))
    run.close()
    fake.invalidate_delta(ALICE, "inbox")
    batches = ledger.sync(m365.client(page_size=4), "Inbox")
    assert all(b.resync for b in batches)
    assert sorted(ledger.locations) == sorted(ids + more)
    assert set(ledger.downloads.values()) == {1}


def test_a_large_page_is_split_by_bytes_and_a_crash_inside_it_repeats_only_the_rest(
    fake: GraphFake, m365: Tenant
) -> None:
    ids = add_messages(fake, "inbox", 10)
    with fake._lock:  # test-side peek: 3 messages of at least this size fill a batch, 2 never do
        box = fake._mailboxes[ALICE]
        size = min(len(box.messages[box.ids[i]].raw) for i in ids)
    ledger = Ledger()
    run = m365.client(page_size=10, max_batch_bytes=3 * size).sync_folder("Inbox", None, ledger.known)
    first = next(run)
    assert len(first.messages) == 3 and "delta_link" not in first.cursor  # full at 3; re-reads the page
    ledger.commit("Inbox", first)
    run.close()

    batches = ledger.sync(m365.client(page_size=10, max_batch_bytes=3 * size), "Inbox")
    assert len(batches) > 1 and "delta_link" in batches[-1].cursor
    assert sorted(ledger.locations) == sorted(ids)
    assert set(ledger.downloads.values()) == {1}


def test_mail_waiting_on_the_network_is_handed_out_before_its_batch_is_full(fake: GraphFake, m365: Tenant) -> None:
    # Paced by Graph (~17 mails/s a mailbox), a batch of 250 would wait 15 s for its last
    # mail: what has waited max_batch_wait is handed out when the next download is not there.
    ids = add_messages(fake, "inbox", 12)
    fake.set_latency(0.1, path=r"/\$value$")  # 4 downloads at a time, 0.1 s each: 3 waves
    ledger = Ledger()
    batches = ledger.sync(m365.client(page_size=100, max_batch_wait=0.0), "Inbox")
    assert len(batches) > 1 and all(b.messages for b in batches)
    assert all("delta_link" not in b.cursor for b in batches[:-1])  # the page is re-read on a crash
    assert "delta_link" in batches[-1].cursor
    assert sorted(ledger.locations) == sorted(ids) and set(ledger.downloads.values()) == {1}

    # Without max_batch_wait the page is one batch, however slow its downloads.
    fake.add_mailbox(BOB, tenant=m365.tenant)
    bobs = add_messages(fake, "inbox", 12, mailbox=BOB)
    batches = Ledger().sync(m365.client(BOB, page_size=100, max_batch_wait=None), "Inbox")
    assert [sorted(m.location for m in b.messages) for b in batches] == [sorted(bobs)]


def test_replayed_entries_and_empty_pages_are_harmless(fake: GraphFake, m365: Tenant) -> None:
    ids = add_messages(fake, "inbox", 10)
    fake.delta_replay = True
    fake.delta_empty_page = True
    ledger = Ledger()
    ledger.sync(m365.client(page_size=3), "Inbox")
    assert sorted(ledger.locations) == sorted(ids)
    assert set(ledger.downloads.values()) == {1}


def test_a_localized_inbox_is_found_by_its_well_known_name(fake: GraphFake) -> None:
    tenant = fake.add_tenant(domains=["beispiel.de"])
    client_id, secret = fake.add_app(tenant)
    fake.add_mailbox("anna@beispiel.de", tenant=tenant, display_names={"inbox": "Posteingang"})
    ids = add_messages(fake, "inbox", 3, mailbox="anna@beispiel.de")
    with GraphClient(tenant, client_id, secret, "anna@beispiel.de", rate_limit=None, **fake.client_config()) as client:
        assert "Posteingang" in [f.name for f in client.list_folders()]
        report = client.test_connection()
        assert "Inbox (Posteingang): 3 messages" in report.lines
        ledger = Ledger()
        ledger.sync(client, "Inbox")
        assert sorted(ledger.locations) == sorted(ids)


def test_min_age_days_keeps_young_mail_pending_until_it_is_old_enough(fake: GraphFake, m365: Tenant) -> None:
    old = fake.add_message(ALICE, "inbox", make_mime(subject="old"), datetime.now(UTC) - timedelta(days=9))
    young = fake.add_message(ALICE, "inbox", make_mime(subject="young"), datetime.now(UTC) - timedelta(hours=2))
    client = m365.client()
    ledger = Ledger()
    ledger.sync(client, "Inbox", min_age_days=3)
    assert list(ledger.locations) == [old]
    assert list(ledger.cursors["Inbox"]["pending"]) == [young]
    assert "delta_link" in ledger.cursors["Inbox"]  # the round itself is complete

    ledger.sync(client, "Inbox", min_age_days=3)  # still too young
    assert young not in ledger.locations
    # Time passes (or the setting is lowered): the pending mail is fetched by id.
    ledger.sync(client, "Inbox", min_age_days=0)
    assert sorted(ledger.locations) == sorted([old, young])
    assert "pending" not in ledger.cursors["Inbox"]
    assert set(ledger.downloads.values()) == {1}


def test_about_one_graph_request_per_archived_mail_at_page_size_1000(fake: GraphFake, m365: Tenant) -> None:
    ids = [fake.add_message(ALICE, "inbox", raw, received) for raw, received in iter_mime_batch(400)]
    client = m365.client(page_size=1000)
    fake.reset_stats()
    ledger = Ledger()
    ledger.sync(client, "Inbox")
    assert len(ledger.locations) == len(ids)
    assert fake.stats().graph_requests / len(ids) <= 1.01


@pytest.mark.parametrize(
    ("mails", "page_size"),
    [(0, 25), (1, 25), (25, 25), (26, 25), (260, 25), (999, 1000), (1000, 1000), (1001, 1000)],
)
def test_a_mailbox_of_k_mails_at_page_size_p_costs_k_downloads_ceil_k_over_p_pages_and_one_lookup(
    fake: GraphFake, m365: Tenant, mails: int, page_size: int
) -> None:
    # Issue 18: <= 1.05 requests per mail at the default 25, <= 1.01 at 1000. The floor is one
    # $value per mail and one delta page per page_size mails; nothing else may be spent per
    # mail (no $count, no second listing, no re-read page, no retry).
    ids = [fake.add_message(ALICE, "inbox", raw, received) for raw, received in iter_mime_batch(mails)]
    fake.reset_stats()
    ledger = Ledger()
    ledger.sync(m365.client(page_size=page_size), "Inbox")

    assert sorted(ledger.locations) == sorted(ids)
    pages = max(1, -(-mails // page_size))
    stats = fake.stats()
    graph = {kind: n for kind, n in stats.by_kind.items() if kind not in {"entra", "token", "discovery"}}
    assert graph == {"folders": 1, "delta": pages, **({"value": mails} if mails else {})}
    assert stats.graph_requests == mails + pages + 1
    if mails >= 1000:
        assert stats.graph_requests / mails <= 1.01
    elif mails >= 260 and page_size == 25:
        assert stats.graph_requests / mails <= 1.05

    # A round without changes: the folder lookup and one delta page.
    fake.reset_stats()
    ledger.sync(m365.client(page_size=page_size), "Inbox")
    assert fake.stats().graph_requests == 2 and fake.stats().by_kind["delta"] == 1


def test_deleted_mail_is_reported_removed_and_vanished_mail_is_skipped(fake: GraphFake, m365: Tenant) -> None:
    ids = add_messages(fake, "inbox", 4)
    client = m365.client()
    ledger = Ledger()
    ledger.sync(client, "Inbox")
    fake.delete_message(ALICE, ids[0])
    new = add_messages(fake, "inbox", 2, prefix="new")

    deleted_between_page_and_download = new[0]

    def known(epoch: str, locations: Iterable[str]) -> set[str]:
        locations = list(locations)
        if deleted_between_page_and_download in locations:
            fake.delete_message(ALICE, deleted_between_page_and_download)
        return ledger.known(epoch, locations)

    batches = ledger.sync(client, "Inbox", known=known)
    assert [r for b in batches for r in b.removed] == [ids[0]]
    assert [m.location for b in batches for m in b.messages] == [new[1]]


# ------------------------------------------------------------------------- throttling and faults


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's waits, on a clock the test owns: a wait moves the clock instead of
    sleeping, and is recorded."""
    clock = ManualClock(start=time.monotonic())
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    monkeypatch.setattr(pacing, "monotonic", clock)
    monkeypatch.setattr(pacing, "sleep", sleep)
    return slept


@pytest.mark.parametrize(
    "retry_after",
    [
        pytest.param("1", id="integer"),
        pytest.param("0.35", id="fraction"),
        pytest.param("date", id="http-date"),
        pytest.param(None, id="absent"),
    ],
)
def test_429_is_retried_honouring_retry_after(
    fake: GraphFake, m365: Tenant, retry_after: str | None, waits: list[float]
) -> None:
    ids = add_messages(fake, "inbox", 3)
    value = email.utils.formatdate(time.time() + 2, usegmt=True) if retry_after == "date" else retry_after
    fake.inject_error(429, path=r"/\$value$", times=1, retry_after=value)
    client = m365.client(backoff_base=0.2)
    ledger = Ledger()
    ledger.sync(client, "Inbox")
    assert sorted(ledger.locations) == sorted(ids)
    assert fake.stats().throttled == 1
    # The transport waits what the server named (a date: until then, in whole seconds;
    # nothing named: its own backoff, 0.2 s with jitter), and the mailbox's limiter holds its
    # other threads no longer than that: every wait of the run lies in that range.
    low, high = {"1": (1.0, 1.0), "0.35": (0.35, 0.35), "date": (0.5, 2.0), None: (0.16, 0.24)}[retry_after]
    assert waits and all(w <= high + 1e-6 for w in waits)
    assert max(waits) >= low - 1e-6


def test_a_long_retry_after_is_not_slept_but_rescheduled(fake: GraphFake, m365: Tenant, waits: list[float]) -> None:
    add_messages(fake, "inbox", 2)
    fake.inject_error(429, path="/delta", times=1, retry_after="120")
    with pytest.raises(TransientSourceError) as caught:
        Ledger().sync(m365.client(max_inline_wait=5), "Inbox")
    assert waits == []  # not one second of the 120 was slept
    assert caught.value.code == "throttled" and caught.value.retry_after == 120


def test_a_long_retry_after_mid_page_hands_out_the_downloads_and_stops_the_mailbox(
    fake: GraphFake, m365: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(start=time.monotonic())  # the mailbox limiter's: its pause ends when moved
    monkeypatch.setattr(pacing, "monotonic", clock)
    ids = list(reversed(add_messages(fake, "inbox", 40)))  # as the delta round lists them
    fake.inject_error(429, path=rf"/messages/{ids[20]}/\$value$", times=1, retry_after="120")
    ledger = Ledger()
    client = m365.client(page_size=1000)

    with pytest.raises(TransientSourceError) as caught:
        ledger.sync(client, "Inbox")

    assert caught.value.code == "throttled" and caught.value.retry_after == 120
    # The page's downloads before the throttled one (and any finished after it) were handed
    # out to be committed; the mailbox's other threads stopped instead of sleeping 120 s.
    assert set(ids[:20]) <= set(ledger.locations) and ids[20] not in ledger.locations
    assert ledger.cursors["Inbox"].get("delta_link") is None  # the page is read again
    client.close()  # no thread of the mailbox is left waiting out the pause

    handed_out = set(ledger.locations)
    fake.reset_stats()
    clock.advance(120)
    ledger.sync(m365.client(page_size=1000), "Inbox")
    assert sorted(ledger.locations) == sorted(ids)
    fetched = {unquote(r.path.split("/")[-2]) for r in fake.requests if r.kind == "value"}
    assert fetched and not fetched & handed_out  # nothing handed out is fetched again
    assert set(ledger.downloads.values()) == {1}


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2") == 2
    assert parse_retry_after("2.128") == pytest.approx(2.128)
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(email.utils.formatdate(1_000_030, usegmt=True), now=1_000_000) == pytest.approx(30)


def test_503_bursts_and_gateway_timeouts_are_retried(fake: GraphFake, m365: Tenant) -> None:
    ids = add_messages(fake, "inbox", 6)
    fake.inject_error(503, path="/delta", times=3)
    fake.inject_error(504, path=r"/\$value$", times=2, body=b"<html><body>504 Gateway Time-out</body></html>")
    ledger = Ledger()
    ledger.sync(m365.client(page_size=4), "Inbox")
    assert sorted(ledger.locations) == sorted(ids)
    assert fake.stats().by_status[503] == 3 and fake.stats().by_status[504] == 2


def test_a_persistent_outage_ends_in_a_transient_error(fake: GraphFake, m365: Tenant) -> None:
    add_messages(fake, "inbox", 2)
    fake.inject_error(503, path="/delta", times=None, retry_after="0.05")
    with pytest.raises(TransientSourceError) as caught:
        Ledger().sync(m365.client(max_attempts=3), "Inbox")
    assert caught.value.code == "unavailable"
    assert fake.stats().by_status[503] == 3


def test_a_slow_body_times_out_and_is_retried(fake: GraphFake, m365: Tenant) -> None:
    ids = add_messages(fake, "inbox", 2)
    fake.inject_error(200, path=r"/\$value$", times=1, slow_body=1.0)
    ledger = Ledger()
    ledger.sync(m365.client(timeout=(2.0, 0.3)), "Inbox")
    assert sorted(ledger.locations) == sorted(ids)

    fake.inject_error(200, path=r"/\$value$", times=None, slow_body=1.0)
    add_messages(fake, "inbox", 1, prefix="late")
    with pytest.raises(TransientSourceError) as caught:
        ledger.sync(m365.client(timeout=(2.0, 0.3), max_attempts=2), "Inbox")
    assert caught.value.code == "timeout"


def test_the_fifth_concurrent_request_never_happens(fake: GraphFake, m365: Tenant) -> None:
    fake.set_throttle(max_concurrent=4)
    fake.set_latency(0.02)
    fake.add_folder(ALICE, "Projects", "inbox")
    add_messages(fake, "inbox", 30)
    add_messages(fake, "Inbox/Projects", 30)
    # Two workers' clients for the same mailbox in one process, syncing two folders at once.
    clients = [m365.client(page_size=10), m365.client(page_size=10)]
    ledgers = [Ledger(), Ledger()]
    errors: list[BaseException] = []

    def run(index: int, folder: str) -> None:
        try:
            ledgers[index].sync(clients[index], folder)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(0, "Inbox")),
        threading.Thread(target=run, args=(1, "Inbox/Projects")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(ledgers[0].locations) == 30 and len(ledgers[1].locations) == 30
    stats = fake.stats(ALICE)
    assert stats.concurrency_rejections == 0
    assert 2 <= stats.max_in_flight <= 4
    assert stats.throttled == 0


def test_requests_are_paced_under_the_throttle_window(fake: GraphFake, m365: Tenant) -> None:
    # Graph's 10,000 requests / 600 s scaled down to 60 requests / 1 s.
    fake.set_throttle(max_concurrent=4, window_requests=60, window_seconds=1.0, retry_after="float")
    ids = add_messages(fake, "inbox", 100)
    client = m365.client(page_size=1000, rate_limit=(60, 1.0))
    started = time.monotonic()
    ledger = Ledger()
    ledger.sync(client, "Inbox")
    elapsed = time.monotonic() - started
    assert sorted(ledger.locations) == sorted(ids)
    stats = fake.stats(ALICE)
    assert stats.window_rejections == 0 and stats.throttled == 0
    # ~102 requests at 60/s: the client waited for the second window (a lower bound the
    # pacing guarantees, not a speed: no upper bound on a loaded machine).
    assert elapsed > 0.6


def test_a_throttled_mailbox_backs_off_as_a_whole(fake: GraphFake, m365: Tenant) -> None:
    # Without pacing the client hits the window; Retry-After pauses it and the run completes.
    # A window long enough that even a slow, loaded machine runs into it (41 requests, 15 per 4 s).
    fake.set_throttle(max_concurrent=4, window_requests=15, window_seconds=4.0, retry_after="float")
    ids = add_messages(fake, "inbox", 40)
    ledger = Ledger()
    client = m365.client(page_size=1000)
    for _ in range(5):  # what the task does when a long throttle ends a run: run again later
        try:
            ledger.sync(client, "Inbox")
            break
        except TransientSourceError as exc:
            assert exc.code == "throttled"
    assert sorted(ledger.locations) == sorted(ids)
    # It was throttled and still archived everything; how few 429s pacing leaves is the
    # pacing test's business (without pacing, threads contend for each freed window slot).
    assert fake.stats(ALICE).window_rejections >= 1


def test_a_cross_process_request_gate_wraps_every_graph_request(fake: GraphFake, m365: Tenant) -> None:
    # What a Redis semaphore shared by all workers would plug into.
    add_messages(fake, "inbox", 12)
    entered: collections.Counter[str] = collections.Counter()
    active, peak = [0], [0]
    lock = threading.Lock()

    @contextlib.contextmanager
    def gate(key: str) -> Iterator[None]:
        with lock:
            entered[key] += 1
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            yield
        finally:
            with lock:
                active[0] -= 1

    Ledger().sync(m365.client(request_gate=gate), "Inbox")
    assert list(entered) == [f"graph:{m365.tenant}:{m365.client_id}:{ALICE}".lower()]
    assert sum(entered.values()) == fake.stats().graph_requests
    assert peak[0] <= 4


def test_a_stored_link_to_another_host_is_never_followed(fake: GraphFake, m365: Tenant) -> None:
    ids = add_messages(fake, "inbox", 3)
    ledger = Ledger()
    ledger.cursors["Inbox"] = {
        "v": 1,
        "folder_id": fake.folder_id(ALICE, "inbox"),
        "delta_link": "https://graph.example.net/v1.0/users/x/mailFolders('y')/messages/delta?$deltatoken=z",
    }
    batches = ledger.sync(m365.client(), "Inbox")  # loopback_only would fail any other host
    assert all(b.resync for b in batches)
    assert sorted(ledger.locations) == sorted(ids)


# ----------------------------------------------------------------------------------- tokens


def test_a_token_revoked_mid_run_is_renewed_and_the_run_completes(fake: GraphFake, m365: Tenant) -> None:
    ids = add_messages(fake, "inbox", 9)
    ledger = Ledger()
    revoked = []

    def known(epoch: str, locations: Iterable[str]) -> set[str]:
        if not revoked:  # the token dies between listing the first page and downloading it
            fake.revoke_tokens()
            revoked.append(True)
        return ledger.known(epoch, locations)

    ledger.sync(m365.client(page_size=4), "Inbox", known=known)
    assert sorted(ledger.locations) == sorted(ids)
    stats = fake.stats()
    # Renewed once, however many downloads saw the revoked token fail; the new one never failed.
    assert stats.tokens_issued == 2 and stats.tokens_refused == 1
    assert 1 <= stats.by_status[401] <= 4  # one per download in flight with the revoked token


def test_a_token_revoked_mid_run_costs_one_refused_request(fake: GraphFake, m365: Tenant) -> None:
    ids = add_messages(fake, "inbox", 9)
    ledger = Ledger()

    def known(epoch: str, locations: Iterable[str]) -> set[str]:
        if fake.stats().tokens_refused == 0:
            fake.revoke_tokens()
        return ledger.known(epoch, locations)

    ledger.sync(m365.client(page_size=4, max_concurrent=1), "Inbox", known=known)
    assert sorted(ledger.locations) == sorted(ids)
    stats = fake.stats()
    assert (stats.tokens_issued, stats.tokens_refused, stats.by_status[401]) == (2, 1, 1)


def test_a_token_that_expires_is_renewed_before_graph_refuses_it(fake: GraphFake, m365: Tenant) -> None:
    # msal renews when < 5 minutes remain. O365 2.1.10 + msal >= 1.32 crash on the first request
    # after that with AssertionError (GRAPH.md d1.1); a worker lives for days.
    clock = ManualClock()
    fake.clock = clock  # Graph and the client agree on the time; neither waits for it
    fake.set_token_lifetime(3599)
    client = m365.client(clock=clock)
    add_messages(fake, "inbox", 2)
    ledger = Ledger()
    ledger.sync(client, "Inbox")
    assert fake.stats().tokens_issued == 1
    clock.advance(3600)  # the token has expired: Graph would refuse it now
    add_messages(fake, "inbox", 2, prefix="later")
    ledger.sync(client, "Inbox")
    assert len(ledger.locations) == 4
    assert fake.stats().tokens_issued == 2
    assert fake.stats().by_status[401] == 0


def test_a_token_is_kept_until_less_than_five_minutes_remain(fake: GraphFake, m365: Tenant) -> None:
    clock = ManualClock()
    fake.clock = clock
    client = m365.client(clock=clock)
    add_messages(fake, "inbox", 2)
    ledger = Ledger()
    ledger.sync(client, "Inbox")
    clock.advance(3599 - 300 - 1)
    add_messages(fake, "inbox", 1, prefix="still fresh")
    ledger.sync(client, "Inbox")
    assert fake.stats().tokens_issued == 1
    clock.advance(2)
    add_messages(fake, "inbox", 1, prefix="due")
    ledger.sync(client, "Inbox")
    assert len(ledger.locations) == 4
    assert fake.stats().tokens_issued == 2 and fake.stats().by_status[401] == 0


def test_graph_rejecting_tokens_early_is_survived(fake: GraphFake, m365: Tenant) -> None:
    clock = ManualClock()
    fake.clock = clock
    fake.set_token_lifetime(3599, server_lifetime=60)  # Graph refuses tokens after 60 s
    ids = add_messages(fake, "inbox", 12)
    ledger = Ledger()

    def known(epoch: str, locations: Iterable[str]) -> set[str]:
        if clock() < 1_000_060:  # between listing the first page and downloading it
            clock.advance(61)
        return ledger.known(epoch, locations)

    # The client's own clock says its token is good for an hour: only Graph's 401 tells it.
    ledger.sync(m365.client(page_size=3, max_concurrent=1), "Inbox", known=known)
    assert sorted(ledger.locations) == sorted(ids)
    stats = fake.stats()
    assert (stats.tokens_issued, stats.tokens_refused, stats.by_status[401]) == (2, 1, 1)


# ----------------------------------------------------------------------- test connection


def test_connection_report(fake: GraphFake, m365: Tenant) -> None:
    fake.add_folder(ALICE, "Projects", "inbox")
    fake.add_message(ALICE, "inbox", make_mime(subject="Older"), datetime.now(UTC) - timedelta(days=2))
    fake.add_message(ALICE, "inbox", make_mime(subject="Quarterly report"), datetime.now(UTC) - timedelta(hours=1))
    report = m365.client().test_connection()
    assert report.lines[0].startswith("Authenticated")
    assert f"Mailbox: {ALICE}" in report.lines
    assert "Inbox: 2 messages" in report.lines
    assert any(line.startswith("Newest message: Quarterly report") for line in report.lines)
    assert report.newest_subject == "Quarterly report"
    assert "Inbox/Projects" in [f.name for f in report.folders]


def test_connection_trusts_requests_ca_bundle_when_no_ca_bundle_is_given(
    fake: GraphFake, m365: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_pem)
    report = m365.client(ca_bundle=None).test_connection()
    assert "Inbox: 0 messages" in report.lines


def _unknown_app(m365: Tenant) -> dict[str, Any]:
    return {"client_id": "11111111-2222-3333-4444-555555555555"}


def _expired_secret(m365: Tenant) -> dict[str, Any]:
    m365.fake.update_app(m365.client_id, secret_expired=True)
    return {}


def _no_permission(m365: Tenant) -> dict[str, Any]:
    m365.fake.update_app(m365.client_id, roles=())
    return {}


def _access_policy(m365: Tenant) -> dict[str, Any]:
    m365.fake.update_app(m365.client_id, allowed_mailboxes=["someone-else@contoso.com"])
    return {}


def _unknown_mailbox(m365: Tenant) -> dict[str, Any]:
    return {"mailbox": "nobody@contoso.com"}


def _not_rest(m365: Tenant) -> dict[str, Any]:
    m365.fake.add_mailbox("onprem@contoso.com", tenant=m365.tenant, state="not_rest")
    return {"mailbox": "onprem@contoso.com"}


def _no_mailbox(m365: Tenant) -> dict[str, Any]:
    m365.fake.add_mailbox("nolicense@contoso.com", tenant=m365.tenant, state="no_mailbox")
    return {"mailbox": "nolicense@contoso.com"}


def _entra_unreachable(m365: Tenant) -> dict[str, Any]:
    return {"authority_host": f"https://127.0.0.1:{free_port()}"}


def _graph_unreachable(m365: Tenant) -> dict[str, Any]:
    return {"graph_url": f"https://127.0.0.1:{free_port()}"}


def _entra_throttling(m365: Tenant) -> dict[str, Any]:
    m365.fake.inject_error(429, path="/oauth2/v2.0/token", times=None, retry_after="30")
    return {}


def _entra_outage(m365: Tenant) -> dict[str, Any]:
    m365.fake.inject_error(503, path="/oauth2/v2.0/token", times=None)
    return {}


def _untrusted_certificate(m365: Tenant) -> dict[str, Any]:
    other_ca = trustme.CA()
    path = m365.fake.ca_pem + ".other.pem"
    other_ca.cert_pem.write_to_path(path)
    return {"ca_bundle": path}


@pytest.mark.parametrize(
    ("setup", "error_class", "code", "text"),
    [
        (
            lambda t: {"client_secret": "not-the-secret"},
            PermanentSourceError,
            "auth_bad_secret",
            "AADSTS7000215",
        ),
        (_expired_secret, PermanentSourceError, "auth_expired_secret", "AADSTS7000222"),
        (_unknown_app, PermanentSourceError, "auth_unknown_app", "AADSTS700016"),
        (
            lambda t: {"tenant": "fabrikam.example"},
            PermanentSourceError,
            "auth_unknown_tenant",
            "AADSTS90002",
        ),
        (_no_permission, PermanentSourceError, "access_denied", "Mail.Read"),
        (_access_policy, PermanentSourceError, "access_denied", "Access to OData is disabled"),
        (_unknown_mailbox, PermanentSourceError, "mailbox_not_found", "nobody@contoso.com"),
        (_no_mailbox, PermanentSourceError, "mailbox_not_found", "has no mailbox"),
        (_not_rest, PermanentSourceError, "mailbox_not_rest", "on-premises"),
        (_entra_unreachable, TransientSourceError, "unreachable", "Entra ID"),
        (_graph_unreachable, TransientSourceError, "unreachable", "Microsoft Graph"),
        (_untrusted_certificate, PermanentSourceError, "tls_untrusted", "not trusted"),
        (_entra_throttling, TransientSourceError, "auth_unavailable", "temporarily unavailable"),
        (_entra_outage, TransientSourceError, "auth_unavailable", "Entra ID"),
    ],
    ids=[
        "bad-secret",
        "expired-secret",
        "unknown-app",
        "unknown-tenant",
        "no-mail-permission",
        "access-policy",
        "unknown-mailbox",
        "user-without-mailbox",
        "not-enabled-for-rest",
        "entra-unreachable",
        "graph-unreachable",
        "untrusted-certificate",
        "entra-throttling",
        "entra-outage",
    ],
)
def test_connection_errors_are_specific(
    fake: GraphFake,
    m365: Tenant,
    setup: Callable[[Tenant], dict[str, Any]],
    error_class: type[SourceError],
    code: str,
    text: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    overrides = setup(m365)
    client = m365.client(backoff_base=0.01, max_attempts=2, **overrides)
    with pytest.raises(error_class) as caught:
        client.test_connection()
    assert caught.value.code == code
    assert text in str(caught.value)
    assert_secret_absent(caught.value, m365.secret, caplog.text)


def test_sync_errors_of_one_mailbox_are_permanent(fake: GraphFake, m365: Tenant) -> None:
    fake.add_mailbox(BOB, tenant=m365.tenant)
    add_messages(fake, "inbox", 2, mailbox=BOB)
    fake.update_app(m365.client_id, allowed_mailboxes=[BOB])  # an access policy excludes alice
    with pytest.raises(PermanentSourceError) as caught:
        Ledger().sync(m365.client(ALICE), "Inbox")
    assert caught.value.code == "access_denied"
    ledger = Ledger()
    ledger.sync(m365.client(BOB), "Inbox")  # bob is unaffected
    assert len(ledger.locations) == 2


def test_an_unknown_folder_is_reported_as_such(fake: GraphFake, m365: Tenant) -> None:
    with pytest.raises(PermanentSourceError) as caught:
        Ledger().sync(m365.client(), "Inbox/Nope")
    assert caught.value.code == "folder_not_found"


def assert_secret_absent(error: BaseException, secret: str, log_text: str) -> None:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for exc in chain:
        assert secret not in str(exc) and secret not in repr(exc)
    assert secret not in log_text
    assert "Bearer ey" not in log_text  # O365 logs session headers at DEBUG


def test_the_secret_never_appears_in_errors_or_logs(
    fake: GraphFake, m365: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    add_messages(fake, "inbox", 3)
    client = m365.client()
    Ledger().sync(client, "Inbox")
    client.test_connection()
    fake.inject_error(500, path="/delta", times=None)
    with pytest.raises(TransientSourceError) as caught:
        Ledger().sync(m365.client(max_attempts=2), "Inbox")
    assert_secret_absent(caught.value, m365.secret, caplog.text)
    assert m365.secret not in repr(client)


# -------------------------------------------------------------------------- after archiving


def test_move_and_delete_after_archiving(fake: GraphFake, m365: Tenant) -> None:
    ids = add_messages(fake, "inbox", 4)
    client = m365.client()
    client.check_action_supported("move")
    client.check_action_supported("delete")
    client.move("Inbox", ids[:2], "Archive")
    client.delete("Inbox", ids[2:3])
    client.delete("Inbox", ids[2:3])  # already gone: fine
    assert sorted(fake.message_ids(ALICE, "archive")) == sorted(ids[:2])
    assert fake.message_ids(ALICE, "inbox") == ids[3:]
    with pytest.raises(PermanentSourceError) as caught:
        client.move("Inbox", ids[3:], "Nowhere")
    assert caught.value.code == "move_target_not_found"


def test_moving_needs_mail_readwrite(fake: GraphFake) -> None:
    tenant = Tenant(fake, roles=("Mail.Read",))
    try:
        client = tenant.client()
        client.check_action_supported("keep")
        with pytest.raises(PermanentSourceError) as caught:
            client.check_action_supported("move")
        assert caught.value.code == "access_denied" and "Mail.ReadWrite" in str(caught.value)
    finally:
        tenant.close()


def test_configuration_is_validated() -> None:
    with pytest.raises(ValueError):
        GraphClient("t", "c", "s", ALICE, page_size=0)
    with pytest.raises(ValueError):
        GraphClient("t", "c", "s", ALICE, page_size=1001)
    with pytest.raises(ValueError):
        GraphClient("t", "c", "s", ALICE, max_concurrent=5)


# ------------------------------------------------------------------------- the fake itself


def test_the_fake_answers_like_graph_documents_it(fake: GraphFake) -> None:
    tenant = fake.add_tenant(domains=["contoso.com"])
    client_id, secret = fake.add_app(tenant)
    fake.add_mailbox(ALICE, tenant=tenant)
    ids = add_messages(fake, "inbox", 12)
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would beat Session.verify
    session.verify = fake.ca_pem
    form = {
        "client_id": client_id,
        "client_secret": secret,
        "grant_type": "client_credentials",
        "scope": "https://graph.microsoft.com/.default",
    }
    token = session.post(f"{fake.base_url}/contoso.com/oauth2/v2.0/token", data=form).json()
    assert token["token_type"] == "Bearer" and "refresh_token" not in token
    bad = session.post(f"{fake.base_url}/{tenant}/oauth2/v2.0/token", data={**form, "client_secret": "x"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    assert bad.json()["error_codes"] == [7000215] and "Trace ID:" in bad.json()["error_description"]

    session.headers["Authorization"] = f"Bearer {token['access_token']}"
    base = f"{fake.base_url}/v1.0/users/{ALICE}"
    page = session.get(f"{base}/mailFolders/inbox/messages", params={"$top": "5", "$select": "subject"}).json()
    assert len(page["value"]) == 5 and "$skip=5" in page["@odata.nextLink"]
    assert set(page["value"][0]) == {"@odata.etag", "id", "subject"}
    assert len(session.get(f"{base}/mailFolders/inbox/messages").json()["value"]) == 10  # default page
    inefficient = session.get(
        f"{base}/mailFolders/inbox/messages", params={"$filter": "isRead eq false", "$orderby": "receivedDateTime"}
    )
    assert inefficient.status_code == 400 and inefficient.json()["error"]["code"] == "InefficientFilter"
    visible = [f["displayName"] for f in session.get(f"{base}/mailFolders", params={"$top": "50"}).json()["value"]]
    hidden = session.get(f"{base}/mailFolders", params={"$top": "50", "includeHiddenFolders": "true"}).json()
    assert "Clutter" not in visible and "Clutter" in [f["displayName"] for f in hidden["value"]]

    regular = session.get(f"{base}/messages/{ids[0]}").json()["id"]
    assert regular != ids[0]
    fake.move_message(ALICE, ids[0], "archive")
    gone = session.get(f"{base}/messages/{regular}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ErrorItemNotFound"
    same = session.get(f"{base}/messages/{ids[0]}", headers={"Prefer": 'IdType="ImmutableId"'})
    assert same.json()["id"] == ids[0]

    fake.revoke_tokens()
    expired = session.get(f"{base}/mailFolders")
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "WWW-Authenticate" in expired.headers
