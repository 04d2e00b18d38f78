"""Appending to a hash chain, and the hash rules every verifier uses.

An entry's hash is SHA-256 over ``prev_hash`` and the canonical JSON of the
entry's fields (``canonical``): sorted keys, no spaces, UTF-8, times as ISO 8601
in UTC with microseconds. The first entry's ``prev_hash`` is 64 zeros. The
standalone verifier of an export repeats exactly these rules."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connections, models, router, transaction
from django.utils import timezone

from archive import bulk

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
    """``2024-03-05T10:11:12.000123Z``: the time in UTC with microseconds."""
    if value.tzinfo is not dt.UTC:  # (most times are UTC already: timezone.now(), read from the database)
        value = value.astimezone(dt.UTC)
    if value.year >= 1000:
        # strftime's text, a fifth of its cost: isoformat() is "…:12.000123+00:00" in UTC.
        return value.isoformat(timespec="microseconds")[:26] + "Z"
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # (where %Y may not pad to four digits)


# What json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# default=_json_default) builds on every call, built once.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)
_encode_string = json.encoder.encode_basestring  # the encoder's own string quoting (ensure_ascii=False)


def canonical_text(data: Any) -> str:
    """``canonical`` as text (any JSON value)."""
    if type(data) is dict and (flat := _flat_object(data)) is not None:
        return flat
    return _ENCODER.encode(data)


def _boolean_text(value: bool) -> str:
    return "true" if value else "false"


_FLAT: dict[type, Callable[[Any], str]] = {str: _encode_string, int: int.__repr__, bool: _boolean_text}


def _flat_object(data: dict[Any, Any]) -> str | None:
    """The encoder's text of a mapping of text keys to texts, integers, booleans
    and nulls (a document's field values, as a rule), without its general walk;
    ``None`` for any other mapping."""
    parts = []
    for key, value in sorted(data.items()) if len(data) > 1 else data.items():
        if type(key) is not str:
            return None
        if value is None:
            text = "null"
        elif (encode := _FLAT.get(type(value))) is not None:
            text = encode(value)
        else:
            return None
        parts.append(f"{_encode_string(key)}:{text}")
    return "{" + ",".join(parts) + "}"


def canonical(data: Mapping[str, Any]) -> bytes:
    """The one byte form of a mapping that is hashed: sorted keys, no spaces, UTF-8."""
    return _ENCODER.encode(data).encode()


def entry_payload(chain: str, entry: ChainEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in HASHED_FIELDS[chain]}


def entry_hash(prev_hash: str, payload: Mapping[str, Any]) -> str:
    """The reference computation (the verifiers'); ``append_many`` gets the same bytes faster."""
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(payload)).hexdigest()


def scalar_text(value: Any) -> str:
    """``canonical_text`` of one value, without the encoder's set-up for the common types."""
    kind = type(value)
    if kind is str or isinstance(value, str):  # a choice (TextChoices) is a str too
        return _encode_string(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is dt.datetime:
        return f'"{format_time(value)}"'
    return _ENCODER.encode(value)


def _json_text(value: Any) -> str:
    """``canonical_text``, with a short way for a list of strings (the blobs)."""
    if type(value) is list and all(type(item) is str for item in value):
        return "[" + ",".join(map(_encode_string, value)) + "]"
    return _ENCODER.encode(value)


def append(chain: str, **fields: Any) -> ChainEntry:
    """Append one entry (fields of the chain's model, without seq/at/hashes)."""
    return append_many(chain, [fields])[0]


def append_many(chain: str, rows: Iterable[Mapping[str, Any]], *, entries: bool = True) -> list[ChainEntry]:
    """Append entries in order, in the caller's transaction (one is opened if
    there is none): locks the chain's head row, numbers and links the entries,
    writes them with one multi-row insert and moves the head. The lock is held
    until the caller's transaction ends, so a rolled-back change leaves no entry
    and no gap; there is no savepoint either: a failed append fails the caller's
    transaction. Queries: the head locked, one insert, the head moved.
    Returns the new entries (``entries=False``: nothing, for a caller that
    does not need them).

    Cheap per entry (it runs for every archived mail): each JSON column is
    encoded once, canonically, and that text is both stored and spliced into
    the entry's canonical form (the bytes ``entry_hash`` hashes: the test
    compares them); values are prepared as the model's fields would prepare
    them, before hashing (what is read back is what was hashed), without
    model instances on the way in."""
    rows = list(rows)
    if not rows:
        return []
    table = _table(chain)
    for fields in rows:  # before the transaction: a mistake here does not break the caller's
        if unknown := fields.keys() - table.settable:
            raise TypeError(f"{table.model.__name__} has no field(s) {', '.join(sorted(unknown))}")
    prepared, defaults, canonical_form, db_order = table.prepared, table.defaults, table.template, table.db_order
    with transaction.atomic(using=table.db, savepoint=False):
        seq, prev = table.locked_head(chain)
        now = timezone.now()
        stored_now, now_text = table.datetime_db(now), scalar_text(now)
        values: list[dict[str, Any]] = []  # each entry's Python values (entries=True)
        params: list[Any] = []  # each entry's database values, in table.fields order
        for fields in rows:
            seq += 1
            at = fields.get("at") or now
            own = {"seq": seq, "at": at}
            db_values = {"seq": seq, "at": stored_now if at is now else table.datetime_db(at), "prev_hash": prev}
            texts = {"seq": int.__repr__(seq), "at": now_text if at is now else scalar_text(at)}
            for name, prepare in prepared:
                own[name], db_values[name], texts[name] = prepare(fields[name] if name in fields else defaults[name]())
            digest = hashlib.sha256(f"{prev}\n{canonical_form.format_map(texts)}".encode()).hexdigest()
            db_values["entry_hash"] = digest
            params.extend(db_order(db_values))
            if entries:
                own["prev_hash"], own["entry_hash"] = prev, digest
                values.append(own)
            prev = digest
        ids = table.insert(params, len(rows), returning=entries)
        table.move_head(chain, seq, prev)
    if not entries:
        return []
    if not ids:  # a backend without INSERT … RETURNING: no primary keys, as with bulk_create
        ids = [None] * len(values)
    names = table.fields
    return [
        table.model.from_db(table.db, table.names, [pk, *(own[name] for name in names)])
        for pk, own in zip(ids, values, strict=True)
    ]


class _Table:
    """How ``append_many`` writes one chain's entries: the columns, and for each
    field a function from the caller's value to (the value hashed and kept on the
    entry, the database value, its canonical JSON text)."""

    def __init__(self, model: type[ChainEntry], hashed: tuple[str, ...]) -> None:
        self.model = model
        self.db = router.db_for_write(model)
        self.hashed = tuple(sorted(hashed))  # the canonical form's key order
        meta = model._meta
        self.pk = meta.pk
        concrete = [f for f in meta.concrete_fields if f is not self.pk]
        if [f.attname for f in meta.concrete_fields][0] != self.pk.attname:
            raise ImproperlyConfigured(f"{model.__name__}: the primary key must be the first field")
        self.fields = [f.attname for f in concrete]
        self.db_order = operator.itemgetter(*self.fields)  # a row's database values in column order
        # The canonical form with a slot for each hashed field's JSON text (sorted keys).
        self.template = "{{" + ",".join(f'"{name}":{{{name}}}' for name in self.hashed) + "}}"
        self.names = [self.pk.attname, *self.fields]
        self._at = meta.get_field("at")
        own = {"seq", "at", "prev_hash", "entry_hash"}
        self.settable = frozenset(self.fields) - {"seq", "prev_hash", "entry_hash"}
        self.prepared = [(f.attname, self._preparer(f)) for f in concrete if f.attname not in own]
        # A missing field gets its default, as a model instance would ("" for a text without one).
        self.defaults = {f.attname: f.get_default for f in concrete if f.attname not in own}
        self.concrete = concrete
        # The head: read and locked, moved (plain SQL: the ORM's query building cost
        # more than the queries themselves, on every append).
        connection = connections[self.db]
        quote = connection.ops.quote_name
        head = quote(ChainHead._meta.db_table)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        self.head_select = f"SELECT {quote('seq')}, {quote('hash')} FROM {head} WHERE {quote('chain')} = %s{lock}"
        self.head_update = f"UPDATE {head} SET {quote('seq')} = %s, {quote('hash')} = %s WHERE {quote('chain')} = %s"

    def locked_head(self, chain: str) -> tuple[int, str]:
        """The chain's head (seq, hash), its row locked until the transaction ends
        (created at the first append)."""
        connection = connections[self.db]
        with connection.cursor() as cursor:
            cursor.execute(self.head_select, [chain])
            row = cursor.fetchone()
            if row is None:
                try:
                    with transaction.atomic(using=self.db):
                        ChainHead.objects.using(self.db).create(chain=chain)
                except IntegrityError:
                    pass  # another transaction created it first
                cursor.execute(self.head_select, [chain])
                row = cursor.fetchone()
        return int(row[0]), str(row[1])

    def move_head(self, chain: str, seq: int, entry_hash: str) -> None:
        with connections[self.db].cursor() as cursor:
            cursor.execute(self.head_update, [seq, entry_hash, chain])

    def _preparer(self, field: models.Field[Any, Any]) -> Callable[[Any], tuple[Any, Any, str]]:
        connection = connections[self.db]
        if isinstance(field, models.JSONField):

            def json_value(value: Any) -> tuple[Any, Any, str]:
                text = _json_text(value)  # stored as it is hashed
                return value, text, text

            return json_value
        plain: tuple[type, ...] = ()
        if isinstance(field, models.CharField):
            plain = (str,)
        elif isinstance(field, models.IntegerField):
            plain = (int,)

        def value(value: Any) -> tuple[Any, Any, str]:
            kind = type(value)
            if kind in plain or (value is None and field.null):
                return value, value, scalar_text(value)
            # What the field would make of it (a choice's value, a normalised IPv6
            # address…): hashed as it will be read back.
            prepared = field.get_prep_value(value)
            return prepared, field.get_db_prep_value(prepared, connection, prepared=True), scalar_text(prepared)

        return value

    def datetime_db(self, value: dt.datetime) -> Any:
        return self._at.get_db_prep_save(value, connections[self.db])

    def insert(self, params: list[Any], count: int, *, returning: bool = True) -> list[Any]:
        """One multi-row INSERT (``bulk.insert_rows``); the new primary keys where the backend returns them."""
        return bulk.insert_rows(
            self.model, self.concrete, params, count, using=self.db, returning=self.pk if returning else None
        )


@functools.cache
def _table(chain: str) -> _Table:
    return _Table(MODELS[chain], HASHED_FIELDS[chain])


def anchor_message(ledger_seq: int, ledger_hash: str, audit_seq: int, audit_hash: str) -> bytes:
    """What an anchor's timestamp covers (its SHA-256 is sent to the TSA)."""
    return canonical({"audit": [audit_seq, audit_hash], "ledger": [ledger_seq, ledger_hash]})
