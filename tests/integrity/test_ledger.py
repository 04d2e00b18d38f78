"""Every change of archive content appends its ledger entry, in the same
transaction, with the document's metadata hash after the change. The write
paths are listed here, and a scan of the code fails when a new one appears
that this list (and so a test of it) does not know."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import transaction

from archive import services, storage
from archive.integrity import ledger, verify
from archive.integrity.models import LedgerEntry, LedgerEvent
from archive.models import ArchiveSettings, Document, FieldDefinition, FileRole
from archive.processing import mail_document_process, mail_documents_process
from tests.mailsources.imap_pipeline import mail, sync

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

# Every function that writes archive content (documents' values, notes, owner,
# files) and the test below that shows it records its entry.
WRITE_PATHS = {
    "archive/services.py::document_update_values": "test_a_field_change_records_old_and_new_values",
    "archive/services.py::document_set_notes": "test_a_notes_change_records_old_and_new_notes",
    "archive/services.py::document_create_from_upload": "test_a_new_version_records_its_blob",
    "archive/services.py::documents_create_many": "test_an_upload_records_its_blob_and_metadata",
    "archive/processing.py::mail_document_process": "test_one_mail_processed_alone_records_its_files",
    "archive/processing.py::_process_chunk": "test_mail_archiving_dedup_and_processing_record_entries",
}
# Rows written by ``archive.bulk.create`` that are not archive content (its
# other callers must be in WRITE_PATHS).
NOT_CONTENT = {
    "archive/search/indexing.py::index_new_documents": "the new documents' search entries",
    "mailsources/pipeline.py::batch_ingest": "dedup rows and locations (the documents: documents_create_many)",
}
# What counts as a content write in the code.
WRITES = re.compile(
    r"\b(Document|DocumentFile)\.objects\.(bulk_create|create)\("
    r"|\bbulk\.create\("
    r"|\.update\([^)]*\b(values|notes|owner_group|owner_group_id|sha256)="
    r"|\b(document|target|locked)\.save\("
)


def _content_writers() -> set[str]:
    found = set()
    for folder in ("archive", "mailsources", "api", "webadmin"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts or "integrity" in path.parts:
                continue
            source = path.read_text()
            if not WRITES.search(source):
                continue
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    body = ast.get_source_segment(source, node) or ""
                    inner = [n for n in ast.walk(node) if n is not node and isinstance(n, ast.FunctionDef)]
                    for sub in inner:
                        body = body.replace(ast.get_source_segment(source, sub) or "", "")
                    if WRITES.search(body):
                        found.add(f"{path.relative_to(ROOT)}::{node.name}")
    return found


def test_every_content_write_path_is_listed_and_tested():
    assert _content_writers() == set(WRITE_PATHS) | set(NOT_CONTENT)
    tests = set(globals())
    assert set(WRITE_PATHS.values()) <= tests


def _latest(document: Document) -> LedgerEntry:
    return LedgerEntry.objects.filter(document=document.pk).order_by("-seq").first()


def _assert_current(document: Document) -> None:
    document = Document.objects.get(pk=document.pk)
    assert _latest(document).metadata_sha256 == ledger.metadata_hash(document)


def test_an_upload_records_its_blob_and_metadata(make_document, alice):
    blob = storage.put_bytes(b"%PDF-1.4 invoice")
    doc, _ = services.document_create_from_upload(
        name="invoice.pdf", blob=blob, content_type="application/pdf", owner_group=alice.groups.get(), actor="alice"
    )
    entry = _latest(doc)
    assert (entry.event, entry.actor, entry.blobs) == (LedgerEvent.ARCHIVED, "alice", [blob.sha256])
    _assert_current(doc)


def test_a_field_change_records_old_and_new_values(make_document):
    doc = make_document(values={"title": "Invoice 7"})
    services.document_update_values(doc, {"title": "Invoice 8"}, actor="alice")
    entry = _latest(doc)
    assert entry.event == LedgerEvent.FIELDS_CHANGED and entry.actor == "alice"
    assert entry.details["fields"]["title"] == {"old": "Invoice 7", "new": "Invoice 8"}
    _assert_current(doc)
    before = LedgerEntry.objects.count()
    services.document_update_values(doc, {"title": "Invoice 8"}, actor="alice")  # nothing changes
    assert LedgerEntry.objects.count() == before


def test_a_notes_change_records_old_and_new_notes(make_document):
    doc = make_document()
    services.document_set_notes(doc, "check the amount", actor="bob")
    services.document_set_notes(doc, "amount checked", actor="alice")
    entries = list(LedgerEntry.objects.filter(event=LedgerEvent.NOTES_CHANGED).order_by("seq"))
    assert [(e.actor, e.details["notes"]) for e in entries] == [
        ("bob", {"old": "", "new": "check the amount"}),
        ("alice", {"old": "check the amount", "new": "amount checked"}),
    ]
    _assert_current(doc)


def test_a_new_version_records_its_blob(make_document, group_a):
    settings = ArchiveSettings.load()
    settings.versioning = True
    settings.version_key_field = FieldDefinition.objects.get(name="title")
    settings.save()
    doc = make_document(b"version 1", name="contract.txt", values={"title": "Contract"})
    blob = storage.put_bytes(b"version 2")
    again, is_version = services.document_create_from_upload(
        name="contract.txt", blob=blob, content_type="text/plain", owner_group=group_a, values={"title": "Contract"}
    )
    assert is_version and again.pk == doc.pk
    entry = _latest(doc)
    assert (entry.event, entry.blobs, entry.details["version"]) == (LedgerEvent.VERSION_ADDED, [blob.sha256], 1)
    _assert_current(doc)


def test_a_rolled_back_change_leaves_no_entry(make_document):
    doc = make_document(values={"title": "Invoice"})
    before = LedgerEntry.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.document_update_values(doc, {"title": "changed"})
        raise RuntimeError
    assert LedgerEntry.objects.count() == before
    assert Document.objects.get(pk=doc.pk).title == "Invoice"


def test_a_deletion_is_recorded_before_the_rows_go(make_document):
    doc = make_document(values={"title": "Expired"})
    state = ledger.metadata_hash(doc)
    shas = list(doc.files.values_list("sha256", flat=True))
    from archive.retention import lock

    with transaction.atomic(), lock.authorised([doc.pk]):  # as the retention deletion does
        entry = ledger.record_deletion(doc, "system", {"policy": "10 years"})
        Document.objects.filter(pk=doc.pk).delete()
    assert entry.event == LedgerEvent.DELETED and entry.metadata_sha256 == "" and entry.blobs == shas
    assert entry.details == {"deleted_metadata_sha256": state, "policy": "10 years"}
    assert verify.metadata_findings(None)[0] == []  # deleted with its entry: no finding


def test_mail_archiving_dedup_and_processing_record_entries(imap_mailbox, imap_source_factory):
    raws = [mail(f"order {i}", attachment=(f"order-{i}.csv", f"{i};EUR\n".encode())) for i in range(3)]
    imap_mailbox.append_many("INBOX", raws)
    first = imap_source_factory(imap_mailbox, name="Office")
    second = imap_source_factory(imap_mailbox, name="Office 2", owner_group=Group.objects.create(name="Accounting"))

    assert sync(first).new == 3
    archived = LedgerEntry.objects.filter(event=LedgerEvent.ARCHIVED)
    assert archived.count() == 3 and {e.actor for e in archived} == {f"source:{first.pk}"}
    # One append per batch: consecutive numbers, one mail each.
    assert sorted(e.seq for e in archived) == [1, 2, 3]

    assert sync(second).duplicate == 3
    added = LedgerEntry.objects.filter(event=LedgerEvent.LOCATION_ADDED)
    assert added.count() == 3 and {e.actor for e in added} == {f"source:{second.pk}"}
    assert {e.details["folder"] for e in added} == {"INBOX"}

    numbers = list(Document.objects.values_list("pk", flat=True))
    mail_documents_process(numbers)
    derived = LedgerEntry.objects.filter(event=LedgerEvent.FILES_DERIVED)
    assert sorted(e.document for e in derived) == sorted(numbers)
    for entry in derived:
        files = Document.objects.get(pk=entry.document).files.filter(role=FileRole.ATTACHMENT)
        assert entry.blobs == sorted(files.values_list("sha256", flat=True))
    assert verify.metadata_findings(None)[0] == []


def test_one_mail_processed_alone_records_its_files(imap_mailbox, imap_source_factory):
    imap_mailbox.append_many("INBOX", [mail("scan", attachment=("scan.pdf", b"%PDF-1.4 scan"))])
    assert sync(imap_source_factory(imap_mailbox)).new == 1
    doc = Document.objects.get()
    mail_document_process(doc)  # the one-by-one fallback of a failed chunk
    entry = _latest(doc)
    assert entry.event == LedgerEvent.FILES_DERIVED and entry.actor == ledger.SYSTEM
    assert entry.blobs == list(doc.files.filter(role=FileRole.ATTACHMENT).values_list("sha256", flat=True))
    _assert_current(doc)


def test_documents_from_before_the_ledger_get_a_baseline_entry(make_document, settings):
    settings.INTEGRITY_LEDGER = False
    old = [make_document(f"old {i}\n".encode(), name=f"old{i}.txt") for i in range(3)]
    settings.INTEGRITY_LEDGER = True
    recorded = make_document(b"new\n", name="new.txt")
    assert {f.kind for f in verify.metadata_findings(None)[0]} == {"metadata_unrecorded"}
    assert ledger.record_baseline(batch=2) == 3
    assert ledger.record_baseline() == 0
    entries = LedgerEntry.objects.filter(document__in=[d.pk for d in old])
    assert {(e.event, e.details["baseline"]) for e in entries} == {(LedgerEvent.ARCHIVED, True)}
    assert LedgerEntry.objects.filter(document=recorded.pk).count() == 1
    assert verify.metadata_findings(None)[0] == []
