"""One folder's changes through Graph delta queries, handed out in batches the pipeline commits.

Delta cursor (``FolderBatch.cursor``, JSON)::

    {"v": 1, "folder_id": "<Graph folder id>",
     "delta_link": "<@odata.deltaLink>"      # round complete: the next run starts here
       or "next_link": "<@odata.nextLink>",  # mid-round: resume here (after a crash/timeout)
     "resync": true,                          # only mid-round, when the round is a resync
     "pending": {"<immutable id>": "<receivedDateTime>"}}  # only with min_age_days > 0

Why intermediate pages may carry the nextLink: the pipeline stores a batch's cursor only after
its messages are committed, so a crash between pages resumes at the first uncommitted page. If
that skip token has expired Graph answers 410 and the folder is resynced from scratch (immutable
ids and the ledger make the repeat a no-op). The deltaLink is handed out only with the last page
of a round, so it is never stored before every message of the round is. A page is handed out in
batches of at most ``max_batch_messages`` / ``max_batch_bytes``; the earlier parts carry the
cursor that re-reads the same page. So that the network never waits for the database, the next
page is read (and checked with ``known``) before a page's last batch is handed out, and
downloads run ahead of the batches, up to ``max_batch_bytes`` of finished MIME not yet taken;
an id fetched earlier in the same run is not fetched again when a later page replays it. Mail
younger than ``min_age_days`` is remembered in ``pending`` (the delta round moves past it) and
fetched by id once it is old enough; ``@removed`` drops it.

``known("", ids)`` should answer across the whole mailbox for Graph (immutable ids are unique per
mailbox and survive moves between folders), so a moved mail is not downloaded again; such ids are
reported in ``FolderBatch.known_locations`` so the pipeline can record the new location.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from ..base import FetchedMessage, FolderBatch, KnownFilter, TransientSourceError
from .downloads import Downloader, Downloads, Wanted
from .errors import GraphError
from .folders import FolderRef
from .transport import GraphTransport

log = logging.getLogger(__name__)

_DELTA_SELECT = "id,receivedDateTime"  # the minimum: ids to fetch, dates for min_age_days
_DELTA_RESET_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_delta_reset(err: GraphError) -> bool:
    return err.status == 410 or err.code.lower() in _DELTA_RESET_CODES


@dataclass
class DeltaState:
    """Where a folder's delta round stands: read from a stored cursor, written into new ones."""

    folder_id: str
    link: str | None  # where the round goes on (None: from the start)
    link_kind: str  # "delta_link" (a new round) or "next_link" (mid-round)
    resync: bool
    pending: dict[str, str | None] = field(default_factory=dict)  # too young yet: id -> received

    @classmethod
    def from_cursor(cls, cursor: dict[str, Any] | None, ref: FolderRef, http: GraphTransport) -> DeltaState:
        state = dict(cursor or {})
        resync = bool(state.get("resync"))
        if state.get("folder_id") not in (None, ref.id):
            # Same name, different folder (deleted and re-created): its state tokens are useless.
            state, resync = {}, True
        link_kind = "next_link" if state.get("next_link") else "delta_link"
        link: str | None = state.get("next_link") or state.get("delta_link")
        if link and not http.same_origin(link):
            # graph_url changed since: never send the token to the old host; start over.
            link, link_kind, resync = None, "delta_link", True
        return cls(ref.id, link, link_kind, resync, dict(state.get("pending") or {}))

    def cursor(self, kind: str, url: str | None, *, mid_round: bool, resync: bool) -> dict[str, Any]:
        result: dict[str, Any] = {"v": 1, "folder_id": self.folder_id}
        if url:
            result[kind] = url
        if resync and mid_round:
            result["resync"] = True
        if self.pending:
            result["pending"] = dict(self.pending)
        return result

    def resume_cursor(self) -> dict[str, Any]:
        """The cursor that continues where the stored one left off."""
        return self.cursor(self.link_kind, self.link, mid_round=self.link_kind == "next_link", resync=self.resync)


@dataclass
class DeltaPage:
    """One page of a delta round, read and checked against the ledger."""

    fresh: list[Wanted]  # to download
    removed: list[str]
    known: list[str]  # listed, already archived (not downloaded)
    after: dict[str, Any]  # the cursor once the whole page is committed
    reread: dict[str, Any]  # the cursor for earlier parts of the page: read it again
    resync: bool
    last: bool  # the round's last page (it carries the deltaLink)


class DeltaRound:
    """The pages of one delta round of a folder, each read, checked against the ledger
    (``known``) and with the cursors that go with it fixed at the time it was read."""

    def __init__(
        self,
        http: GraphTransport,
        folder: str,
        state: DeltaState,
        known: KnownFilter,
        *,
        page_size: int,
        cutoff: datetime | None,
        fetched: set[str],
    ) -> None:
        self._http = http
        self._folder = folder
        self._state = state
        self._known = known
        self._page_size = page_size
        self._cutoff = cutoff
        self._fetched = fetched  # ids fetched in this run: a replay does not fetch them again
        self._resync = state.resync
        self._initial = self._start_url()

    def pages(self) -> Generator[DeltaPage, None, None]:
        url = self._state.link or self._initial
        page_kind = self._state.link_kind if self._state.link else "delta_link"
        restarted = False
        while True:
            try:
                page = self._http.get_json(url, None, headers={"Prefer": f"odata.maxpagesize={self._page_size}"})
            except GraphError as err:
                if not is_delta_reset(err) or restarted:
                    raise
                log.info("Graph delta reset for %s %r (%s): full resync", self._http.mailbox, self._folder, err.code)
                restarted = self._resync = True
                url, page_kind = self._initial, "delta_link"
                continue
            next_link, delta_link = self._links(page)
            yield self._checked(page, url, page_kind, next_link, delta_link)
            if delta_link:
                return
            assert next_link is not None
            url, page_kind = next_link, "next_link"

    def _links(self, page: dict[str, Any]) -> tuple[str | None, str | None]:
        next_link = page.get("@odata.nextLink")
        delta_link = page.get("@odata.deltaLink")
        for candidate in (next_link, delta_link):
            if candidate:
                self._http.check_origin(candidate)
        if not next_link and not delta_link:
            raise GraphError(502, "NoLink", "Delta page without @odata.nextLink or @odata.deltaLink.")
        return next_link, delta_link

    def _checked(
        self, page: dict[str, Any], url: str, page_kind: str, next_link: str | None, delta_link: str | None
    ) -> DeltaPage:
        listed, removed = self._entries(page)
        already = set(self._known("", list(listed))) if listed else set()
        pending = self._state.pending
        fresh = [(i, r) for i, r in listed.items() if i not in already and i not in pending and i not in self._fetched]
        if self._cutoff is not None:
            fresh = self._defer_young(fresh, self._cutoff)
        self._fetched.update(i for i, _ in fresh)
        state, resync = self._state, self._resync
        if next_link:
            after = state.cursor("next_link", next_link, mid_round=True, resync=resync)
        else:
            after = state.cursor("delta_link", delta_link, mid_round=False, resync=resync)
        return DeltaPage(
            fresh=fresh,
            removed=removed,
            known=sorted(already),
            after=after,
            reread=state.cursor(page_kind, None if url == self._initial else url, mid_round=True, resync=resync),
            resync=resync,
            last=not next_link,
        )

    def _entries(self, page: dict[str, Any]) -> tuple[dict[str, datetime | None], list[str]]:
        """The page's listed ids (with receivedDateTime) and its ``@removed`` ids."""
        removed: list[str] = []
        listed: dict[str, datetime | None] = {}
        for item in page.get("value", []):
            item_id = item.get("id")
            if not item_id:
                continue
            if "@removed" in item:
                removed.append(item_id)
                listed.pop(item_id, None)
                self._state.pending.pop(item_id, None)
            else:
                listed[item_id] = parse_time(item.get("receivedDateTime"))  # replays collapse here
        return listed, removed

    def _defer_young(self, fresh: list[Wanted], cutoff: datetime) -> list[Wanted]:
        due: list[Wanted] = []
        for item_id, received in fresh:
            if received is None:
                # An "updated" delta entry may omit receivedDateTime: ask for it (rare).
                try:
                    meta = self._http.get_json(
                        self._http.url(f"/messages/{quote(item_id, safe='')}"), {"$select": "id,receivedDateTime"}
                    )
                except GraphError as err:
                    if err.status == 404:
                        continue
                    raise
                received = parse_time(meta.get("receivedDateTime"))
            if received is not None and received > cutoff:
                self._state.pending[item_id] = received.isoformat()
            else:
                due.append((item_id, received))
        return due

    def _start_url(self) -> str:
        query = urlencode({"$select": _DELTA_SELECT}, safe="$,")
        path = f"/mailFolders/{quote(self._state.folder_id, safe='')}/messages/delta"
        return f"{self._http.url(path)}?{query}"


class FolderSync:
    """One delta round of one folder (from its cursor), in batches: one or more per page."""

    def __init__(
        self,
        http: GraphTransport,
        downloader: Downloader,
        *,
        page_size: int,
        max_batch_bytes: int,
        max_batch_messages: int,
        max_batch_wait: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._downloader = downloader
        self._page_size = page_size
        self._max_batch_bytes = max_batch_bytes
        self._max_batch_messages = max_batch_messages
        self._max_batch_wait = max_batch_wait
        self._clock = clock

    def batches(
        self, folder: str, ref: FolderRef, cursor: dict[str, Any] | None, known: KnownFilter, min_age_days: int
    ) -> Iterator[FolderBatch]:
        state = DeltaState.from_cursor(cursor, ref, self._http)
        cutoff = datetime.now(UTC) - timedelta(days=min_age_days) if min_age_days > 0 else None
        # Ids fetched in this run: a later delta page replaying one (its batch may not be
        # committed yet when that page is read) does not fetch it again.
        fetched: set[str] = set()
        # 1. Mail that was too young on an earlier run and has come of age.
        batch = self._come_of_age(state, ref, known, cutoff, fetched)
        if batch is not None:
            yield batch
        # 2. The delta round: pages are read one ahead and downloads run ahead of the batches
        # handed out (see Downloads), so the network keeps working while the pipeline stores
        # and commits them.
        pages = DeltaRound(
            self._http, folder, state, known, page_size=self._page_size, cutoff=cutoff, fetched=fetched
        ).pages()
        downloads = self._downloader.ahead()
        try:
            yield from self._round_batches(pages, downloads, ref.total)
        finally:
            downloads.close()
            pages.close()

    def _come_of_age(
        self, state: DeltaState, ref: FolderRef, known: KnownFilter, cutoff: datetime | None, fetched: set[str]
    ) -> FolderBatch | None:
        pending = state.pending
        due = [i for i, r in pending.items() if cutoff is None or (parse_time(r) or cutoff) <= cutoff]
        if not due:
            return None
        already = set(known("", due))
        items = [(i, parse_time(pending[i])) for i in due if i not in already]
        messages = self._downloader.fetch_all(items)
        fetched.update(i for i, _ in items)
        for location in due:
            pending.pop(location, None)
        return FolderBatch(
            epoch="",
            messages=messages,
            cursor=state.resume_cursor(),
            total=ref.total,
            resync=state.resync,
            known_locations=sorted(already),
        )

    def _round_batches(
        self, pages: Iterator[DeltaPage], downloads: Downloads, total: int | None
    ) -> Iterator[FolderBatch]:
        """Each page's batches, the last one with the page's cursor, removals and known ids."""
        first = next(pages)
        downloads.add(first.fresh)
        page: DeltaPage | None = first
        while page is not None:
            rest = yield from self._early_parts(page, downloads, total)
            # Read the next page (and start its downloads) before handing out this one's last
            # part; its errors wait until that part is out.
            following, deferred = _read_ahead(page, pages, downloads)
            yield FolderBatch(
                epoch="",
                messages=rest,
                cursor=page.after,
                removed=page.removed,
                total=total,
                resync=page.resync,
                known_locations=page.known,
            )
            if deferred is not None:
                raise deferred
            page = following

    def _early_parts(
        self, page: DeltaPage, downloads: Downloads, total: int | None
    ) -> Generator[FolderBatch, None, list[FetchedMessage]]:
        """Takes the page's downloads, yielding a batch whenever one is full (it re-reads the
        page if the run dies); returns the messages left for the page's last batch.

        A batch is also handed out before it is full when its first mail has waited
        ``max_batch_wait`` seconds and the next download has not finished: when Graph's pacing,
        not the pipeline, sets the speed (a mailbox gets ~17 mails/s), mail is committed every
        few seconds instead of every 250 mails (15 s), and the run does not end with up to 250
        mails per mailbox still to store after the last download. When downloads are ahead
        (the pipeline is the slower part) batches stay full."""
        part: list[FetchedMessage] = []
        size = 0
        part_since = 0.0  # when the part's first mail was taken
        for index in range(len(page.fresh)):
            if (
                part
                and self._max_batch_wait is not None
                and self._clock() - part_since >= self._max_batch_wait
                and not downloads.next_ready()
            ):
                yield FolderBatch(epoch="", messages=part, cursor=page.reread, total=total, resync=page.resync)
                part, size = [], 0
            try:
                message = downloads.take()
            except TransientSourceError:
                # Throttled (or cut off) mid-page: what was downloaded, before and after the
                # message that failed, is committed first, so the next attempt, re-reading
                # the page, skips it instead of fetching it again.
                part += downloads.take_finished()
                if part:
                    yield FolderBatch(epoch="", messages=part, cursor=page.reread, total=total, resync=page.resync)
                raise
            if message is not None:
                if not part:
                    part_since = self._clock()
                part.append(message)
                size += len(message.raw)
            full = size >= self._max_batch_bytes or len(part) >= self._max_batch_messages
            if full and index < len(page.fresh) - 1:
                yield FolderBatch(epoch="", messages=part, cursor=page.reread, total=total, resync=page.resync)
                part, size = [], 0
        return part


def _read_ahead(
    page: DeltaPage, pages: Iterator[DeltaPage], downloads: Downloads
) -> tuple[DeltaPage | None, Exception | None]:
    if page.last:
        return None, None
    try:
        following = next(pages)
        downloads.add(following.fresh)
    except Exception as exc:  # noqa: BLE001 - re-raised once the page's last part is out
        return None, exc
    return following, None
