"""The mailboxes of one run: Microsoft 365 mailboxes side by side, each within its own budget.

Graph limits requests per app *per mailbox* (4 in flight, 10,000 per 10 minutes), so a source
with N mailboxes synced one after another gets 1/N of what Graph allows. Here each mailbox of
a run gets a thread of its own, at most ``GRAPH_MAILBOXES_PER_SOURCE`` of a source at a time
and ``GRAPH_MAILBOXES_PER_WORKER`` in one worker process, all runs together.

Why threads inside the one sync task rather than a Celery task per mailbox: the run keeps its
single lease on the source, taken before any mailbox starts and released after the last one
ended, so "never two runs of one source (or of one of its mailboxes) at once" holds exactly as
before, and one SyncRun counts the whole run. The client's I/O is blocking and its requests
wait on the network, which threads overlap well; each thread has its own database connection,
closed when it ends.

One mailbox's failure does not stop the others: a permanent one (403, unknown mailbox) is
reported per mailbox; a transient one (throttled with a long Retry-After, Graph unreachable)
leaves that mailbox waiting while the others complete, and the run is then rescheduled for the
waiting mailboxes only (:class:`Outcome`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connections

from mailsources.clients.base import PermanentSourceError, TransientSourceError

_worker_slots: threading.BoundedSemaphore | None = None
_worker_slots_size = 0
_worker_slots_lock = threading.Lock()


def worker_slots() -> threading.BoundedSemaphore:
    """This process's ``GRAPH_MAILBOXES_PER_WORKER`` slots, shared by every run in it."""
    global _worker_slots, _worker_slots_size
    size = int(settings.GRAPH_MAILBOXES_PER_WORKER)
    with _worker_slots_lock:
        if _worker_slots is None or _worker_slots_size != size:
            _worker_slots, _worker_slots_size = threading.BoundedSemaphore(size), size
        return _worker_slots


@dataclasses.dataclass
class Outcome:
    """What became of each mailbox of a run."""

    errors: list[str] = dataclasses.field(default_factory=list)  # per-folder problems of synced mailboxes
    permanent: list[tuple[str, PermanentSourceError]] = dataclasses.field(default_factory=list)
    waiting: list[tuple[str, TransientSourceError]] = dataclasses.field(default_factory=list)
    crashed: BaseException | None = None  # anything else (database down, a bug): re-raised

    def waiting_error(self, *, of: int) -> TransientSourceError | None:
        """One error for the mailboxes that must be tried again, or None. ``of``: how many
        mailboxes the run had (a lone mailbox's error is passed on as it was).

        Its ``retry_after`` is the longest wait the server named, when it named one for every
        waiting mailbox (no mailbox is asked again before Graph allows it); otherwise None,
        with that longest wait as ``min_wait`` under the task's backoff."""
        if not self.waiting:
            return None
        if of == 1 and len(self.waiting) == 1:
            return self.waiting[0][1]
        named = [exc.retry_after for _, exc in self.waiting if exc.retry_after is not None]
        longest = max(named) if named else None
        all_named = len(named) == len(self.waiting)
        message = "; ".join(f"{address}: {exc}" for address, exc in self.waiting)
        if len(self.waiting) > 1 and longest is not None and all_named:
            message = f"waiting for Microsoft 365 (Retry-After {math.ceil(longest)} s): {message}"
        codes = {exc.code for _, exc in self.waiting}
        return TransientSourceError(
            message,
            code=codes.pop() if len(codes) == 1 else "transient",
            retry_after=longest if all_named else None,
            min_wait=None if all_named else longest,
        )

    @property
    def waiting_mailboxes(self) -> list[str]:
        return [address for address, _ in self.waiting]


def run_mailboxes(
    mailboxes: list[str],
    sync_one: Callable[[str], list[str]],
    *,
    parallel: bool,
    per_source: int | None = None,
) -> Outcome:
    """``sync_one(address)`` for every mailbox: side by side when ``parallel`` (not inside a
    transaction: another thread's connection would not see its rows), else in order.
    Returns when every mailbox has ended; nothing is raised from here."""
    outcome = Outcome()
    lock = threading.Lock()
    slots = worker_slots()

    def one(address: str) -> None:
        try:
            found = sync_one(address)
        except PermanentSourceError as exc:
            with lock:
                outcome.permanent.append((address, exc))
        except TransientSourceError as exc:
            with lock:
                outcome.waiting.append((address, exc))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
            with lock:
                outcome.crashed = outcome.crashed or exc
        else:
            with lock:
                outcome.errors += found

    width = min(len(mailboxes), per_source or int(settings.GRAPH_MAILBOXES_PER_SOURCE))
    if not parallel or width <= 1:
        for address in mailboxes:
            one(address)
            if outcome.crashed is not None:
                break
        return outcome

    def in_thread(address: str) -> None:
        with slots:  # this worker's cap, shared with every other run in the process
            try:
                if outcome.crashed is None:
                    one(address)
            finally:
                connections.close_all()  # this thread's own connection

    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="mailbox") as pool:
        for future in [pool.submit(in_thread, address) for address in mailboxes]:
            future.result()
    # Outcomes in the order the mailboxes are configured, not in the order they ended.
    order = {address: i for i, address in enumerate(mailboxes)}
    outcome.permanent.sort(key=lambda item: order[item[0]])
    outcome.waiting.sort(key=lambda item: order[item[0]])
    return outcome
