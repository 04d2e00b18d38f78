"""The one backoff formula (archive/backoff.py) and the retry delays built on it: the Graph
client between tries of a request, the sync task between runs, extraction between attempts."""

from __future__ import annotations

from typing import Any

import pytest

from archive import extraction
from archive.backoff import at_least_retry_after, backoff_delay
from mailsources import tasks

DRAWS = 300


def test_the_delay_doubles_from_the_base_up_to_the_cap() -> None:
    delays = [backoff_delay(n, base=30, cap=3600, factor=1.0) for n in (0, 1, 2, 3, 6, 7, 20)]
    assert delays == [30, 60, 120, 240, 1920, 3600, 3600]
    assert backoff_delay(-3, base=30, factor=1.0) == 30  # "attempt 0 or less": the base


def test_without_a_cap_it_keeps_doubling() -> None:
    assert backoff_delay(10, base=300, factor=1.0) == 300 * 1024


def test_jitter_spreads_the_delay_over_its_range() -> None:
    delays = [backoff_delay(3, base=1, jitter=(0.8, 1.2)) for _ in range(DRAWS)]
    assert all(6.4 <= d <= 9.6 for d in delays)
    # Spread over the range, not stuck at one value or one end.
    assert min(delays) < 7.2 and max(delays) > 8.8


def test_the_cap_bounds_the_jittered_delay_too() -> None:
    delays = [backoff_delay(12, base=1, cap=300, jitter=(0.8, 1.2)) for _ in range(DRAWS)]
    assert all(240 <= d <= 300 for d in delays)
    assert min(delays) < 270  # still spread below the cap


def test_a_retry_after_wins_when_longer_rounded_up_to_whole_seconds() -> None:
    assert at_least_retry_after(15.0, None) == 15.0
    assert at_least_retry_after(15.0, 0.0) == 15.0
    assert at_least_retry_after(15.0, 2.128) == 15.0
    assert at_least_retry_after(15.0, 90.2) == 91.0
    assert at_least_retry_after(15.5, 15.2) == 16.0


def test_the_sync_task_retries_after_30_s_doubling_to_an_hour() -> None:
    assert [tasks.retry_countdown(n, None, jitter=1.0) for n in (0, 1, 3, 7, 20)] == [30, 60, 240, 3600, 3600]
    countdowns = [tasks.retry_countdown(1, None) for _ in range(DRAWS)]
    assert all(30 <= c <= 60 for c in countdowns) and min(countdowns) < 40 and max(countdowns) > 50
    assert tasks.retry_countdown(0, 90.2, jitter=0.5) == 91


def test_extraction_retries_after_its_setting_doubling_per_attempt(settings: Any) -> None:
    settings.EXTRACTION_RETRY_SECONDS = 10
    first = [extraction._retry_delay(1) for _ in range(DRAWS)]
    third = [extraction._retry_delay(3) for _ in range(DRAWS)]
    assert all(8 <= d <= 12 for d in first) and all(32 <= d <= 48 for d in third)
    assert min(third) < 36 and max(third) > 44


@pytest.mark.parametrize("attempt", [0, 1])
def test_extraction_waits_the_base_before_its_second_attempt(settings: Any, attempt: int) -> None:
    settings.EXTRACTION_RETRY_SECONDS = 10
    assert all(8 <= extraction._retry_delay(attempt) <= 12 for _ in range(DRAWS))
