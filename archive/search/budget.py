"""A time budget for one search: its SQL statements together may run for
``SEARCH_TIME_BUDGET_MS``; past that the database stops the statement and the
search answers "too complex" instead of holding a web worker.

- MariaDB: each statement runs as ``SET STATEMENT max_statement_time=<the
  rest of the budget> FOR …`` (the server interrupts it, error 1969);
- SQLite: a progress handler, called every ``PROGRESS_STEPS`` virtual machine
  instructions, interrupts the statement once the deadline has passed.

InnoDB's own limit on a full-text query (the result cache, error 188, e.g. for
many one-letter prefixes by relevance) gets the same answer.

The budget covers the database's work; the Python side of a search (parsing,
snippets) is bounded by the query limits in ``query.py``."""

from __future__ import annotations

import contextlib
import contextvars
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections

from archive.search.query import SearchQueryError

DEFAULT_BUDGET_MS = 900  # with the page around it, a search answers within a second
PROGRESS_STEPS = 1000  # SQLite VM instructions between two looks at the clock
# ER_STATEMENT_TIMEOUT (max_statement_time exceeded); HA_ERR_FTS_EXCEED_RESULT_CACHE_LIMIT.
_MARIADB_TOO_COMPLEX = {1969, 188}


class SearchTooComplex(SearchQueryError):
    def __init__(self) -> None:
        super().__init__(
            "This search is too complex to answer in time — narrow it: fewer or longer words, a field or a date range."
        )


def budget_seconds() -> float:
    return int(getattr(settings, "SEARCH_TIME_BUDGET_MS", DEFAULT_BUDGET_MS)) / 1000


# The deadline of the time budget the current code runs in, and its clock.
_active: contextvars.ContextVar[tuple[float, Callable[[], float]] | None] = contextvars.ContextVar(
    "search_time_budget", default=None
)


def remaining_seconds() -> float | None:
    """What is left of the time budget in force, ``None`` outside one (a legal
    hold's or an export's search runs to its end)."""
    active = _active.get()
    return None if active is None else active[0] - active[1]()


@contextlib.contextmanager
def time_budget(
    seconds: float | None = None, *, using: str = "default", clock: Callable[[], float] = time.monotonic
) -> Iterator[None]:
    """Raises SearchTooComplex when the statements run inside take longer than
    ``seconds`` (default: the setting) together."""
    connection = connections[using]
    deadline = clock() + (budget_seconds() if seconds is None else seconds)
    mariadb = connection.vendor == "mysql"

    def limited(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        remaining = deadline - clock()
        if remaining <= 0:
            raise SearchTooComplex()
        if mariadb:
            # Seconds with microseconds; 0 would mean "no limit".
            sql = f"SET STATEMENT max_statement_time={max(remaining, 1e-6):.6f} FOR {sql}"
        return execute(sql, params, many, context)

    raw = None
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        raw = connection.connection
        raw.set_progress_handler(lambda: 1 if clock() > deadline else 0, PROGRESS_STEPS)
    token = _active.set((deadline, clock))
    try:
        with connection.execute_wrapper(limited):
            yield
    except DatabaseError as exc:
        if is_too_complex(exc, mariadb=mariadb):
            raise SearchTooComplex() from None
        raise
    finally:
        _active.reset(token)
        if raw is not None:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed meanwhile: nothing to undo
                raw.set_progress_handler(None, 0)


def is_too_complex(exc: DatabaseError, *, mariadb: bool) -> bool:
    """Whether the database gave up on the statement for its cost."""
    if mariadb:
        return bool(exc.args) and exc.args[0] in _MARIADB_TOO_COMPLEX
    return "interrupted" in str(exc)
