"""``chain.append_many`` writes entries without model instances and splices each
JSON column's canonical text into the entry's canonical form: what it hashes
must be, byte for byte, what the verifiers recompute from the stored rows
(``chain.entry_hash`` over ``chain.entry_payload``; the export's standalone
verifier repeats that rule), whatever the values."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zoneinfo

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.integrity import chain, ledger, verify
from archive.integrity.audit import AuditAction
from archive.integrity.models import AuditEntry, Chain, ChainHead, LedgerEntry, LedgerEvent

pytestmark = pytest.mark.django_db

LEDGER_TABLE = connection.ops.quote_name(LedgerEntry._meta.db_table)

# Values where a hand-made encoding would go wrong: quotes, backslashes,
# control characters, non-ASCII (kept as UTF-8, not \u escapes), astral
# characters, keys out of order and nested, numbers of every kind, booleans, null.
AWKWARD_DETAILS = [
    {},
    {"title": 'Say "hi"\\ back\n\tnow\x00\x1f', "ä": "Grüsse, Zoë ✓ 𝄞 \u2028", "pct": "100 % %s %(x)s"},
    {"z": 1, "a": [3, 2, 1], "m": {"y": None, "b": True, "a": False}},
    {"amount": 12.5, "tiny": 1e-7, "big": 10**30, "negative": -0.0, "list": [1.0, "1", None, [], {}]},
    {"fields": {"date": {"old": "2024-01-31", "new": "2024-02-29"}}, "1": "key that is a number"},
]


def _stored_and_reference(model: type, name: str) -> list[tuple[str, str]]:
    """Each stored entry's hash and the reference recomputation from the row read back."""
    return [
        (entry.entry_hash, chain.entry_hash(entry.prev_hash, chain.entry_payload(name, entry)))
        for entry in model._default_manager.order_by("seq")
    ]


def test_ledger_entries_hash_as_the_verifiers_recompute_them():
    rows = [
        {
            "event": LedgerEvent.FIELDS_CHANGED,  # a choice, not a plain str
            "document": 7 + i,
            "actor": ["alice", "source:3", 'Zoë "the" admin', "system"][i % 4],
            "blobs": sorted({"b" * 64, "a" * 64}) if i % 2 else [],
            "metadata_sha256": f"{i:064x}",
            "details": details,
        }
        for i, details in enumerate(AWKWARD_DETAILS)
    ]
    written = chain.append_many(Chain.LEDGER, rows)
    # What append_many returns hashes like the reference…
    prev = chain.GENESIS
    for entry, row in zip(written, rows, strict=True):
        assert entry.prev_hash == prev
        assert entry.entry_hash == chain.entry_hash(prev, chain.entry_payload(Chain.LEDGER, entry))
        assert (entry.event, entry.details, entry.blobs) == (str(row["event"]), row["details"], row["blobs"])
        prev = entry.entry_hash
    # …and so does every row read back from the database, with the values written.
    stored = list(LedgerEntry.objects.order_by("seq"))
    assert [e.pk for e in stored] == [e.pk for e in written]  # INSERT … RETURNING on MariaDB and SQLite
    assert [e.details for e in stored] == AWKWARD_DETAILS
    assert all(digest == reference for digest, reference in _stored_and_reference(LedgerEntry, Chain.LEDGER))
    assert [e.entry_hash for e in stored] == [e.entry_hash for e in written]
    assert verify.chain_findings(Chain.LEDGER) == ([], len(rows))


def test_the_hashed_bytes_are_the_canonical_form():
    """The same entry hashed by the reference rule from a plain dict (json.dumps as
    the standalone verifier does it) gives the stored hash."""
    at = dt.datetime(2026, 3, 1, 8, 30, 0, 5, tzinfo=zoneinfo.ZoneInfo("Europe/Zurich"))
    entry = chain.append(
        Chain.LEDGER,
        at=at,
        event="archived",
        document=1,
        actor="Zoë",
        blobs=["c" * 64],
        metadata_sha256="d" * 64,
        details=AWKWARD_DETAILS[1],
    )
    payload = {
        "seq": 1,
        "at": "2026-03-01T07:30:00.000005Z",  # UTC, microseconds
        "actor": "Zoë",
        "event": "archived",
        "document": 1,
        "blobs": ["c" * 64],
        "metadata_sha256": "d" * 64,
        "details": AWKWARD_DETAILS[1],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert entry.entry_hash == hashlib.sha256(f"{chain.GENESIS}\n{text}".encode()).hexdigest()
    assert LedgerEntry.objects.get(seq=1).at == at


def test_audit_entries_are_hashed_as_they_are_read_back():
    """Values the model's fields change on the way in (a choice, an IPv6 address
    written the long way, a boolean in an integer column) are hashed as stored."""
    rows = [
        {"action": AuditAction.SEARCH, "actor": "alice", "user_id": 3, "ip": "2001:DB8:0:0:0:0:0:1", "details": {}},
        {"action": AuditAction.DOCUMENT_VIEW, "actor": "anonymous", "document": 12, "ip": "127.0.0.1"},
        {"action": "sign_in_failed", "actor": "anonymous", "user_id": None, "outcome": "failed", "details": {"u": "x"}},
    ]
    written = chain.append_many(Chain.AUDIT, rows)
    stored = list(AuditEntry.objects.order_by("seq"))
    assert [e.ip for e in stored] == ["2001:db8::1", "127.0.0.1", None]
    assert [e.ip for e in written] == ["2001:db8::1", "127.0.0.1", None]
    assert [e.outcome for e in stored] == ["ok", "ok", "failed"]  # the field's default when not given
    assert [e.details for e in stored] == [{}, {}, {"u": "x"}]
    assert all(digest == reference for digest, reference in _stored_and_reference(AuditEntry, Chain.AUDIT))
    assert verify.chain_findings(Chain.AUDIT) == ([], 3)


def test_a_long_append_is_split_where_the_backend_limits_parameters_not_the_chain():
    rows = [{"event": "archived", "document": n, "actor": "system", "details": {"n": n}} for n in range(250)]
    with CaptureQueriesContext(connection) as queries:
        written = chain.append_many(Chain.LEDGER, rows)
    inserts = [q for q in queries.captured_queries if q["sql"].startswith(f"INSERT INTO {LEDGER_TABLE}")]
    assert len(inserts) == (1 if connection.vendor == "mysql" else 3)  # SQLite: 999 parameters per query
    assert [e.seq for e in written] == list(range(1, 251))
    assert verify.chain_findings(Chain.LEDGER) == ([], 250)
    assert ChainHead.objects.get(chain=Chain.LEDGER).hash == written[-1].entry_hash


def test_an_unknown_field_is_refused_and_nothing_is_written():
    with pytest.raises(TypeError, match="no field"):
        chain.append_many(Chain.LEDGER, [{"event": "archived", "document": 1, "actor": "x", "colour": "red"}])
    with pytest.raises(TypeError, match="entry_hash"):
        chain.append_many(Chain.LEDGER, [{"event": "archived", "document": 1, "actor": "x", "entry_hash": "0"}])
    assert not LedgerEntry.objects.exists()


# --- one append for several record_many calls ---------------------------------------------------


def test_one_append_writes_the_blocks_entries_at_its_end(make_document):
    first, second = make_document(b"one", name="1.txt"), make_document(b"two", name="2.txt")
    before = LedgerEntry.objects.count()
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries, ledger.one_append():
            assert ledger.record_many([(LedgerEvent.NOTES_CHANGED, first, "alice", [], {"n": 1})]) == []
            assert ledger.record_many([(LedgerEvent.NOTES_CHANGED, second, "bob", [], {"n": 2})]) == []
            assert LedgerEntry.objects.count() == before  # not yet
        inserts = [q for q in queries.captured_queries if q["sql"].startswith(f"INSERT INTO {LEDGER_TABLE}")]
        assert len(inserts) == 1
    newest = list(LedgerEntry.objects.order_by("seq"))[before:]
    assert [(e.document, e.actor, e.details) for e in newest] == [
        (first.pk, "alice", {"n": 1}),
        (second.pk, "bob", {"n": 2}),
    ]
    assert newest[0].metadata_sha256 == ledger.metadata_hash(first)
    assert verify.chain_findings(Chain.LEDGER)[0] == []


def test_a_failed_one_append_block_appends_nothing(make_document):
    document = make_document(b"one", name="1.txt")
    before = LedgerEntry.objects.count()
    with pytest.raises(RuntimeError, match="boom"), transaction.atomic(), ledger.one_append():
        ledger.record_many([(LedgerEvent.NOTES_CHANGED, document, "alice", [], {})])
        raise RuntimeError("boom")
    assert LedgerEntry.objects.count() == before
    # The block is over: recording appends at once again.
    assert ledger.record(LedgerEvent.NOTES_CHANGED, document, "alice") is not None
    assert LedgerEntry.objects.count() == before + 1


@pytest.mark.django_db(transaction=True)
def test_one_append_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError, match="outside a transaction"), ledger.one_append():
        pass


def test_a_documents_metadata_hash_is_the_reference_rule_over_its_metadata(make_document):
    """``created`` is formatted before encoding (not by the encoder's fallback):
    the same bytes as the reference rule applied to the datetime itself."""
    document = make_document("Grüsse".encode(), name="brief.txt", values={"title": 'Offerte "Zürich"'})
    metadata = ledger.document_metadata(document)
    created = document.created
    reference = json.dumps(
        {**metadata, "created": created},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=lambda value: value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )
    assert ledger.metadata_hash(document) == hashlib.sha256(reference.encode()).hexdigest()
    assert LedgerEntry.objects.filter(document=document.pk).latest("seq").metadata_sha256 == ledger.metadata_hash(
        document
    )


AWKWARD_NAMES = ['Say "hi"\\ back\n\tnow\x00\x1f.pdf', "Grüsse, Zoë ✓ 𝄞 \u2028.eml", "", "a" * 255]


def test_metadata_is_hashed_from_its_parts_as_the_verifier_hashes_the_whole():
    """``ledger.metadata_hashes`` builds the canonical form from its parts (it
    runs for every archived mail); the verifier encodes the whole mapping
    (``ledger.metadata_hash``): the same bytes for awkward values, file order
    and types (a choice for the kind and role, a date in the values)."""
    from django.contrib.auth.models import Group

    from archive.models import Document, DocumentFile, DocumentKind, FileRole

    group = Group.objects.create(name='Ops "Zoë" \\ ✓')
    for i, details in enumerate(AWKWARD_DETAILS):
        values = {**details, "date": dt.date(2024, 2, 29)} if i % 2 else details
        document = Document(
            pk=1000 + i,
            kind=DocumentKind.MAIL if i % 2 else DocumentKind.DOCUMENT,
            owner_group=group,
            created=dt.datetime(2024, 3, 1, 12, 30, 0, 123456, tzinfo=zoneinfo.ZoneInfo("Europe/Zurich")),
            values=values,
            notes=AWKWARD_NAMES[i % len(AWKWARD_NAMES)],
        )
        files = [
            DocumentFile(
                document_id=document.pk,
                role=[FileRole.ORIGINAL, FileRole.ATTACHMENT][j % 2],
                name=AWKWARD_NAMES[(i + j) % len(AWKWARD_NAMES)],
                sha256=f"{j:064x}",
                size=j * 1000,
                version=j % 2,
                part=f"1.{j}" if j else "",
            )
            for j in range(i)  # 0 to 4 files, in an order the canonical form sorts
        ][::-1]
        fast = ledger.metadata_hashes([document], files={document.pk: files})[document.pk]
        reference = hashlib.sha256(chain.canonical(ledger._metadata(document, files, group.name))).hexdigest()
        assert fast == reference, (i, values)


@pytest.mark.parametrize("blobs", [[], ["a" * 64], ["a" * 64, "b" * 64], ['q"uote\\', "ü"], [1, "a"], ["a", None]])
def test_a_list_of_blobs_is_encoded_canonically(blobs):
    assert chain._json_text(blobs) == json.dumps(blobs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(), _JSON_SCALARS | st.lists(st.text(), max_size=3), max_size=8))
def test_a_mapping_is_encoded_as_the_json_encoder_encodes_it(values):
    """``canonical_text`` takes a short way for flat mappings (a document's field
    values): the encoder's bytes for every mix of keys and values."""
    assert chain.canonical_text(values) == json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(timezones=st.timezones()))
def test_a_time_is_written_as_strftime_writes_it_in_utc(value):
    """``format_time``'s short way (``isoformat``) is strftime's text: years before 1000 included."""
    utc = value.astimezone(dt.UTC)
    assert chain.format_time(value) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
