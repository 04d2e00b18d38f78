"""The hash chain both logs are built on: numbering, linking, rollback."""

import pytest
from django.db import transaction

from archive.integrity import chain, ledger
from archive.integrity.audit import AuditAction, log
from archive.integrity.models import AuditEntry, Chain, ChainHead, LedgerEntry, LedgerEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_entries_are_numbered_and_linked(make_document, alice):
    doc = make_document(values={"title": "Invoice"})  # its upload is entry #1
    archived = LedgerEntry.objects.get()
    first = ledger.record(LedgerEvent.ARCHIVED, doc, "alice", blobs=["b" * 64, "a" * 64])
    second = ledger.record(LedgerEvent.NOTES_CHANGED, doc, "alice", details={"old": "", "new": "x"})
    assert (archived.seq, first.seq, second.seq) == (1, 2, 3)
    assert archived.prev_hash == chain.GENESIS
    assert first.prev_hash == archived.entry_hash and second.prev_hash == first.entry_hash
    assert first.blobs == ["a" * 64, "b" * 64]
    stored = list(LedgerEntry.objects.order_by("seq"))
    prev = chain.GENESIS
    for entry in stored:
        assert entry.entry_hash == chain.entry_hash(prev, chain.entry_payload(Chain.LEDGER, entry))
        prev = entry.entry_hash
    head = ChainHead.objects.get(chain=Chain.LEDGER)
    assert (head.seq, head.hash) == (3, second.entry_hash)


def test_a_changed_field_changes_the_hash(make_document):
    doc = make_document(values={"title": "Invoice"})
    entry = ledger.record(LedgerEvent.ARCHIVED, doc, "alice")
    stored = LedgerEntry.objects.get(pk=entry.pk)
    stored.details = {"forged": True}
    assert chain.entry_hash(stored.prev_hash, chain.entry_payload(Chain.LEDGER, stored)) != entry.entry_hash


def test_rolled_back_change_leaves_no_entry_and_no_gap(make_document, alice):
    doc = make_document(values={"title": "Invoice"})
    with pytest.raises(RuntimeError), transaction.atomic():
        log(AuditAction.DOCUMENT_VIEW, user=alice, document=doc.pk)
        raise RuntimeError
    assert not AuditEntry.objects.exists()
    entry = log(AuditAction.DOCUMENT_VIEW, user=alice, document=doc.pk)
    assert entry.seq == 1 and entry.actor == "alice" and entry.user_id == alice.pk
