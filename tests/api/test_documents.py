"""Documents through the API: detail, Range downloads, uploads within the
limits, and the search language of the WebDMS table."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from archive import search, services, storage
from archive.models import ArchiveSettings, Document, DocumentFile, ExtractionStatus, FieldDefinition

MiB = 1024 * 1024


def test_the_detail_has_fields_notes_versions_and_files(alice, make_document, api_as):
    settings = ArchiveSettings.load()
    settings.versioning = True
    settings.version_key_field = FieldDefinition.objects.get(name="title")
    settings.save()
    doc = make_document(content=b"first", name="report.txt")
    services.document_set_notes(doc, "checked by alice")
    make_document(content=b"second", name="report.txt")  # versioning: the next version of doc
    data = api_as(alice).get(reverse("api:document", args=[doc.pk])).json()
    assert data["number"] == doc.pk and data["owner_group"] == "Sales" and data["notes"] == "checked by alice"
    assert data["fields"]["title"] == "report.txt" and "date" in data["fields"]
    assert [v["version"] for v in data["versions"]] == [1, 0]  # newest first, as in the Files tab
    assert {f["id"] for f in data["files"]} == set(doc.files.values_list("pk", flat=True))
    assert data["files"][0]["download"] == reverse("api:file", args=[doc.pk, data["files"][0]["id"]])


def test_a_file_downloads_whole_or_by_range(alice, make_document, api_as):
    doc = make_document(content=b"0123456789", name="digits.txt")
    client = api_as(alice)
    url = reverse("api:file", args=[doc.pk, doc.files.get().pk])
    whole = client.get(url)
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == b"0123456789"
    assert whole["Content-Type"] == "application/octet-stream" and whole["X-Content-Type-Options"] == "nosniff"
    assert whole["Content-Disposition"].startswith("attachment")
    part = client.get(url, HTTP_RANGE="bytes=2-5")
    assert part.status_code == 206 and b"".join(part.streaming_content) == b"2345"
    assert part["Content-Range"] == "bytes 2-5/10"
    tail = client.get(url, HTTP_RANGE="bytes=-3")
    assert b"".join(tail.streaming_content) == b"789"
    assert client.get(url, HTTP_RANGE="bytes=20-").status_code == 416


def test_an_upload_is_archived_in_one_of_the_users_groups(alice, group_b, api_as):
    client = api_as(alice)
    mine = {"files": [SimpleUploadedFile("a.txt", b"alpha"), SimpleUploadedFile("b.txt", b"beta")]}
    response = client.post(reverse("api:documents"), {**mine, "owner_group": alice.groups.get().pk})
    assert response.status_code == 201
    assert sorted(d["title"] for d in response.json()["documents"]) == ["a.txt", "b.txt"]
    foreign = client.post(
        reverse("api:documents"), {"files": [SimpleUploadedFile("c.txt", b"c")], "owner_group": group_b.pk}
    )
    assert foreign.status_code == 400 and "owner_group" in foreign.json()["detail"]
    assert Document.objects.count() == 2


def test_an_upload_over_the_limits_is_413_and_stores_nothing(settings, alice, api_as, isolated_store, tmp_path):
    settings.MAX_UPLOAD_BYTES = 1 * MiB
    settings.MAX_UPLOAD_REQUEST_BYTES = 3 * MiB
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "upload-tmp")
    (tmp_path / "upload-tmp").mkdir()
    client = api_as(alice)
    group = alice.groups.get().pk
    big = client.post(
        reverse("api:documents"), {"files": [SimpleUploadedFile("big.pdf", b"x" * (MiB + 1))], "owner_group": group}
    )
    assert big.status_code == 413 and "Nothing was stored" in big.json()["detail"]
    many = [SimpleUploadedFile(f"{i}.pdf", b"x" * (MiB - 10)) for i in range(4)]
    assert client.post(reverse("api:documents"), {"files": many, "owner_group": group}).status_code == 413
    assert Document.objects.count() == 0
    assert [p for p in isolated_store.rglob("*") if p.is_file()] == [] if isolated_store.exists() else True
    assert [p for p in (tmp_path / "upload-tmp").rglob("*") if p.is_file()] == []
    ok = client.post(
        reverse("api:documents"), {"files": [SimpleUploadedFile("ok.pdf", b"x" * 1000)], "owner_group": group}
    )
    assert ok.status_code == 201


def test_access_links_are_the_copy_link_endpoints_data(client, alice, make_document, api_as):
    docs = [make_document(name="one.txt"), make_document(name="two.txt")]
    ids = ",".join(str(d.pk) for d in docs)
    api = api_as(alice).get(reverse("api:links"), {"ids": ids}).json()
    client.force_login(alice)
    page = client.get(reverse("archive:links"), {"ids": ids}).json()
    assert api == page
    assert api_as(alice).get(reverse("api:links"), {"ids": "x,1"}).status_code == 400


@pytest.fixture
def archived(group_a, group_b):
    def make(title: str, text: str, group=None, **values):
        blob = storage.put_bytes(text.encode())
        document = services.document_create(
            owner_group=group or group_a,
            values={"title": title, **values},
            files=[services.NewFile(name="body.txt", blob=blob)],
        )
        DocumentFile.objects.filter(document=document).update(text=text, extraction_status=ExtractionStatus.DONE)
        search.index_document(document.pk)
        return document

    return make


def table_rows(client, q: str) -> list[int]:
    return [
        int(n)
        for n in re.findall(r'<tr data-number="(\d+)"', client.get(reverse("archive:table"), {"q": q}).content.decode())
    ]


@pytest.mark.django_db(transaction=True)
def test_the_search_language_answers_as_in_the_table(client, alice, group_b, archived, api_as):
    archived("Lieferschein", "Die Palette kommt am Dienstag mit der Post.")
    archived("Rechnung Palette", "Zahlbar innert 30 Tagen. Palette")
    archived("Offerte", "Dienstag oder Mittwoch")
    archived("Palette", "Palette of the other group", group=group_b)
    client.force_login(alice)
    api = api_as(alice)
    for q in ["palette", "palette dienstag", "dienstag -palette", '"am Dienstag"', "title:Rechnung", "pal*", "nothing"]:
        answer = api.get(reverse("api:documents"), {"q": q})
        assert answer.status_code == 200, q
        assert [d["number"] for d in answer.json()["results"]] == table_rows(client, q), q
    bad = api.get(reverse("api:documents"), {"q": "number:" + "9" * 30})
    assert bad.status_code == 400 and "out of range" in bad.json()["detail"]


def test_the_list_pages_and_stops_counting(alice, make_document, api_as, monkeypatch):
    from api import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    numbers = sorted((make_document(name=f"{i}.txt").pk for i in range(5)), reverse=True)
    client = api_as(alice)
    first = client.get(reverse("api:documents")).json()
    assert (first["count"], first["pages"], first["page"]) == (5, 3, 1)
    assert [d["number"] for d in first["results"]] == numbers[:2]
    last = client.get(reverse("api:documents"), {"page": "9" * 30}).json()
    assert [d["number"] for d in last["results"]] == numbers[4:]


def test_a_page_and_a_detail_take_the_same_queries_for_few_or_many(alice, make_document, api_as):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api_as(alice)

    def queries(path: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path).status_code == 200
        return len(captured.captured_queries)

    doc = make_document(name="0.txt")
    client.get(reverse("api:documents"))  # the token's first use notes it (one write a minute)
    client.get(reverse("api:document", args=[doc.pk]))  # the audit log's first entry creates the chain's head row
    few = queries(reverse("api:documents")), queries(reverse("api:document", args=[doc.pk]))
    for i in range(1, 12):
        make_document(name=f"{i}.txt")
    many = queries(reverse("api:documents")), queries(reverse("api:document", args=[doc.pk]))
    assert few == many
