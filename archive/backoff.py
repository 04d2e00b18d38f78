"""Exponential backoff with jitter: the one formula behind every retry delay.

Used by the Graph client between attempts of one request, by the mail sync task between runs
(with a server's Retry-After) and by text extraction between attempts of a file. It lives in
``archive`` because ``archive`` imports nothing above it and extraction needs it.
"""

from __future__ import annotations

import math
import random


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float | None = None,
    jitter: tuple[float, float] = (0.8, 1.2),
    factor: float | None = None,
) -> float:
    """``base * 2**attempt`` seconds (attempt 0, or less, waits ``base``), at most ``cap``,
    times a random factor from ``jitter`` (or the given ``factor``, for tests) so that
    clients that failed together do not retry together. Never more than ``cap``."""
    delay = base * 2.0 ** max(0, attempt)
    if cap is not None:
        delay = min(cap, delay)
    delay *= random.uniform(*jitter) if factor is None else factor
    return delay if cap is None else min(cap, delay)


def server_wait(retry_after: float) -> float:
    """A server's Retry-After as a countdown: as given, rounded up to whole seconds so the retry
    never comes early (Graph sends fractions such as 2.128), and at least one second."""
    return float(max(1, math.ceil(retry_after)))


def at_least_retry_after(delay: float, retry_after: float | None) -> float:
    """``delay``, or the server's Retry-After when that is longer, rounded up to whole seconds
    so the retry never comes early (Graph sends fractions such as 2.128)."""
    return float(max(delay, math.ceil(retry_after or 0)))
