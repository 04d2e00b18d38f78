"""Where the kill tests' subprocesses stop: inside a batch's transaction,
everything of the batch written but nothing committed (or inside mail
processing's transaction), until SIGKILL."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django.db import connection


def pause_at_cursor_write(number: int, marker: Path) -> None:
    """On the ``number``-th write of a folder cursor, create ``marker`` (holding
    this process id) and hang there."""
    pause_at_write("mailsources_foldercursor", number, marker)


def pause_at_write(table: str, number: int, marker: Path) -> None:
    """On the ``number``-th INSERT or UPDATE of ``table`` (e.g. "archive_documentfile":
    inside mail processing's transaction, its parts stored, nothing committed),
    create ``marker`` (holding this process id) and hang there."""
    writes = 0

    def hang_after(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal writes
        result = execute(sql, params, many, context)
        if table in sql and sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            writes += 1
            if writes == number:
                marker.write_text(str(os.getpid()))
                while True:  # the transaction stays open until SIGKILL
                    time.sleep(3600)
        return result

    # Runs in this thread (the solo pool / the single sync run) only.
    connection.execute_wrappers.append(hang_after)
