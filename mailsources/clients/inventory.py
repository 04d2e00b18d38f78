"""What a folder holds on the server now, read-only (the reconciliation report):
each message's location (IMAP UID, Graph id), size, arrival time and Message-ID."""

from __future__ import annotations

import dataclasses
from datetime import datetime


@dataclasses.dataclass(frozen=True)
class ServerMessage:
    location: str
    size: int
    received_at: datetime | None
    message_id: str


@dataclasses.dataclass
class FolderInventory:
    folder: str
    epoch: str  # IMAP UIDVALIDITY; "" for Graph
    messages: list[ServerMessage]
