"""The small interface every mail client (IMAP, Microsoft Graph) implements.

Clients know nothing of the ORM or of Django models: they take plain values
(host, credentials, folder names, cursors as JSON-able dicts) and hand back raw
message bytes. The ingestion pipeline (``mailsources.pipeline``) is the only
place that turns what a client yields into archive rows.

Errors are split in two so the retry policy can tell them apart:
``TransientSourceError`` (network, throttling, server busy: retry later) and
``PermanentSourceError`` (bad credentials, unknown mailbox, missing permission:
stop and show the user).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol


class SourceError(Exception):
    """A failure talking to a mail source; ``str(err)`` is shown to the user."""

    #: A short machine-readable reason, e.g. "auth_failed", "tls_untrusted".
    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class TransientSourceError(SourceError):
    """Worth retrying later.

    ``retry_after`` (seconds): the wait the server named (Retry-After); the next attempt comes
    exactly then, with no backoff on top. None: the server named none, the caller backs off,
    but not for less than ``min_wait`` (e.g. another mailbox of the run was told to wait that
    long). ``mailboxes``: set by the pipeline when only some mailboxes of a run must be tried
    again (the others completed)."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        min_wait: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.min_wait = min_wait
        self.mailboxes: list[str] | None = None


class PermanentSourceError(SourceError):
    """Retrying will not help until someone changes the configuration."""


@dataclasses.dataclass(frozen=True)
class FolderInfo:
    name: str  # the name the user configures and sees, e.g. "INBOX" or "Inbox/Projects"
    total: int | None = None  # number of messages, when cheaply known


@dataclasses.dataclass(frozen=True)
class ConnectionReport:
    """What "Test connection" shows on success."""

    lines: list[str]  # human-readable, printed by `manage.py mailtest` and shown in WebAdmin
    folders: list[FolderInfo]
    newest_subject: str | None


@dataclasses.dataclass
class FetchedMessage:
    """One message as the server delivered it, byte for byte."""

    location: str  # stable id inside the folder cursor's epoch: IMAP UID, Graph immutable id
    raw: bytes  # b"" when ``stored``
    received_at: datetime | None = None  # server's INTERNALDATE / receivedDateTime
    # A huge mail the client streamed into its raw sink as it arrived: what the sink returned
    # (``archive.storage.StoredBlob``), the bytes are in the store, not in ``raw``.
    stored: Any = None
    # Recorded with the location (``MailLocation.details``): e.g. an import's MBOX variant.
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class FolderBatch:
    """A bounded slice of one folder's changes.

    The pipeline commits ``messages`` (and records ``known`` / ``removed``)
    and only then stores ``cursor``: a crash in between makes the next run
    repeat this batch, which the ledger's unique keys turn into no-ops.
    """

    epoch: str  # IMAP UIDVALIDITY, Graph: "" (immutable ids do not change)
    messages: list[FetchedMessage]
    cursor: dict[str, Any]  # JSON-able; handed back unchanged on the next run
    removed: list[str] = dataclasses.field(default_factory=list)
    total: int | None = None  # messages in the folder, for progress
    # The cursor was reset by the server (UIDVALIDITY change, Graph 410):
    # the batch is a resync by content; dedup happens on the raw bytes' hash.
    resync: bool = False
    # Locations listed in this slice that ``known`` reported as already archived
    # (not downloaded again), e.g. a Graph mail moved into this folder: the
    # pipeline may record that it was seen here.
    known_locations: list[str] = dataclasses.field(default_factory=list)
    # What could not be read in this slice (an import's unreadable item), named by file and
    # position: the run history lists them, the rest of the batch is committed.
    problems: list[str] = dataclasses.field(default_factory=list)


# Returns the subset of ``locations`` already recorded in the ledger for this
# folder/epoch, so the client need not download their bodies again.
KnownFilter = Callable[[str, Iterable[str]], set[str]]


class MailClient(Protocol):
    def test_connection(self) -> ConnectionReport: ...

    def list_folders(self) -> list[FolderInfo]: ...

    def sync_folder(
        self,
        folder: str,
        cursor: dict[str, Any] | None,
        known: KnownFilter,
        *,
        min_age_days: int = 0,
    ) -> Iterator[FolderBatch]:
        """Yield batches of new messages since ``cursor`` (None: from the start)."""
        ...

    def check_action_supported(self, action: str) -> None:
        """PermanentSourceError when "move"/"delete" cannot work on this server."""
        ...

    # ``epoch``: the one the locations belong to (IMAP UIDVALIDITY); clients refuse
    # to act when the folder's epoch has changed since.
    def move(self, folder: str, locations: list[str], target_folder: str, *, epoch: str | None = None) -> None: ...

    def delete(self, folder: str, locations: list[str], *, epoch: str | None = None) -> None: ...

    def close(self) -> None: ...
