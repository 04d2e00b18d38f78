"""Message bodies: each new message's MIME from ``/messages/{id}/$value``, byte for byte, with
downloads running ahead of the pipeline (:class:`Downloads`) so the network never waits for
the database."""

from __future__ import annotations

import collections
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from urllib.parse import quote

from ..base import FetchedMessage
from .errors import GraphError
from .transport import STREAM_BYTES, GraphTransport, Sink

log = logging.getLogger(__name__)

# (immutable id, receivedDateTime) of a message to download
Wanted = tuple[str, datetime | None]


class Downloads:
    """MIME downloads in order, running ahead of the consumer.

    Up to ``max_in_flight`` requests are queued in the client's pool (which the mailbox limiter
    keeps to 4 at Graph); finished downloads not yet taken are held up to ``budget_bytes``. More
    are started as requests finish, not only when the consumer asks, so downloading goes on
    while the pipeline stores and commits the previous batch.
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        fetch: Callable[[str, datetime | None], FetchedMessage | None],
        *,
        max_in_flight: int,
        budget_bytes: int,
    ) -> None:
        self._pool = pool
        self._fetch = fetch
        self._max_in_flight = max(1, max_in_flight)
        self._budget = budget_bytes
        self._lock = threading.RLock()  # a callback may run at once, inside add_done_callback
        self._waiting: collections.deque[Wanted] = collections.deque()
        self._futures: collections.deque[Future[FetchedMessage | None]] = collections.deque()
        self._sizes: dict[Future[FetchedMessage | None], int] = {}
        self._taken: set[Future[FetchedMessage | None]] = set()
        self._in_flight = 0
        self._ready_bytes = 0
        self._closed = False

    def add(self, items: list[Wanted]) -> None:
        with self._lock:
            self._waiting.extend(items)
            self._start_more()

    def take(self) -> FetchedMessage | None:
        """The next download's result, in the order added (its exception, if it failed)."""
        with self._lock:
            if not self._futures:
                self._start_more(at_least_one=True)
            future = self._futures.popleft()
        result = future.result()
        with self._lock:
            size = self._sizes.pop(future, None)
            if size is None:
                self._taken.add(future)  # its callback has not run yet
            else:
                self._ready_bytes -= size
            self._start_more()
        return result

    def next_ready(self) -> bool:
        """Whether :meth:`take` would return at once (the next download has finished)."""
        with self._lock:
            return bool(self._futures) and self._futures[0].done()

    def take_finished(self) -> list[FetchedMessage]:
        """What is left, as far as it has already been downloaded (in order); the rest is
        cancelled. For a consumer that must stop (throttled): it commits what it has."""
        with self._lock:
            self._closed = True
            self._waiting.clear()
            futures = list(self._futures)
            self._futures.clear()
        finished = []
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is None:
                result = future.result()
                if result is not None:
                    finished.append(result)
            else:
                future.cancel()
        return finished

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._waiting.clear()
            for future in self._futures:
                future.cancel()
            self._futures.clear()

    def _start_more(self, *, at_least_one: bool = False) -> None:
        while (
            self._waiting
            and not self._closed
            and (at_least_one or (self._in_flight < self._max_in_flight and self._ready_bytes < self._budget))
        ):
            at_least_one = False
            location, received = self._waiting.popleft()
            future = self._pool.submit(self._fetch, location, received)
            self._in_flight += 1
            self._futures.append(future)
            future.add_done_callback(self._finished)

    def _finished(self, future: Future[FetchedMessage | None]) -> None:
        size = 0
        if not future.cancelled() and future.exception() is None:
            result = future.result()
            size = len(result.raw) if result is not None else 0
        with self._lock:
            self._in_flight -= 1
            if future in self._taken:
                self._taken.discard(future)
            elif not future.cancelled():
                self._sizes[future] = size
                self._ready_bytes += size
            # A cancelled download means the pool is shutting down (the client closes, maybe
            # in this very thread, holding the pool's lock): submitting more would deadlock.
            if not self._closed and not future.cancelled():
                try:
                    self._start_more()
                except RuntimeError:  # the pool is shutting down (client closed)
                    self._closed = True


class Downloader:
    """Downloads of one mailbox on a pool of ``max_concurrent`` threads (the mailbox limiter
    keeps Graph at that many requests in flight)."""

    def __init__(
        self,
        http: GraphTransport,
        *,
        max_concurrent: int,
        budget_bytes: int,
        raw_sink: Sink | None = None,
        stream_bytes: int = STREAM_BYTES,
    ) -> None:
        self._http = http
        self._sink = raw_sink
        self._stream_bytes = stream_bytes
        self._max_concurrent = max_concurrent
        self._budget = budget_bytes
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._queues: weakref.WeakSet[Downloads] = weakref.WeakSet()

    def fetch(self, location: str, received: datetime | None) -> FetchedMessage | None:
        """The message's MIME, or None when it was deleted since it was listed."""
        url = self._http.url(f"/messages/{quote(location, safe='')}/$value")
        try:
            _, raw = self._http.request("GET", url, stream=True, sink=self._sink, sink_from=self._stream_bytes)
        except GraphError as err:
            if err.status == 404 and err.code in {"ErrorItemNotFound", "ResourceNotFound"}:
                # Deleted between the delta page and now: nothing left to archive.
                log.info("Graph: message %s of %s vanished before download", location, self._http.mailbox)
                return None
            raise
        if raw is not None and not isinstance(raw, bytes):  # a huge mail, streamed into the store
            return FetchedMessage(location=location, raw=b"", received_at=received, stored=raw)
        return FetchedMessage(location=location, raw=raw or b"", received_at=received)

    def fetch_all(self, items: list[Wanted]) -> list[FetchedMessage]:
        return [m for m in self._fetch_stream(items) if m is not None]

    def ahead(self) -> Downloads:
        """A queue whose downloads run ahead of its consumer (see :class:`Downloads`)."""
        queue = Downloads(
            self._executor(), self.fetch, max_in_flight=self._max_concurrent * 2, budget_bytes=self._budget
        )
        self._queues.add(queue)
        return queue

    def close(self) -> None:
        for queue in list(self._queues):  # a consumer that stopped without closing its queue
            queue.close()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def _fetch_stream(self, items: list[Wanted]) -> Iterator[FetchedMessage | None]:
        """Results in order, with up to 2 x max_concurrent downloads running ahead (the limiter
        keeps the mailbox at max_concurrent in flight); they also overlap the pipeline's commit."""
        if self._max_concurrent == 1 or len(items) <= 1:
            for location, received in items:
                yield self.fetch(location, received)
            return
        pool = self._executor()
        ahead: collections.deque[Future[FetchedMessage | None]] = collections.deque()
        position = 0
        try:
            while position < len(items) or ahead:
                while position < len(items) and len(ahead) < self._max_concurrent * 2:
                    location, received = items[position]
                    ahead.append(pool.submit(self.fetch, location, received))
                    position += 1
                yield ahead.popleft().result()
        finally:
            for future in ahead:
                future.cancel()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._max_concurrent, thread_name_prefix=f"graph-{self._http.mailbox}"
                )
            return self._pool
