"""Pacing (mailsources/pacing.py): the in-process limiter, on a clock the test controls, and
the formula it shares with the Redis gate (whose behaviour on Redis the pipeline tests show)."""

from __future__ import annotations

import collections

import pytest

from mailsources.pacing import MailboxLimiter, RedisRequestGate, gcra_reserve, limiter_for, pacing_interval


class SimulatedTime:
    """A clock and a sleep that only moves it: the limiter's waits become numbers."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def sends(limiter: MailboxLimiter, time: SimulatedTime, count: int) -> list[float]:
    """When each of ``count`` requests, sent back to back, went out."""
    times = []
    for _ in range(count):
        with limiter.slot():
            times.append(time.now)
    return times


def test_graphs_window_gives_99_percent_of_its_ceiling() -> None:
    interval = pacing_interval((10_000, 600.0), 4)
    assert interval == pytest.approx(606 / 9996)
    assert 600 / interval / 10_000 == pytest.approx(0.9897, abs=1e-4)
    assert pacing_interval((60, 1.0), 4) == pytest.approx(1.25 / 56)  # at least 0.25 s of margin


def test_a_burst_of_max_concurrent_then_one_request_per_interval() -> None:
    time = SimulatedTime()
    limiter = MailboxLimiter(4, (100, 1.0), clock=time.clock, sleep=time.sleep)
    interval = limiter.interval
    times = sends(limiter, time, 8)
    expected = [1000.0] * 4 + [1000.0 + k * interval for k in (1, 2, 3, 4)]
    assert times == pytest.approx(expected)


def test_no_window_ever_sees_more_than_the_limit() -> None:
    time = SimulatedTime()
    limit, window = 60, 1.0
    limiter = MailboxLimiter(4, (limit, window), clock=time.clock, sleep=time.sleep)
    times = sends(limiter, time, 500)
    in_window: collections.deque[float] = collections.deque()
    busiest = 0
    for sent in times:
        in_window.append(sent)
        while in_window[0] <= sent - window:
            in_window.popleft()
        busiest = max(busiest, len(in_window))
    # Under the limit: the burst, then one per interval (the margin, 0.25 s on a 1 s window,
    # leaves room for requests the server counts late).
    assert busiest == 4 + int(window / limiter.interval) == 48 < limit
    # ... and keeps close to the ceiling: 500 requests in about 500 intervals.
    assert times[-1] - times[0] == pytest.approx(496 * limiter.interval)


def test_idle_time_is_not_saved_up_beyond_one_burst() -> None:
    time = SimulatedTime()
    limiter = MailboxLimiter(4, (100, 1.0), clock=time.clock, sleep=time.sleep)
    sends(limiter, time, 10)
    time.now += 3600  # an hour without requests
    start = time.now
    assert sends(limiter, time, 6) == pytest.approx(
        [start] * 4 + [start + limiter.interval, start + 2 * limiter.interval]
    )


def test_a_retry_after_holds_back_every_request_of_the_mailbox() -> None:
    time = SimulatedTime()
    limiter = MailboxLimiter(4, None, clock=time.clock, sleep=time.sleep)
    limiter.pause(2.5)
    limiter.pause(1.0)  # a shorter pause does not shorten the longer one
    assert sends(limiter, time, 3) == [1002.5, 1002.5, 1002.5]
    assert time.slept == [2.5]


def test_without_a_rate_limit_nothing_waits() -> None:
    time = SimulatedTime()
    limiter = MailboxLimiter(4, None, clock=time.clock, sleep=time.sleep)
    assert sends(limiter, time, 50) == [1000.0] * 50 and time.slept == []


def test_at_most_max_concurrent_slots() -> None:
    limiter = MailboxLimiter(4, None)
    slots = limiter.concurrency()
    assert [slots.acquire(blocking=False) for _ in range(5)] == [True, True, True, True, False]
    for _ in range(4):
        slots.release()


def test_every_client_of_one_mailbox_shares_one_limiter() -> None:
    key = "graph:t:c:shared@contoso.com"
    assert limiter_for(key, 4, (100, 1.0)) is limiter_for(key, 4, (100, 1.0))
    assert limiter_for(key, 4, (100, 1.0)) is not limiter_for("graph:t:c:other@contoso.com", 4, (100, 1.0))


def test_the_redis_gate_paces_with_the_same_formula() -> None:
    # Constructing the gate does not connect; its Lua script is gcra_reserve on Redis' clock.
    gate = RedisRequestGate("redis://127.0.0.1:1/0", rate_limit=(100, 1.0))
    assert gate.interval == MailboxLimiter(4, (100, 1.0)).interval == pacing_interval((100, 1.0), 4)
    assert gcra_reserve(0.0, 10.0, 0.5, 4) == (10.0, 10.5)
    assert gcra_reserve(12.0, 10.0, 0.5, 4) == (10.5, 12.5)  # two intervals past the burst
