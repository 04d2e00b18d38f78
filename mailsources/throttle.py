"""Graph's per app + mailbox limits across all workers on all machines, kept in the
broker's Redis: at most 4 requests in flight (Graph answers the 5th with 429
``ApplicationThrottled``) and every worker's requests paced together under Graph's
request window (10,000 per 600 s).

:func:`redis_request_gate` returns the ``request_gate`` :class:`~mailsources.clients.graph.
GraphClient` enters around every Graph request: ``gate(key)`` is a context manager and
``key`` names the app and mailbox (``graph:{tenant}:{client id}:{mailbox}``). Each process
also has the client's own limiter; this gate is what several processes share.

* A slot is a member of a sorted set scored by its lease's expiry. Dropping expired leases,
  counting and taking a slot happen in one Lua script on Redis' clock (workers' clocks may
  disagree), so two workers can never both take the last slot.
* A held slot's lease is renewed in the background while its request runs (a large message
  may take longer than the lease); only a killed worker's slots expire, after ``lease_seconds``.
* Pacing is the client's GCRA (requests spaced evenly, a burst of 4), with its state in Redis.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings

from mailsources.clients.base import TransientSourceError

MAX_CONCURRENT = 4
LEASE_SECONDS = 30.0

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
# flight, lease seconds, interval (0: no pacing), burst. Reserves the next send time (GCRA, as the
# client's own limiter) and, when that is now, tries to take a slot in the same round trip.
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


def pacing_interval(rate_limit: tuple[int, float], max_concurrent: int) -> float:
    """Seconds between requests: the client's formula (a 1 % margin, at least 0.25 s, on the
    window for the difference between sending and Graph counting)."""
    limit, window = rate_limit
    margin = max(window * 0.01, 0.25)
    return (window + margin) / max(1, limit - max_concurrent)


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

    def __call__(self, key: str) -> contextlib.AbstractContextManager[None]:
        return self._gate(key)

    @contextlib.contextmanager
    def _gate(self, key: str) -> Iterator[None]:
        name = self.slots_key(key)
        token = uuid.uuid4().hex
        try:
            entered = float(
                self._enter(
                    keys=[name, f"{self.prefix}:pace:{key}"],
                    args=[token, self.max_concurrent, self.lease_seconds, self.interval, self.max_concurrent],
                )
            )
            if entered > 0:
                time.sleep(entered)  # paced: this request's turn comes then
            delay = 0.002
            slot_args = [token, self.max_concurrent, self.lease_seconds]
            while entered != 0 and not self._acquire(keys=[name], args=slot_args):
                # A slot frees when a request ends (milliseconds): poll briefly, with jitter.
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.05)
        except self._errors as exc:
            raise TransientSourceError(
                f"The request gate on Redis is unavailable: {type(exc).__name__}", code="gate_unavailable"
            ) from None
        self._hold(token, name)
        try:
            yield
        finally:
            self._release(token, name)

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
                self._renew(keys=[name for _, name in held], args=[self.lease_seconds, *[t for t, _ in held]])

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
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return None
    config = (url, max_concurrent, rate_limit)
    with _GATES_LOCK:
        gate = _GATES.get(config)
        if gate is None:
            gate = _GATES[config] = RedisRequestGate(url, max_concurrent=max_concurrent, rate_limit=rate_limit)
        return gate
