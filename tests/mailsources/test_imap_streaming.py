"""Huge mails stream from the socket into the client's raw sink (``literal.py``),
against the real Dovecot, without Django: byte for byte, in bounded chunks, and
a line cut or a failing sink in the middle leaves nothing half stored.

Run alone with: .venv/bin/pytest -p no:django tests/mailsources/test_imap_streaming.py
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import hashlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsources.clients.base import FolderBatch, SourceError, TransientSourceError
from mailsources.clients.imap import ImapClient
from mailsources.clients.imap.literal import CHUNK, LiteralSpool
from tests.imap_server import Mailbox
from tests.mailsources.imap_pipeline import body_fetches
from tests.tcp_proxy import TcpProxy

pytest_plugins = ["tests.conftest_imap"]

MB = 1000 * 1000


def huge_mail(subject: str, megabytes: float) -> bytes:
    """A mail with a base64 attachment of random bytes, about ``megabytes`` MB."""
    head = (
        f"From: sender@example.com\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    payload = base64.encodebytes(os.urandom(int(megabytes * MB * 3 / 4))).replace(b"\n", b"\r\n")
    return head + payload


def small_mail(subject: str) -> bytes:
    return f"From: sender@example.com\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()


@dataclasses.dataclass(frozen=True)
class Stored:
    sha256: str
    size: int


class DirectorySink:
    """A raw sink like the store's (``archive.storage.put_chunks``): chunks go into a
    temporary file, hashed; it gets its digest as name only after the last chunk,
    and is removed when the chunks stop with an error."""

    def __init__(self, directory: Path, *, fail_after: int | None = None) -> None:
        self.directory = directory
        self.fail_after = fail_after  # bytes, then a full disk
        self.chunk_sizes: list[int] = []
        self._names = itertools.count()

    def __call__(self, chunks: Iterable[bytes]) -> Stored:
        tmp = self.directory / f".tmp-{next(self._names)}"
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    self.chunk_sizes.append(len(chunk))
                    if self.fail_after is not None and size + len(chunk) > self.fail_after:
                        raise OSError(errno.ENOSPC, "No space left on device")
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except BaseException:
            tmp.unlink()
            raise
        tmp.rename(self.directory / digest.hexdigest())
        return Stored(digest.hexdigest(), size)

    def files(self) -> list[str]:
        return sorted(p.name for p in self.directory.iterdir())

    def read(self, stored: Stored) -> bytes:
        return (self.directory / stored.sha256).read_bytes()


class Ledger:
    """What the pipeline does with batches: take each mail's bytes, then the cursor."""

    def __init__(self, sink: DirectorySink) -> None:
        self.sink = sink
        self.cursor: dict[str, Any] | None = None
        self.raws: dict[str, bytes] = {}
        self.streamed: list[str] = []

    def known(self, epoch: str, locations: Any) -> set[str]:
        return {loc for loc in locations if loc in self.raws}

    def run(self, client: ImapClient) -> list[FolderBatch]:
        batches = []
        for batch in client.sync_folder("INBOX", self.cursor, self.known):
            for message in batch.messages:
                if message.stored is not None:
                    assert message.raw == b""
                    self.streamed.append(message.location)
                    self.raws[message.location] = self.sink.read(message.stored)
                else:
                    self.raws[message.location] = message.raw
            self.cursor = batch.cursor
            batches.append(batch)
        return batches


@pytest.fixture
def sink(tmp_path: Path) -> DirectorySink:
    return DirectorySink(tmp_path)


@pytest.fixture
def make_client(imap_mailbox: Mailbox, sink: DirectorySink) -> Iterator[Callable[..., ImapClient]]:
    clients: list[ImapClient] = []

    def make(**overrides: Any) -> ImapClient:
        overrides.setdefault("raw_sink", sink)
        client = ImapClient(**imap_mailbox.client_kwargs("tls", **overrides))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_a_huge_mail_is_streamed_alone_into_the_sink_byte_for_byte(
    imap_mailbox: Mailbox,
    make_client: Callable[..., ImapClient],
    sink: DirectorySink,
    imap_commands: list[tuple[str, ...]],
) -> None:
    raws = [small_mail("before"), huge_mail("huge", 31), small_mail("after")]
    imap_mailbox.append_many("INBOX", raws)
    ledger = Ledger(sink)

    batches = ledger.run(make_client())

    assert [[m.location for m in b.messages] for b in batches] == [["1"], ["2"], ["3"]]
    assert ledger.streamed == ["2"]
    assert [ledger.raws[uid] for uid in ("1", "2", "3")] == raws
    assert sink.files() == [hashlib.sha256(raws[1]).hexdigest()]  # no temporary file left
    # From the socket in bounded pieces, never the whole literal at once.
    assert sum(sink.chunk_sizes) == len(raws[1]) and max(sink.chunk_sizes) <= CHUNK
    # One connection: after the streamed literal, it read the rest of the answer and the next FETCH.
    assert [c[2] for c in body_fetches(imap_commands)] == ["1", "2", "3"]
    assert ledger.run(make_client()) == []  # nothing new: the cursor passed all three


def test_without_a_sink_or_below_the_threshold_a_big_mail_arrives_in_memory(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient], sink: DirectorySink
) -> None:
    raw = huge_mail("big", 2)
    imap_mailbox.append("INBOX", raw)

    for client in (make_client(raw_sink=None, stream_bytes=MB), make_client(stream_bytes=3 * MB)):
        ledger = Ledger(sink)
        ledger.run(client)
        assert ledger.raws == {"1": raw} and ledger.streamed == []
    assert sink.files() == []


def test_a_line_cut_in_the_middle_of_a_streamed_mail_leaves_nothing_half_stored(
    dovecot: Any,
    imap_mailbox: Mailbox,
    make_client: Callable[..., ImapClient],
    sink: DirectorySink,
    tcp_proxy_factory: Callable[..., TcpProxy],
) -> None:
    raws = [small_mail("first"), huge_mail("huge", 12)]
    imap_mailbox.append_many("INBOX", raws)
    # Past login, listing and the first mail, 5 MB into the huge one's literal.
    proxy = tcp_proxy_factory("127.0.0.1", dovecot.tls_port, cut_after_server_bytes=5 * MB)
    ledger = Ledger(sink)

    with pytest.raises(SourceError) as exc_info:
        ledger.run(make_client(port=proxy.port))

    assert isinstance(exc_info.value, TransientSourceError) and exc_info.value.code == "connection_lost"
    assert "was lost while downloading mails from INBOX" in str(exc_info.value)
    assert proxy.cuts == 1 and sum(sink.chunk_sizes) < len(raws[1])
    assert list(ledger.raws) == ["1"] and sink.files() == []  # no half blob, no temporary file

    proxy.cut_after_server_bytes = None  # the line is back: the next run gets it whole
    ledger.run(make_client(port=proxy.port))

    assert ledger.raws == {"1": raws[0], "2": raws[1]} and ledger.streamed == ["2"]
    assert sink.files() == [hashlib.sha256(raws[1]).hexdigest()]


def test_a_sink_that_fails_midway_raises_its_own_error_and_the_next_run_completes(
    imap_mailbox: Mailbox, make_client: Callable[..., ImapClient], tmp_path: Path
) -> None:
    raw = huge_mail("huge", 10)
    imap_mailbox.append("INBOX", raw)
    full = DirectorySink(tmp_path, fail_after=3 * MB)
    ledger = Ledger(full)
    client = make_client(raw_sink=full)

    with pytest.raises(OSError) as exc_info:
        ledger.run(client)

    # The disk's error as it is (the pipeline calls that "disk full"), not a lost connection.
    assert exc_info.value.errno == errno.ENOSPC and full.files() == [] and ledger.raws == {}
    full.fail_after = None  # space again; the same client reconnects (it dropped the half-read line)
    ledger.run(client)
    assert ledger.raws == {"1": raw} and full.files() == [hashlib.sha256(raw).hexdigest()]


def test_only_a_body_literal_of_the_announced_size_and_over_the_threshold_is_streamed(sink: DirectorySink) -> None:
    spool = LiteralSpool(sink, threshold=10)
    assert spool.wants(b'1 FETCH (UID 5 INTERNALDATE "06-Jan-2025 10:00:00 +0100" BODY[] {20}', 20)
    assert not spool.wants(b"1 FETCH (UID 5 BODY[] {9}", 9)  # small: read as usual
    assert not spool.wants(b"1 FETCH (UID 5 BODY[HEADER] {20}", 20)  # not the mail itself
    assert not spool.wants(b"1 FETCH (UID 5 BODY[] {20}", 21)  # not the literal being read
    assert not spool.wants(None, 20)
