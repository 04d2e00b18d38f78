"""The integrity ledger: ``record`` appends the entry for one change of archive
content, in the transaction of that change.

A document's canonical metadata (``document_metadata``) is what its
``metadata_sha256`` covers: number, kind, owner group, created, field values,
notes and its files (role, name, SHA-256, size, version, MIME part). Derived
state (processing status, extracted text, search entries) is not covered: it
can always be redone."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from archive.models import Document

from . import chain
from .models import Chain, LedgerEntry, LedgerEvent

SYSTEM = "system"


def actor_name(user: Any) -> str:
    """A user's name for the chains, or ``system`` without a signed-in user."""
    if user is None or not getattr(user, "is_authenticated", False):
        return SYSTEM
    return str(user.get_username())


def document_metadata(document: Document) -> dict[str, Any]:
    files = sorted(
        (
            {"role": f.role, "name": f.name, "sha256": f.sha256, "size": f.size, "version": f.version, "part": f.part}
            for f in document.files.all()
        ),
        key=lambda f: (f["role"], f["version"], f["part"], f["name"], f["sha256"]),
    )
    return {
        "number": document.pk,
        "kind": document.kind,
        "owner_group": document.owner_group.name,
        "created": document.created,
        "values": document.values,
        "notes": document.notes,
        "files": files,
    }


def metadata_hash(document: Document) -> str:
    return hashlib.sha256(chain.canonical(document_metadata(document))).hexdigest()


def record(
    event: LedgerEvent | str,
    document: Document,
    actor: str,
    blobs: Sequence[str] = (),
    details: Mapping[str, Any] | None = None,
) -> LedgerEntry:
    """Append the entry for ``event`` on ``document`` (after the change is saved)."""
    return record_many([(event, document, actor, blobs, details)])[0]


def record_many(
    changes: Iterable[tuple[LedgerEvent | str, Document, str, Sequence[str], Mapping[str, Any] | None]],
) -> list[LedgerEntry]:
    """Append one entry per change, in order, with one lock and one insert (a batch of archived mail)."""
    rows = [
        {
            "event": str(event),
            "document": document.pk,
            "actor": actor,
            "blobs": sorted(set(blobs)),
            "metadata_sha256": metadata_hash(document) if event != LedgerEvent.DELETED else "",
            "details": dict(details or {}),
        }
        for event, document, actor, blobs, details in changes
    ]
    return chain.append_many(Chain.LEDGER, rows)  # type: ignore[return-value]
