"""Documents: upload, numbers, field values, notes, the table."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from archive import storage
from archive.models import Document, DocumentFile


def test_uploading_several_files_creates_one_document_each_keeping_names(client, alice, group_a):
    client.force_login(alice)
    response = client.post(
        reverse("archive:upload"),
        {
            "files": [
                SimpleUploadedFile("Offerte Müller.pdf", b"%PDF-1.4 a"),
                SimpleUploadedFile("photo.jpg", b"\xff\xd8\xff jpeg"),
            ],
            "owner_group": group_a.pk,
        },
    )
    assert response.status_code == 302
    docs = list(Document.objects.order_by("pk"))
    assert [d.files.get().name for d in docs] == ["Offerte Müller.pdf", "photo.jpg"]
    assert [d.files.get().content_type for d in docs] == ["application/pdf", "image/jpeg"]
    assert all(d.owner_group == group_a for d in docs)
    assert storage.read_bytes(docs[0].files.get().sha256) == b"%PDF-1.4 a"


def test_identical_uploads_share_one_blob_but_are_two_documents(make_document):
    first = make_document(content=b"same bytes", name="a.txt")
    second = make_document(content=b"same bytes", name="b.txt")
    assert first.pk != second.pk
    assert first.files.get().sha256 == second.files.get().sha256


def test_document_numbers_are_never_reused(make_document, settings):
    settings.RETENTION_DELETION_LOCK = False  # deleted directly, not through an expiry list
    first = make_document(name="a.txt")
    number = first.pk
    DocumentFile.objects.filter(document=first).delete()
    first.delete()
    again = make_document(name="b.txt")
    assert again.pk > number


def test_editing_fields_saves_typed_values(client, alice, make_document):
    doc = make_document(name="scan.pdf")
    client.force_login(alice)
    response = client.post(
        reverse("archive:document_fields", args=[doc.pk]),
        {
            "title": "Invoice 2024-17",
            "date": "2024-03-05",
            "from": "Alice <a@example.com>",
        },
    )
    assert response.status_code == 302
    doc.refresh_from_db()
    assert doc.title == "Invoice 2024-17"
    assert doc.values["from"] == "Alice <a@example.com>"
    assert doc.date.date().isoformat() == "2024-03-05"


def test_a_bad_value_is_refused_with_a_message_and_nothing_is_lost(client, alice, make_document):
    from archive.models import FieldDefinition

    FieldDefinition.objects.create(name="amount", label="Amount", type="number")
    doc = make_document(name="scan.pdf", values={"amount": "12.50"})
    client.force_login(alice)
    response = client.post(
        reverse("archive:document_fields", args=[doc.pk]),
        {
            "title": "changed",
            "date": "not a date",
            "amount": "twelve",
        },
        follow=True,
    )
    text = response.content.decode()
    assert "Not saved" in text and "is not a number" in text and "is not a date" in text
    doc.refresh_from_db()
    assert doc.title == "scan.pdf" and doc.values["amount"] == "12.5"


def test_notes_are_saved(client, alice, make_document):
    doc = make_document()
    client.force_login(alice)
    client.post(reverse("archive:document_notes", args=[doc.pk]), {"notes": "Call back on Monday"})
    doc.refresh_from_db()
    assert doc.notes == "Call back on Monday"


def test_the_table_is_paged_and_sortable_by_any_column(client, alice, make_document):
    for i in range(55):
        make_document(
            content=f"doc {i}".encode(), name=f"file-{i:02d}.txt", values={"date": f"2024-01-{(i % 28) + 1:02d}"}
        )
    client.force_login(alice)
    page1 = client.get(reverse("archive:table") + "?sort=title&dir=asc&reduced=0")
    titles = [doc.title for doc in (r.document for r in page1.context["rows"])]
    assert titles == sorted(titles) and titles[0] == "file-00.txt" and len(titles) == 50
    page2 = client.get(reverse("archive:table") + "?sort=title&dir=asc&reduced=0&page=2")
    assert [doc.title for doc in (r.document for r in page2.context["rows"])] == [
        "file-50.txt",
        "file-51.txt",
        "file-52.txt",
        "file-53.txt",
        "file-54.txt",
    ]
    by_date = client.get(reverse("archive:table") + "?sort=date&dir=desc&reduced=0")
    dates = [doc.date for doc in (r.document for r in by_date.context["rows"])]
    assert dates == sorted(dates, reverse=True)
    by_json_field = client.get(reverse("archive:table") + "?sort=filename&dir=desc&reduced=0")
    names = [doc.values["filename"] for doc in (r.document for r in by_json_field.context["rows"])]
    assert names[0] == "file-54.txt"


def test_the_table_needs_a_fixed_number_of_queries(client, alice, make_document):
    for i in range(5):
        make_document(content=f"doc {i}".encode(), name=f"f{i}.txt")
    client.force_login(alice)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("archive:table"))
    for i in range(20):
        make_document(content=f"more {i}".encode(), name=f"g{i}.txt")
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("archive:table"))
    assert len(many) == len(few)


@pytest.mark.parametrize("url", ["/dms/", "/dms/upload/", "/webadmin/"])
def test_pages_need_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]
