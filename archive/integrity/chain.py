"""Appending to a hash chain, and the hash rules every verifier uses.

An entry's hash is SHA-256 over ``prev_hash`` and the canonical JSON of the
entry's fields (``canonical``): sorted keys, no spaces, UTF-8, times as ISO 8601
in UTC with microseconds. The first entry's ``prev_hash`` is 64 zeros. The
standalone verifier of an export repeats exactly these rules."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import AuditEntry, Chain, ChainEntry, ChainHead, LedgerEntry

GENESIS = "0" * 64


# The fields of each chain's entries that the entry hash covers, in this order
# of names (the JSON is sorted anyway; the list says what is covered).
HASHED_FIELDS: dict[str, tuple[str, ...]] = {
    Chain.LEDGER: ("seq", "at", "actor", "event", "document", "blobs", "metadata_sha256", "details"),
    Chain.AUDIT: ("seq", "at", "actor", "action", "user_id", "document", "ip", "outcome", "details"),
}
MODELS: dict[str, type[ChainEntry]] = {Chain.LEDGER: LedgerEntry, Chain.AUDIT: AuditEntry}


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"not canonical JSON: {type(value).__name__}")


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(data: Mapping[str, Any]) -> bytes:
    """The one byte form of a mapping that is hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()


def entry_payload(chain: str, entry: ChainEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in HASHED_FIELDS[chain]}


def entry_hash(prev_hash: str, payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(payload)).hexdigest()


def append(chain: str, **fields: Any) -> ChainEntry:
    """Append one entry (fields of the chain's model, without seq/at/hashes)."""
    return append_many(chain, [fields])[0]


def append_many(chain: str, rows: Iterable[Mapping[str, Any]]) -> list[ChainEntry]:
    """Append entries in order, in the caller's transaction (one is opened if
    there is none): locks the chain's head row, numbers and links the entries,
    writes them with one bulk insert and moves the head. The lock is held until
    the caller's transaction ends, so a rolled-back change leaves no entry and
    no gap; there is no savepoint either: a failed append fails the caller's
    transaction. Queries: the head locked, one insert, the head moved."""
    model = MODELS[chain]
    rows = list(rows)
    if not rows:
        return []
    with transaction.atomic(savepoint=False):
        head = _locked_head(chain)
        now = timezone.now()
        entries = []
        prev, seq = head.hash, head.seq
        for fields in rows:
            seq += 1
            entry = model(
                seq=seq, at=fields.get("at") or now, prev_hash=prev, **{k: v for k, v in fields.items() if k != "at"}
            )
            entry.entry_hash = entry_hash(prev, entry_payload(chain, entry))
            prev = entry.entry_hash
            entries.append(entry)
        model._default_manager.bulk_create(entries)
        ChainHead.objects.filter(chain=chain).update(seq=seq, hash=prev)
    return entries


def _locked_head(chain: str) -> ChainHead:
    """The chain's head row, locked until the transaction ends (created at the first append)."""
    try:
        return ChainHead.objects.select_for_update().get(chain=chain)
    except ChainHead.DoesNotExist:
        try:
            with transaction.atomic():
                ChainHead.objects.create(chain=chain)
        except IntegrityError:
            pass  # another transaction created it first
        return ChainHead.objects.select_for_update().get(chain=chain)


def anchor_message(ledger_seq: int, ledger_hash: str, audit_seq: int, audit_hash: str) -> bytes:
    """What an anchor's timestamp covers (its SHA-256 is sent to the TSA)."""
    return canonical({"audit": [audit_seq, audit_hash], "ledger": [ledger_seq, ledger_hash]})
