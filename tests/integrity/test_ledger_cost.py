"""What the ledger costs (issue 12, item 6): a batch of archived mail gets its
entries with a fixed number of queries and one insert, the metadata hash built
from what the writer holds in memory is the hash the verifier recomputes from
the database, and the ledger's queries use its indexes."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from archive import services, storage
from archive.integrity import ledger, verify
from archive.integrity.models import ChainHead, LedgerEntry, LedgerEvent
from archive.models import ArchiveSettings, Document, DocumentFile, FieldDefinition
from archive.processing import mail_documents_process
from mailsources.clients.base import FetchedMessage, FolderBatch
from mailsources.models import MailSource, SourceKind, SyncRun
from mailsources.pipeline import batch_ingest, batch_store
from tests.mailsources.imap_pipeline import mail

pytestmark = pytest.mark.django_db

LEDGER_TABLE = LedgerEntry._meta.db_table


@pytest.fixture
def source(group_a):
    return MailSource.objects.create(kind=SourceKind.IMAP, name="Office", owner_group=group_a, host="h", username="u")


def _archive(source: MailSource, count: int, tag: str, *, attachment: bool = False) -> list[str]:
    """Archive ``count`` new mails as one batch; the SQL it ran."""
    raws = [
        mail(f"{tag} {i}", attachment=(f"{tag}-{i}.csv", f"{i};EUR\n".encode()) if attachment else None)
        for i in range(count)
    ]
    messages = [FetchedMessage(f"{tag}-{i}", raw, None) for i, raw in enumerate(raws)]
    batch = FolderBatch(epoch="1", messages=messages, cursor={"uid": count})
    blobs = batch_store(batch)
    with CaptureQueriesContext(connection) as queries:
        result = batch_ingest(source, "", f"folder {tag}", batch, SyncRun.objects.create(source=source), blobs)
    assert result.new == count
    return [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("count", [1, 5, 20])
def test_a_batch_costs_the_same_few_queries_whatever_its_size(source, settings, count):
    _archive(source, 2, "warm-up")  # the first append creates the chain's head row
    settings.INTEGRITY_LEDGER = False
    without = _archive(source, count, "off")
    settings.INTEGRITY_LEDGER = True
    with_ledger = _archive(source, count, "on")
    # The head locked, the owner group's name, one insert of every entry, the head moved.
    assert len(with_ledger) - len(without) == 4
    inserts = [sql for sql in with_ledger if sql.lstrip().upper().startswith("INSERT") and LEDGER_TABLE in sql]
    assert len(inserts) == 1
    assert LedgerEntry.objects.filter(event=LedgerEvent.ARCHIVED).count() == 2 + count  # warm-up + this batch


def test_mails_seen_before_and_new_mails_of_a_batch_get_one_append(source):
    """The batch's two ledger calls (locations added to mails archived before,
    the new mails) lock the head once and write one insert, in that order."""
    seen = [mail(f"seen {i}") for i in range(3)]
    new = [mail(f"new {i}") for i in range(2)]

    def ingest(raws: list[bytes], folder: str) -> list[str]:
        batch = FolderBatch(
            epoch="1", messages=[FetchedMessage(f"{folder}-{i}", raw, None) for i, raw in enumerate(raws)], cursor={}
        )
        blobs = batch_store(batch)
        with CaptureQueriesContext(connection) as queries:
            batch_ingest(source, "", folder, batch, SyncRun.objects.create(source=source), blobs)
        return [q["sql"] for q in queries.captured_queries]

    ingest(seen, "Inbox")
    before = LedgerEntry.objects.count()
    sql = ingest([*seen, *new], "Archive")
    head = ChainHead._meta.db_table
    # The head read (and locked, where the database has SELECT … FOR UPDATE) and moved once.
    assert len([q for q in sql if head in q and q.lstrip().upper().startswith("SELECT")]) == 1
    assert len([q for q in sql if head in q and q.lstrip().upper().startswith("UPDATE")]) == 1
    assert len([q for q in sql if q.lstrip().upper().startswith("INSERT") and LEDGER_TABLE in q]) == 1
    entries = list(LedgerEntry.objects.order_by("seq"))[before:]
    assert [e.event for e in entries] == [LedgerEvent.LOCATION_ADDED] * 3 + [LedgerEvent.ARCHIVED] * 2
    assert all(e.details == {"mailbox": "", "folder": "Archive"} for e in entries[:3])
    assert verify.run().findings == []


def _in_memory(document: Document) -> tuple[Document, list[DocumentFile]]:
    """The document and its files as a writer holds them: objects built from
    Python values (not read back through the database's JSON and times)."""
    copy = Document(
        pk=document.pk,
        kind=document.kind,
        owner_group=document.owner_group,
        created=document.created,
        values=dict(document.values),
        notes=document.notes,
    )
    files = [
        DocumentFile(
            document_id=f.document_id,
            role=f.role,
            name=f.name,
            sha256=f.sha256,
            size=f.size,
            version=f.version,
            part=f.part,
        )
        for f in document.files.all()
    ]
    return copy, files


def _fast_and_slow(document: Document) -> tuple[str, str]:
    held, files = _in_memory(document)
    fast = ledger.metadata_hashes([held], files={held.pk: files})[held.pk]
    slow = ledger.metadata_hash(Document.objects.get(pk=document.pk))
    return fast, slow


def _latest(document: Document) -> LedgerEntry:
    return LedgerEntry.objects.filter(document=document.pk).order_by("-seq").first()


def test_an_archived_mail_is_hashed_from_memory_as_from_the_database(source):
    _archive(source, 3, "mail")
    for document in Document.objects.all():
        entry = _latest(document)  # written by the fast path (documents_create_many's files)
        assert entry.event == LedgerEvent.ARCHIVED
        assert entry.metadata_sha256 == ledger.metadata_hash(Document.objects.get(pk=document.pk))
        assert _fast_and_slow(document)[0] == entry.metadata_sha256


def test_an_upload_is_hashed_from_memory_as_from_the_database(make_document):
    document = make_document(b"%PDF-1.4 invoice", name="invoice.pdf", values={"title": "Invoice 7"})
    fast, slow = _fast_and_slow(document)
    assert fast == slow == _latest(document).metadata_sha256


def test_a_new_version_is_hashed_from_memory_as_from_the_database(make_document, group_a):
    settings = ArchiveSettings.load()
    settings.versioning = True
    settings.version_key_field = FieldDefinition.objects.get(name="title")
    settings.save()
    document = make_document(b"version 1", name="contract.txt", values={"title": "Contract"})
    again, is_version = services.document_create_from_upload(
        name="contract.txt",
        blob=storage.put_bytes(b"version 2"),
        content_type="text/plain",
        owner_group=group_a,
        values={"title": "Contract"},
    )
    assert is_version and again.files.count() == 2
    fast, slow = _fast_and_slow(again)
    assert fast == slow == _latest(document).metadata_sha256
    assert _latest(document).event == LedgerEvent.VERSION_ADDED


def test_a_processed_mail_is_hashed_from_memory_as_from_the_database(source):
    _archive(source, 2, "processed", attachment=True)
    mail_documents_process(list(Document.objects.values_list("pk", flat=True)))
    for document in Document.objects.all():
        assert document.files.count() == 2  # the mail and its attachment
        fast, slow = _fast_and_slow(document)
        assert fast == slow == _latest(document).metadata_sha256
        assert _latest(document).event == LedgerEvent.FILES_DERIVED


def test_the_hash_covers_what_the_files_say(make_document):
    """The fast path is not blind: a file the database lacks changes the hash."""
    document = make_document(b"content", name="a.txt")
    held, files = _in_memory(document)
    extra = DocumentFile(document_id=held.pk, role=files[0].role, name="b.txt", sha256="0" * 64, size=1, version=1)
    assert ledger.metadata_hashes([held], files={held.pk: [*files, extra]})[held.pk] != ledger.metadata_hash(document)


# --- the indexes the queries use ---------------------------------------------------------------


def _plan(sql: str, params: tuple) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return " | ".join(str(row[-1]) for row in cursor.fetchall())
        cursor.execute(f"EXPLAIN {sql}", params)
        columns = [c[0] for c in cursor.description]
        return " | ".join(str(dict(zip(columns, row, strict=True))) for row in cursor.fetchall())


def _entries(make_document, count: int) -> list[Document]:
    documents = [make_document(f"doc {i}\n".encode(), name=f"d{i}.txt") for i in range(count)]
    with transaction.atomic():
        for document in documents:
            services.document_set_notes(document, "checked", actor="alice")
    return documents


def test_a_documents_history_and_latest_entry_use_the_document_index(make_document):
    documents = _entries(make_document, 30)
    index = "integrity_ledger_document_seq"
    history = LedgerEntry.objects.filter(document=documents[3].pk).order_by("-seq")[:200]
    assert index in _plan(*history.query.sql_with_params())
    assert [e.event for e in history] == [LedgerEvent.NOTES_CHANGED, LedgerEvent.ARCHIVED]
    from django.db.models import Max

    newest = LedgerEntry.objects.filter(document__in=[d.pk for d in documents[:5]])
    newest = newest.values("document").annotate(seq=Max("seq")).order_by()
    assert index in _plan(*newest.query.sql_with_params())


def test_entries_are_found_by_number_through_the_unique_index(make_document):
    _entries(make_document, 10)
    plan = _plan(*LedgerEntry.objects.filter(seq__gte=3, seq__lte=7).order_by("seq").query.sql_with_params())
    assert "seq" in plan and ("INDEX" in plan.upper() or "range" in plan)


# --- the blob re-hashing of verify --full ----------------------------------------------------


def test_the_hasher_reads_the_stores_files_through_its_buffer():
    hasher = verify.BlobHasher(size=64 * 1024)
    small = storage.put_bytes(b"small blob\n")
    large = storage.put_bytes(bytes(range(256)) * 1000 + b"tail")  # 256 004 bytes: four reads and a bit
    for blob in (small, large):
        assert hasher.path(blob.sha256) == str(storage.blob_path(blob.sha256))
        assert hasher.digest(blob.sha256) == (blob.sha256, blob.size)
    assert hasher.digest("0" * 64) == (None, 0)  # no such file
    for bad in ("../" + "0" * 61, "A" * 64, "0" * 63, "é" + "0" * 63):  # a name edited into no digest
        assert hasher.path(bad) is None and hasher.digest(bad) == (None, 0)


def test_verify_since_starts_after_the_last_entry_before_it(make_document):
    from django.utils import timezone

    make_document(b"old\n", name="old.txt")
    cut = timezone.now()
    new = make_document(b"new\n", name="new.txt")
    report = verify.run(since=cut)
    assert report.findings == [] and report.counts["documents"] == 1 and report.counts["ledger_entries"] == 1
    assert verify._selection(None, cut) == [new.pk]
