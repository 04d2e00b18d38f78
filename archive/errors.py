"""Which failures are outages (worth another attempt once the service is back)
rather than faults of the work itself: database connection loss and lock
conflicts, a full disk or quota. Shared by mail processing (archive) and the
mail source runs (``mailsources.tasks`` imports it from here: archive never
imports mailsources)."""

from __future__ import annotations

import errno

import kombu.exceptions
import redis.exceptions
from django.db import InterfaceError, OperationalError

# The broker cannot take a message (Redis down, the filesystem broker's disk full):
# Celery raises kombu's OperationalError; Redis clients used directly raise their own.
BROKER_ERRORS: tuple[type[Exception], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)

# MariaDB/MySQL: lock wait timeout, deadlock, too many connections, server shutting
# down, can't connect (socket, TCP), server gone away, lost connection, connection
# killed or dropped by the server, lost during the handshake.
TRANSIENT_DB_CODES = {1205, 1213, 1040, 1053, 1927, 2002, 2003, 2006, 2013, 2055, 4031}
# SQLite: busy, its file unreachable or its disk failing/full (the same later).
TRANSIENT_SQLITE_MESSAGES = (
    "database is locked",
    "database table is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
)
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_transient_db_error(exc: BaseException) -> bool:
    """Database errors a later attempt of the same idempotent work can succeed after:
    the connection or the server is gone for now, or a lock was in the way."""
    if isinstance(exc, InterfaceError):
        return True  # a connection already closed under us
    if not isinstance(exc, OperationalError):
        return False
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    message = str(exc).lower()
    return code in TRANSIENT_DB_CODES or any(m in message for m in TRANSIENT_SQLITE_MESSAGES)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def transient_reason(exc: BaseException) -> str | None:
    """What to record when ``exc`` is an outage of the database or the disk; else None."""
    if is_transient_db_error(exc):
        return f"database unavailable: {exc}"
    if is_disk_full(exc):
        return f"disk full: {exc}"
    return None
