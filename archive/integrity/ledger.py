"""The integrity ledger: ``record`` appends the entry for one change of archive
content, in the transaction of that change.

A document's canonical metadata (``document_metadata``) is what its
``metadata_sha256`` covers: number, kind, owner group, created, field values,
notes and its files (role, name, SHA-256, size, version, MIME part). The owner
group is its name (readable in exports): renaming a group changes the metadata
of its documents, so a rename must be recorded too. Derived
state (processing status, extracted text, search entries) is not covered: it
can always be redone.

Every write of archive content calls one of these after saving the change and
before its transaction ends: the entry and the change commit together or not
at all. ``settings.INTEGRITY_LEDGER = False`` switches recording off — only for
``make bench``, to measure what the ledger costs."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connections, transaction

from archive.models import Document, DocumentFile

from . import chain
from .models import Chain, LedgerEntry, LedgerEvent

SYSTEM = "system"

Change = tuple[LedgerEvent | str, Document, str, Sequence[str], Mapping[str, Any] | None]


def actor_name(user: Any) -> str:
    """A user's name for the chains, or ``system`` without a signed-in user."""
    if user is None or not getattr(user, "is_authenticated", False):
        return SYSTEM
    return str(user.get_username())


def source_actor(source_id: int) -> str:
    """The actor of what a mail source's run archives."""
    return f"source:{source_id}"


def _file_row(f: DocumentFile) -> dict[str, Any]:
    return {"role": f.role, "name": f.name, "sha256": f.sha256, "size": f.size, "version": f.version, "part": f.part}


def _in_order(files: Iterable[DocumentFile]) -> list[DocumentFile]:
    """A document's files in the order of its canonical metadata."""
    return sorted(files, key=lambda f: (f.role, f.version, f.part, f.name, f.sha256))


def _metadata(document: Document, files: Iterable[DocumentFile], group_name: str) -> dict[str, Any]:
    rows = [_file_row(f) for f in _in_order(files)]
    return {
        "number": document.pk,
        "kind": document.kind,
        "owner_group": group_name,
        # As text already: what canonical() would make of it, without its fallback per call.
        "created": chain.format_time(created) if isinstance(created := document.created, dt.datetime) else created,
        "values": document.values,
        "notes": document.notes,
        "files": rows,
    }


def _metadata_bytes(document: Document, files: Iterable[DocumentFile], group_name: str) -> bytes:
    """``chain.canonical(_metadata(…))`` built from its parts (sorted keys, each
    value encoded by the chain's rules), without the encoder's walk over the
    whole mapping: it runs for every archived mail. The verifier keeps the
    reference (``metadata_hash``); ``tests/integrity`` compares the two."""
    text = chain.scalar_text
    rows = ",".join(
        f'{{"name":{text(f.name)},"part":{text(f.part)},"role":{text(f.role)},"sha256":{text(f.sha256)},'
        f'"size":{text(f.size)},"version":{text(f.version)}}}'
        for f in _in_order(files)
    )
    created = document.created
    return (
        f'{{"created":{text(chain.format_time(created) if isinstance(created, dt.datetime) else created)},'
        f'"files":[{rows}],"kind":{text(document.kind)},"notes":{text(document.notes)},'
        f'"number":{text(document.pk)},"owner_group":{text(group_name)},"values":{chain.canonical_text(document.values)}}}'
    ).encode()


def document_metadata(document: Document) -> dict[str, Any]:
    return _metadata(document, document.files.all(), document.owner_group.name)


def metadata_hash(document: Document) -> str:
    return hashlib.sha256(chain.canonical(document_metadata(document))).hexdigest()


def metadata_hashes(
    documents: Sequence[Document], *, locking: bool = True, files: Mapping[int, Sequence[DocumentFile]] | None = None
) -> dict[int, str]:
    """Each document's metadata hash, its files read with one query per 500.
    The documents are the caller's, current and locked (``select_for_update``);
    the files are a locking read too, so that they are the newest committed rows
    and stay so until the caller commits (``locking=False``: a plain read, for
    the verifier outside a transaction).
    ``files``: every file of the documents, when the caller has just written them all."""
    groups = _group_names({d.owner_group_id for d in documents})
    if files is not None:
        return {
            d.pk: hashlib.sha256(_metadata_bytes(d, files.get(d.pk, ()), groups[d.owner_group_id])).hexdigest()
            for d in documents
        }
    found: dict[int, list[DocumentFile]] = defaultdict(list)
    numbers = [d.pk for d in documents]
    for i in range(0, len(numbers), 500):
        rows = DocumentFile.objects.filter(document_id__in=numbers[i : i + 500])
        if locking:
            rows = rows.select_for_update()
        for f in rows.only("document_id", "role", "name", "sha256", "size", "version", "part"):
            found[f.document_id].append(f)
    return {
        d.pk: hashlib.sha256(_metadata_bytes(d, found[d.pk], groups[d.owner_group_id])).hexdigest() for d in documents
    }


def _group_names(pks: set[int]) -> dict[int, str]:
    """The groups' names, newest committed (READ COMMITTED on MariaDB): plain
    SQL, it runs for every batch of archived mail (the ORM's query building
    cost more than the query)."""
    if not pks:
        return {}
    table, quote = Group._meta.db_table, connections[Group.objects.db].ops.quote_name
    with connections[Group.objects.db].cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('id')}, {quote('name')} FROM {quote(table)} WHERE {quote('id')} IN "
            f"({', '.join(['%s'] * len(pks))})",
            sorted(pks),
        )
        return dict(cursor.fetchall())


def enabled() -> bool:
    return bool(getattr(settings, "INTEGRITY_LEDGER", True))


def record(
    event: LedgerEvent | str,
    document: Document,
    actor: str,
    blobs: Sequence[str] = (),
    details: Mapping[str, Any] | None = None,
) -> LedgerEntry | None:
    """Append the entry for ``event`` on ``document`` (after the change is saved)."""
    entries = record_many([(event, document, actor, blobs, details)])
    return entries[0] if entries else None


def record_many(
    changes: Iterable[Change], *, files: Mapping[int, Sequence[DocumentFile]] | None = None
) -> list[LedgerEntry]:
    """Append one entry per change, in order, with one lock and one insert (a
    batch of archived mail). ``files``: see ``metadata_hashes``. Inside
    ``one_append`` the entries wait for the block's end (and none is returned)."""
    changes = list(changes)
    if not changes or not enabled():
        return []
    # The caller's transaction, as a rule (one of its own for a lone call); no
    # savepoint: a failed append fails the change it records (and costs no round trips).
    with transaction.atomic(savepoint=False):
        live = [document for event, document, *_ in changes if event != LedgerEvent.DELETED]
        hashes = metadata_hashes(live, files=files) if live else {}
        rows = _rows(changes, hashes)
        pending = _pending.get()
        if pending is not None:
            pending.extend(rows)
            return []
        return chain.append_many(Chain.LEDGER, rows)  # type: ignore[return-value]


def _rows(changes: list[Change], hashes: dict[int, str]) -> list[dict[str, Any]]:
    return [
        {
            "event": str(event),
            "document": document.pk,
            "actor": actor,
            "blobs": sorted(set(blobs)),
            "metadata_sha256": hashes[document.pk] if event != LedgerEvent.DELETED else "",
            "details": dict(details or {}),
        }
        for event, document, actor, blobs, details in changes
    ]


_pending: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar("ledger_pending", default=None)


@contextlib.contextmanager
def one_append() -> Iterator[None]:
    """One append for every ``record_many`` of the block (the pipeline's batch:
    the locations added to mails archived before, then the new mails): each
    change's metadata hash is taken at its call (the state after that change),
    its entry kept, and the block's end appends them all in order — one head
    lock, one insert. Only inside the transaction of the changes (the entries
    commit with them); a block that fails appends nothing. A nested block is
    part of the outer one."""
    if _pending.get() is not None:
        yield
        return
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger.one_append() outside a transaction: the entries would not commit with the changes")
    rows: list[dict[str, Any]] = []
    token = _pending.set(rows)
    try:
        yield
    finally:
        _pending.reset(token)
    if rows:
        chain.append_many(Chain.LEDGER, rows, entries=False)


def record_deletion(document: Document, actor: str, details: Mapping[str, Any] | None = None) -> LedgerEntry | None:
    """The ``DELETED`` entry of a document: call it in the deleting transaction
    *before* the rows are deleted. Its ``blobs`` are the document's blobs, its
    details carry ``deleted_metadata_sha256`` (the hash of the state that was
    deleted, so the last state stays provable) plus the caller's details (the
    policy, the reason); ``metadata_sha256`` is empty: there is no document after."""
    blobs = list(document.files.values_list("sha256", flat=True))
    state = {"deleted_metadata_sha256": metadata_hash(document), **dict(details or {})}
    return record(LedgerEvent.DELETED, document, actor, blobs, state)


def field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What changed between two value mappings: ``{name: {"old": …, "new": …}}``."""
    return {
        name: {"old": old.get(name), "new": new.get(name)}
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    }


@dataclasses.dataclass(frozen=True)
class HistoryChange:
    label: str
    old: Any
    new: Any


@dataclasses.dataclass(frozen=True)
class HistoryRow:
    seq: int
    at: dt.datetime
    actor: str
    event: str
    changes: list[HistoryChange]


HISTORY_ROWS = 200


def document_history(number: int, labels: Mapping[str, str]) -> list[HistoryRow]:
    """The document's ledger entries, newest first, with the field and note
    changes they carry (old → new) under the fields' labels."""
    rows = []
    for entry in LedgerEntry.objects.filter(document=number).order_by("-seq")[:HISTORY_ROWS]:
        details = entry.details or {}
        changes = [
            HistoryChange(labels.get(name, name), change.get("old"), change.get("new"))
            for name, change in sorted((details.get("fields") or {}).items())
        ]
        if "notes" in details:
            changes.append(HistoryChange("Notes", details["notes"].get("old"), details["notes"].get("new")))
        event = LedgerEvent(entry.event).label if entry.event in LedgerEvent.values else entry.event
        rows.append(HistoryRow(entry.seq, entry.at, entry.actor, str(event), changes))
    return rows


def record_baseline(batch: int = 500) -> int:
    """An ``ARCHIVED`` entry (details ``{"baseline": true}``) for every document
    that has none: documents archived before the ledger existed, so that their
    state from now on is provable. Returns how many were recorded."""
    recorded = 0
    while True:
        with transaction.atomic():
            known = LedgerEntry.objects.values("document")
            documents = list(Document.objects.select_for_update().exclude(pk__in=known).order_by("pk")[:batch])
            if not documents:
                return recorded
            record_many((LedgerEvent.ARCHIVED, d, SYSTEM, [], {"baseline": True}) for d in documents)
            recorded += len(documents)
