"""One run over one IMAP folder: the cursor, and new UIDs fetched in bounded batches.

The protocol itself is IMAPClient's; this module decides *what* to fetch and
how far the cursor may advance (see the package docstring for the cursor).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..base import FetchedMessage, FolderBatch, KnownFilter, TransientSourceError

if TYPE_CHECKING:
    from .client import ImapClient

logger = logging.getLogger(__name__)

_CURSOR_VERSION = 1


class Cursor:
    def __init__(
        self,
        uidvalidity: int,
        last_uid: int = 0,
        *,
        uidnext: int | None = None,
        highestmodseq: int | None = None,
        held_since: float | None = None,
        resyncing: bool = False,
    ) -> None:
        self.uidvalidity = uidvalidity
        self.last_uid = last_uid
        self.uidnext = uidnext
        self.highestmodseq = highestmodseq
        self.held_since = held_since
        self.resyncing = resyncing

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Cursor | None:
        if not data:
            return None
        try:
            return cls(
                int(data["uidvalidity"]),
                int(data.get("last_uid") or 0),
                uidnext=_int_or_none(data.get("uidnext")),
                highestmodseq=_int_or_none(data.get("highestmodseq")),
                held_since=data.get("held_since"),
                resyncing=bool(data.get("resyncing")),
            )
        except (KeyError, TypeError, ValueError):
            # An unreadable cursor must not stop archiving: start over, the
            # ledger turns everything already archived into no-ops.
            logger.warning("IMAP cursor %r is not readable; starting the folder over", data)
            return None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": _CURSOR_VERSION,
            "uidvalidity": self.uidvalidity,
            "last_uid": self.last_uid,
            "uidnext": self.uidnext,
            "highestmodseq": self.highestmodseq,
            "held_since": self.held_since,
        }
        if self.resyncing:
            data["resyncing"] = True
        return data


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


class Mailbox:
    """What SELECT/EXAMINE told us about the open folder (IMAPClient's select_folder dict)."""

    def __init__(self, name: str, readonly: bool, response: dict[bytes, Any]) -> None:
        def number(key: bytes) -> int | None:
            value = response.get(key)
            return value if isinstance(value, int) else None

        self.name = name
        self.readonly = readonly
        self.uidvalidity = number(b"UIDVALIDITY") or 0
        self.uidnext = number(b"UIDNEXT")
        self.highestmodseq = number(b"HIGHESTMODSEQ")
        self.exists = number(b"EXISTS") or 0


class FetchRefused(TransientSourceError):
    """The server answered NO to a FETCH (e.g. one unreadable mail in the set)."""


def nothing_to_do(previous: Cursor, mailbox: Mailbox, cutoff: datetime | None) -> bool:
    """True when the folder cannot hold anything new since the final cursor ``previous``."""
    if previous.uidnext is None:
        return False  # the previous run did not finish listing the folder
    unchanged = (previous.highestmodseq is not None and previous.highestmodseq == mailbox.highestmodseq) or (
        mailbox.uidnext is not None and previous.uidnext == mailbox.uidnext
    )
    if not unchanged:
        return False
    if previous.held_since is None:
        return True
    # Held-back mails: nothing to do until the oldest of them is old enough.
    return cutoff is not None and previous.held_since > cutoff.timestamp()


def received_at(info: dict[bytes, Any]) -> datetime | None:
    value = info.get(b"INTERNALDATE")  # IMAPClient parsed it (None when unreadable)
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class FolderSync:
    """Lists new UIDs, fetches them in batches bounded by count and bytes."""

    def __init__(
        self, client: ImapClient, mailbox: Mailbox, cursor: Cursor, known: KnownFilter, cutoff: datetime | None
    ) -> None:
        self.client = client
        self.mailbox = mailbox
        self.cursor = cursor  # its last_uid advances as batches are yielded
        self.known = known
        self.cutoff = cutoff
        self.blocked = False  # a held-back (or vanished) mail stopped the watermark
        self.held_since: float | None = None

    def run(self, epoch: str, original: dict[str, Any] | None) -> Iterator[FolderBatch]:
        client = self.client
        uids = client._search_uids(self.cursor.last_uid + 1)
        listed = chunks(uids, client.batch_size)
        final_sent = False
        for number, chunk in enumerate(listed):
            stops, wanted = self._classify(epoch, chunk)
            batches = self._plan(wanted)
            for index, batch in enumerate(batches):
                messages, missing = self._download(batch)
                for _uid in missing:
                    self._hold(0.0)  # look again next run
                stops += missing
                # The watermark may pass everything done so far, not the next batch.
                nxt = batches[index + 1][0][0] if index + 1 < len(batches) else None
                self._advance(chunk, min(stops + ([nxt] if nxt else []), default=None))
                final = number == len(listed) - 1 and index == len(batches) - 1
                yield self._batch(epoch, messages, final=final)
                final_sent = final_sent or final
            if not batches:
                self._advance(chunk, min(stops, default=None))
            if stops:
                self.blocked = True
        if not final_sent and self._final_cursor().to_json() != original:
            yield self._batch(epoch, [], final=True)

    def _classify(self, epoch: str, chunk: list[int]) -> tuple[list[int], list[tuple[int, int]]]:
        """-> (UIDs the watermark must stop at, [(uid, size)] to download)."""
        meta = self.client._fetch(
            chunk, ["UID", "RFC822.SIZE", "INTERNALDATE"], f"listing mails in {self.mailbox.name}"
        )
        already = {int(u) for u in self.known(epoch, [str(u) for u in chunk]) if u.isdigit()}
        stops: list[int] = []
        wanted: list[tuple[int, int]] = []
        for uid in chunk:
            if uid in already:
                continue
            info = meta.get(uid)
            if info is None:  # expunged meanwhile, or not reported: look again next run
                stops.append(uid)
                self._hold(0.0)
                continue
            received = received_at(info)
            # No readable date: archive rather than hold it back forever.
            if self.cutoff is not None and received is not None and received > self.cutoff:
                stops.append(uid)  # too young: archived by a later run
                self._hold(received.timestamp())
                continue
            size = info.get(b"RFC822.SIZE")
            wanted.append((uid, size if isinstance(size, int) else 0))
        return stops, wanted

    def _hold(self, since: float) -> None:
        self.held_since = since if self.held_since is None else min(self.held_since, since)

    def _advance(self, chunk: list[int], stop: int | None) -> None:
        """Move the watermark over this chunk's UIDs below ``stop`` (all of them if None)."""
        if self.blocked:
            return
        end = len(chunk) if stop is None else bisect.bisect_left(chunk, stop)
        if end:
            self.cursor.last_uid = max(self.cursor.last_uid, chunk[end - 1])

    def _plan(self, wanted: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """Split into batches bounded by count and bytes; a huge mail travels alone."""
        client = self.client
        batches: list[list[tuple[int, int]]] = []
        current: list[tuple[int, int]] = []
        size_sum = 0
        for uid, size in wanted:
            huge = size > client.max_message_bytes or client.streams(size)
            if current and (huge or len(current) >= client.batch_size or size_sum + size > client.batch_bytes):
                batches.append(current)
                current, size_sum = [], 0
            current.append((uid, size))
            size_sum += size
            if huge:
                batches.append(current)
                current, size_sum = [], 0
        if current:
            batches.append(current)
        return batches

    def _download(self, batch: list[tuple[int, int]]) -> tuple[list[FetchedMessage], list[int]]:
        uids = [uid for uid, _size in batch]
        action = f"downloading mails from {self.mailbox.name}"
        items = ["UID", "INTERNALDATE", "BODY.PEEK[]"]
        if len(batch) == 1 and self.client.streams(batch[0][1]):
            return self._download_streamed(uids[0], items, action)
        try:
            fetched = self.client._fetch(uids, items, action)
        except FetchRefused as refused:
            # One bad mail must not block the folder: fetch one by one, and hold
            # back (retry next run) only the ones the server keeps refusing.
            fetched = {}
            for uid in uids if len(uids) > 1 else []:
                with contextlib.suppress(FetchRefused):
                    fetched.update(self.client._fetch([uid], items, action))
            if not fetched:
                raise refused  # nothing works: a visible, retried error
        messages: list[FetchedMessage] = []
        missing: list[int] = []
        for uid in uids:
            info = fetched.get(uid) or {}
            raw = info.get(b"BODY[]")
            if not isinstance(raw, bytes):
                missing.append(uid)
                continue
            messages.append(FetchedMessage(location=str(uid), raw=raw, received_at=received_at(info)))
        self._log_missing(missing)
        return messages, missing

    def _download_streamed(self, uid: int, items: list[str], action: str) -> tuple[list[FetchedMessage], list[int]]:
        """One huge mail, its body streamed into the client's raw sink (``literal.py``)."""
        fetched, stored = self.client._fetch_streamed(uid, items, action)
        info = fetched.get(uid) or {}
        raw = info.get(b"BODY[]")
        if len(stored) > 1:  # one mail asked for, more delivered: nothing to rely on
            raise TransientSourceError(
                f"The server {self.client._where} sent {len(stored)} bodies for one mail in {self.mailbox.name}.",
                code="protocol_error",
            )
        if not isinstance(raw, bytes):
            self._log_missing([uid])  # a blob the sink stored anyway stays unreferenced
            return [], [uid]
        if stored:
            message = FetchedMessage(location=str(uid), raw=b"", received_at=received_at(info), stored=stored[0])
        else:  # smaller than RFC822.SIZE said: imaplib read it as usual
            message = FetchedMessage(location=str(uid), raw=raw, received_at=received_at(info))
        return [message], []

    def _log_missing(self, missing: list[int]) -> None:
        if missing:
            logger.warning(
                "IMAP %s: %s UIDs %s not delivered; will look again next run",
                self.client._where,
                self.mailbox.name,
                ",".join(map(str, missing)),
            )

    def _final_cursor(self) -> Cursor:
        c = self.cursor
        return Cursor(
            c.uidvalidity,
            c.last_uid,
            uidnext=self.mailbox.uidnext,
            highestmodseq=self.mailbox.highestmodseq,
            held_since=self.held_since,
        )

    def _batch(self, epoch: str, messages: list[FetchedMessage], *, final: bool) -> FolderBatch:
        # Only a final cursor says "listed up to UIDNEXT": an intermediate one
        # must make the next run list again, or a crash could skip mails.
        cursor = (
            self._final_cursor()
            if final
            else Cursor(self.cursor.uidvalidity, self.cursor.last_uid, resyncing=self.cursor.resyncing)
        )
        return FolderBatch(
            epoch=epoch,
            messages=messages,
            cursor=cursor.to_json(),
            total=self.mailbox.exists,
            resync=self.cursor.resyncing,
        )
