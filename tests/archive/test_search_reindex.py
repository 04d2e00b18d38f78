"""``manage.py reindex``: rebuilds the index from the database, extracts
waiting files on request, and shows its progress."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from archive import search, services, storage
from archive.models import DocumentFile, ExtractionStatus, SearchEntry, SearchStatistic

pytestmark = pytest.mark.django_db(transaction=True)


def _document(group, title: str, content: bytes = b"", name: str = "f.txt"):
    blob = storage.put_bytes(content or title.encode())
    return services.document_create(
        owner_group=group, values={"title": title}, files=[services.NewFile(name=name, blob=blob)]
    )


def test_it_rebuilds_a_lost_index(alice, group_a):
    documents = [_document(group_a, f"Document number{i}") for i in range(7)]
    SearchEntry.objects.all().delete()
    assert not search.search_documents(alice, "number3").documents.exists()

    out, err = io.StringIO(), io.StringIO()
    call_command("reindex", "--batch-size", "3", stdout=out, stderr=err)

    assert SearchEntry.objects.count() == 7
    assert SearchStatistic.objects.get(token="#documents").fraction == 7  # the planner's figures
    assert list(search.search_documents(alice, "number3").documents) == [documents[3]]
    assert "Indexed 7 document(s)." in out.getvalue()
    assert "100%" in err.getvalue() and "7/7" in err.getvalue()


def test_it_extracts_waiting_files_and_retries_failed_ones_on_request(alice, group_a):
    waiting = _document(group_a, "Waiting", b"Kilimanjaro expedition notes")
    failed = _document(group_a, "Failed", b"Matterhorn ascent")
    DocumentFile.objects.filter(document=failed).update(
        extraction_status=ExtractionStatus.FAILED, extraction_attempts=3, extraction_error="boom"
    )

    call_command("reindex", "--extract", stdout=io.StringIO(), stderr=io.StringIO())
    assert list(search.search_documents(alice, "kilimanjaro").documents) == [waiting]
    assert not search.search_documents(alice, "matterhorn").documents.exists()

    call_command("reindex", "--extract", "--retry-failed", "--optimize", stdout=io.StringIO(), stderr=io.StringIO())
    assert list(search.search_documents(alice, "matterhorn").documents) == [failed]
    assert DocumentFile.objects.get(document=failed).extraction_status == ExtractionStatus.DONE


def test_it_can_reindex_single_documents(group_a):
    one = _document(group_a, "One")
    two = _document(group_a, "Two")
    SearchEntry.objects.all().delete()
    call_command("reindex", str(two.pk), stdout=io.StringIO(), stderr=io.StringIO())
    assert list(SearchEntry.objects.values_list("document_id", flat=True)) == [two.pk]
    assert one.pk != two.pk


def test_many_big_entries_are_written_in_statements_the_server_accepts(alice, group_a, monkeypatch):
    """MariaDB refuses a statement above max_allowed_packet (16 MB by default):
    500 mails of 40 KB of text are more. Entries go in runs of STATEMENT_BYTES."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from archive.search import indexing

    documents = [_document(group_a, f"Große Reise{i}") for i in range(5)]
    sizes = [len(e.text.encode()) for e in SearchEntry.objects.order_by("document_id")]
    monkeypatch.setattr(indexing, "STATEMENT_BYTES", max(sizes))
    assert 2 * min(sizes) > max(sizes), sizes  # two entries never fit in one statement
    with CaptureQueriesContext(connection) as queries:
        assert indexing.index_documents([d.pk for d in documents]) == 5
    table = connection.ops.quote_name("archive_searchentry")
    assert len([q for q in queries if q["sql"].startswith(f"INSERT INTO {table}")]) == 5
    assert [d for d in search.search_documents(alice, "reise3").documents] == [documents[3]]
