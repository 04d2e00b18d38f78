"""The archive step's cost per batch, not per mail, and the search entries it
writes from the rows in hand equal a reindex's (issue 18)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from archive import search
from archive.models import FieldDefinition, SearchEntry
from mailsources.clients.base import FetchedMessage, FolderBatch
from mailsources.models import MailSource, SyncRun
from mailsources.pipeline import batch_ingest

pytestmark = pytest.mark.django_db(transaction=True)


def raw_mail(number: int) -> bytes:
    return (
        f"From: =?utf-8?q?J=C3=BCrg_Meier?= <juerg{number}@example.org>\r\n"
        f'To: Ann Lee <ann@example.org>, "Lee, Bob" <bob@example.org>\r\n'
        f"Subject: Quarterly report {number} zebra\r\n"
        f"Message-ID: <m{number}@example.org>\r\n"
        "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n"
        f"Body {number}\r\n"
    ).encode()


@pytest.fixture
def source(group_a) -> MailSource:
    fields = {f.name: f for f in FieldDefinition.objects.filter(name__in=["from", "to", "cc", "subject"])}
    return MailSource.objects.create(
        kind="imap",
        name="queries",
        owner_group=group_a,
        host="h",
        username="u",
        from_field=fields["from"],
        to_field=fields["to"],
        cc_field=fields["cc"],
        subject_field=fields["subject"],
    )


def ingest(source: MailSource, run: SyncRun, first: int, count: int) -> tuple[int, list[int]]:
    batch = FolderBatch(
        epoch="1",
        messages=[FetchedMessage(str(n), raw_mail(n), None) for n in range(first, first + count)],
        cursor={"uid": first + count},
    )
    with CaptureQueriesContext(connection) as queries:
        result = batch_ingest(source, "", "INBOX", batch, run)
    return len(queries), result.new_document_ids


def test_a_batch_costs_the_same_queries_for_3_mails_as_for_40(source: MailSource) -> None:
    run = SyncRun.objects.create(source=source)
    ingest(source, run, 0, 2)  # first batch: the cursor row and caches come into being
    small, small_ids = ingest(source, run, 100, 3)
    large, large_ids = ingest(source, run, 200, 40)
    assert (len(small_ids), len(large_ids)) == (3, 40)
    assert large == small, f"{small} queries for 3 mails, {large} for 40"


def test_new_mails_are_findable_at_commit_and_their_entries_equal_a_reindex(source: MailSource, admin_user) -> None:
    run = SyncRun.objects.create(source=source)
    _, ids = ingest(source, run, 0, 5)
    written = dict(SearchEntry.objects.filter(document_id__in=ids).values_list("document_id", "text"))
    assert sorted(written) == sorted(ids)
    search.index_documents(ids)
    assert dict(SearchEntry.objects.filter(document_id__in=ids).values_list("document_id", "text")) == written
    for word in ("zebra", "jürg", "ann@example.org"):
        results = search.search_documents(admin_user, word)
        assert set(results.documents.values_list("pk", flat=True)) == set(ids), word
