"""Request pacing for a rate-limited mail server, in one process and across all workers.

Graph allows 4 concurrent requests and 10,000 requests per 10 minutes per app + mailbox (it
answers the 5th concurrent request with 429 ``ApplicationThrottled``). Two pieces keep a client
under such limits, both keyed by a string that names what the server counts (for Graph
``graph:{tenant}:{client id}:{mailbox}``), and both pacing with the same GCRA formula
(:func:`pacing_interval`, :func:`gcra_reserve`): requests spaced evenly, a burst of
``max_concurrent``.

* :class:`MailboxLimiter` (one per key and process, from :func:`limiter_for`): at most
  ``max_concurrent`` requests in flight, paced sends, and a server's Retry-After pausing every
  thread of the key.
* :class:`RedisRequestGate` (one per process and configuration, from :func:`redis_request_gate`):
  the same limits shared by every worker on every machine, kept in the broker's Redis.
  ``gate(key)`` is the context manager a client enters around each request
  (:data:`RequestGate`).

The Redis gate in detail:

* A slot is a member of a sorted set scored by its lease's expiry. Dropping expired leases,
  counting and taking a slot happen in one Lua script on Redis' clock (workers' clocks may
  disagree), so two workers can never both take the last slot.
* A held slot's lease is renewed in the background while its request runs (a large message
  may take longer than the lease); only a killed worker's slots expire, after ``lease_seconds``.
* Pacing state (the theoretical arrival time) is in Redis too; the Lua script is
  :func:`gcra_reserve` on Redis' clock.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from mailsources.clients.base import TransientSourceError

MAX_CONCURRENT = 4
LEASE_SECONDS = 30.0

# A callable entered around every request; the argument names what the server counts.
RequestGate = Callable[[str], contextlib.AbstractContextManager[Any]]


def pacing_interval(rate_limit: tuple[int, float], max_concurrent: int) -> float:
    """Seconds between requests for ``rate_limit = (limit, window)``.

    Sends are planned as if the window were longer by a margin (1 % of it, at least 0.25 s)
    that absorbs the difference between when we send and when the server counts - 99 % of
    the ceiling at Graph's 600 s window; the burst of ``max_concurrent`` comes off the limit.
    """
    limit, window = rate_limit
    margin = max(window * 0.01, 0.25)
    return (window + margin) / max(1, limit - max_concurrent)


def gcra_reserve(tat: float, now: float, interval: float, burst: int) -> tuple[float, float]:
    """One GCRA step: ``(send_at, new_tat)`` for a request that may go at ``now`` at the
    earliest, given the theoretical arrival time ``tat`` (the Redis gate's Lua does the same)."""
    tat = max(tat, now)
    return max(now, tat - interval * (burst - 1)), tat + interval


class MailboxLimiter:
    """≤ ``max_concurrent`` requests in flight and evenly paced requests, for one key, in one
    process. A server's Retry-After (:meth:`pause`) holds back every thread of the key."""

    def __init__(
        self,
        max_concurrent: int,
        rate_limit: tuple[int, float] | None,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self._burst = max_concurrent
        self.interval = pacing_interval(rate_limit, max_concurrent) if rate_limit is not None else 0.0
        self._clock = clock or _monotonic
        self._sleep = sleep or _sleep
        self._tat = 0.0
        self._paused_until = 0.0

    @contextlib.contextmanager
    def slot(self, *, max_pause: float | None = None) -> Iterator[None]:
        # Pace first, then take a concurrency slot: a thread sleeping until its send time must
        # not hold one of the 4 slots (that alone cost ~15 % of the ceiling). A wait for a slot
        # only delays a send, by about one request's latency, which the window margin absorbs.
        self.wait_turn(max_pause=max_pause)
        with self._slots:
            yield

    def wait_turn(self, *, max_pause: float | None = None) -> None:
        """Sleep until this process may send (pacing, a Retry-After pause), holding no slot.

        A Retry-After pause longer than ``max_pause`` is not slept: TransientSourceError with
        the rest of it as ``retry_after``, so that the run is rescheduled (and a client being
        closed does not wait for its threads to sleep it out)."""
        with self._lock:
            now = self._clock()
            paused = self._paused_until - now
            if max_pause is not None and paused > max_pause:
                raise TransientSourceError(
                    f"waiting for Microsoft 365 (Retry-After {math.ceil(paused)} s)",
                    code="throttled",
                    retry_after=paused,
                )
            send_at = max(now, self._paused_until)
            if self.interval:
                send_at, self._tat = gcra_reserve(self._tat, send_at, self.interval, self._burst)
        if send_at > now:
            self._sleep(send_at - now)

    def concurrency(self) -> threading.BoundedSemaphore:
        """One of the ``max_concurrent`` slots, as a context manager."""
        return self._slots

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


def monotonic() -> float:
    """The clock of the process-wide limiters (a test may replace it with one it moves)."""
    return time.monotonic()


def _monotonic() -> float:
    return monotonic()  # looked up per call


def sleep(seconds: float) -> None:
    """How the limiters and the Graph transport wait (a test may replace it with one that
    moves its clock instead)."""
    time.sleep(seconds)


def _sleep(seconds: float) -> None:
    sleep(seconds)  # looked up per call


_LIMITERS: dict[tuple[Any, ...], MailboxLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(key: str, max_concurrent: int, rate_limit: tuple[int, float] | None) -> MailboxLimiter:
    """The process-wide limiter of ``key`` (every client of one mailbox shares it)."""
    with _LIMITERS_LOCK:
        full_key = (key, max_concurrent, rate_limit)
        limiter = _LIMITERS.get(full_key)
        if limiter is None:
            limiter = _LIMITERS[full_key] = MailboxLimiter(max_concurrent, rate_limit)
        return limiter


# --------------------------------------------------------------------------- across workers: Redis

# KEYS[1] the slots; ARGV: token, max in flight, lease seconds. 1 = taken, 0 = all busy.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(lease) * 2)
return 1
"""

# KEYS: slot sets; ARGV[1] lease seconds, ARGV[2..] the tokens (same order). Renews live leases.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, ARGV[i + 1])
  redis.call('EXPIRE', key, math.ceil(lease) * 2)
end
return 1
"""

# KEYS[1] the slots, KEYS[2] the pacing state (theoretical arrival time); ARGV: token, max in
# flight, lease seconds, interval (0: no pacing), burst. Reserves the next send time
# (gcra_reserve) and, when that is now, tries to take a slot in the same round trip.
# Returns "0" (slot taken), "-1" (send now, but all slots busy) or the seconds to wait first.
_ENTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[4])
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tat < now then tat = now end
  local send_at = math.max(now, tat - interval * (tonumber(ARGV[5]) - 1))
  redis.call('SET', KEYS[2], string.format('%.6f', tat + interval), 'EX', 3600)
  if send_at > now then
    return string.format('%.6f', send_at - now)
  end
end
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return '-1'
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(lease) * 2)
return '0'
"""


class RedisRequestGate:
    """The cross-process gate; one per process and configuration (see redis_request_gate)."""

    def __init__(
        self,
        url: str,
        *,
        max_concurrent: int = MAX_CONCURRENT,
        rate_limit: tuple[int, float] | None = None,
        lease_seconds: float = LEASE_SECONDS,
        prefix: str = "webadmin:graph",
    ) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.max_concurrent = max_concurrent
        self.interval = pacing_interval(rate_limit, max_concurrent) if rate_limit else 0.0
        self.lease_seconds = lease_seconds
        self.prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._enter = self._redis.register_script(_ENTER)
        self._held: dict[str, str] = {}  # token -> slot set, renewed while held
        self._held_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()

    def slots_key(self, key: str) -> str:
        return f"{self.prefix}:slots:{key}"

    def pace_key(self, key: str) -> str:
        return f"{self.prefix}:pace:{key}"

    def __call__(self, key: str) -> contextlib.AbstractContextManager[None]:
        return self._gate(key)

    @contextlib.contextmanager
    def _gate(self, key: str) -> Iterator[None]:
        name = self.slots_key(key)
        token = uuid.uuid4().hex
        try:
            self._wait_for_slot(key, name, token)
        except self._errors as exc:
            raise TransientSourceError(
                f"The request gate on Redis is unavailable: {type(exc).__name__}", code="gate_unavailable"
            ) from None
        self._hold(token, name)
        try:
            yield
        finally:
            self._release(token, name)

    def _wait_for_slot(self, key: str, name: str, token: str) -> None:
        entered = float(
            self._enter(
                keys=[name, self.pace_key(key)],
                args=[token, self.max_concurrent, self.lease_seconds, self.interval, self.max_concurrent],
            )
        )
        if entered > 0:
            time.sleep(entered)  # paced: this request's turn comes then
        delay = 0.002
        slot_args: list[str | float] = [token, self.max_concurrent, self.lease_seconds]
        while entered != 0 and not self._acquire(keys=[name], args=slot_args):
            # A slot frees when a request ends (milliseconds): poll briefly, with jitter.
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.05)

    def _hold(self, token: str, name: str) -> None:
        with self._held_lock:
            self._held[token] = name
            if self._renewer is None or not self._renewer.is_alive():  # also after a fork
                self._renewer = threading.Thread(
                    target=_renew_loop,
                    args=(weakref.ref(self), self._stop),
                    daemon=True,
                    name="graph-gate-renewer",
                )
                self._renewer.start()

    def _release(self, token: str, name: str) -> None:
        with self._held_lock:
            self._held.pop(token, None)
        with contextlib.suppress(*self._errors):  # unreachable Redis: the lease runs out instead
            self._redis.zrem(name, token)

    def renew_held(self) -> None:
        with self._held_lock:
            held = list(self._held.items())
        if held:
            with contextlib.suppress(*self._errors):
                args: list[str | float] = [self.lease_seconds, *[t for t, _ in held]]
                self._renew(keys=[name for _, name in held], args=args)

    def close(self) -> None:
        self._stop.set()
        self._redis.close()


def _renew_loop(ref: Callable[[], RedisRequestGate | None], stop: threading.Event) -> None:
    gate = ref()
    period = gate.lease_seconds / 3 if gate else 1.0
    del gate
    while not stop.wait(period):
        gate = ref()
        if gate is None:
            return
        gate.renew_held()
        del gate


_GATES: dict[tuple[Any, ...], RedisRequestGate] = {}
_GATES_LOCK = threading.Lock()


def redis_request_gate(
    max_concurrent: int = MAX_CONCURRENT, rate_limit: tuple[int, float] | None = None
) -> RedisRequestGate | None:
    """The gate on the Celery broker's Redis, or None when the broker is not Redis (the embedded
    broker: one machine, one worker process, where the client's own limiter suffices). One
    gate (connection pool, renewer thread) per process and configuration."""
    from django.conf import settings  # the clients that use this module know nothing of Django

    url = str(settings.CELERY_BROKER_URL)
    if not url.startswith(("redis://", "rediss://")):
        return None
    config = (url, max_concurrent, rate_limit)
    with _GATES_LOCK:
        gate = _GATES.get(config)
        if gate is None:
            gate = _GATES[config] = RedisRequestGate(url, max_concurrent=max_concurrent, rate_limit=rate_limit)
        return gate
