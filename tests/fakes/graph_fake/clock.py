"""A clock the test moves: time in tests comes from here, never from ``sleep``."""

from __future__ import annotations

import threading


class ManualClock:
    """Seconds that pass only when :meth:`advance` says so; a callable like ``time.monotonic``."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
