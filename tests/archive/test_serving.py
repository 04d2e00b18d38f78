"""Files are served defensively and seekably."""

from __future__ import annotations

import pytest
from django.urls import reverse


@pytest.fixture
def video(make_document):
    return make_document(content=bytes(range(256)) * 40, name="clip.mp4")


def file_url(doc) -> str:
    return reverse("archive:file", args=[doc.pk, doc.files.get().pk])


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_range_request_gets_206_with_the_exact_bytes(client, alice, video):
    client.force_login(alice)
    response = client.get(file_url(video), HTTP_RANGE="bytes=100-199")
    assert response.status_code == 206
    assert response["Content-Range"] == "bytes 100-199/10240"
    assert response["Content-Length"] == "100"
    assert body(response) == (bytes(range(256)) * 40)[100:200]


def test_open_ended_and_suffix_ranges(client, alice, video):
    client.force_login(alice)
    response = client.get(file_url(video), HTTP_RANGE="bytes=10000-")
    assert response.status_code == 206
    assert response["Content-Range"] == "bytes 10000-10239/10240"
    assert len(body(response)) == 240
    response = client.get(file_url(video), HTTP_RANGE="bytes=-16")
    assert response["Content-Range"] == "bytes 10224-10239/10240"
    assert body(response) == bytes(range(240, 256))


def test_an_unsatisfiable_range_gets_416(client, alice, video):
    client.force_login(alice)
    response = client.get(file_url(video), HTTP_RANGE="bytes=20000-20010")
    assert response.status_code == 416
    assert response["Content-Range"] == "bytes */10240"


def test_no_range_gets_the_whole_file_and_advertises_ranges(client, alice, video):
    client.force_login(alice)
    response = client.get(file_url(video))
    assert response.status_code == 200
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Type"] == "video/mp4"
    assert len(body(response)) == 10240


def test_media_is_inline_with_nosniff_and_an_explicit_disposition(client, alice, video):
    client.force_login(alice)
    response = client.get(file_url(video))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith('inline; filename="clip.mp4"')
    assert "sandbox" in response["Content-Security-Policy"]


@pytest.mark.parametrize("name", ["page.html", "drawing.svg", "tool.exe", "data.bin"])
def test_active_or_unknown_types_are_always_downloads(client, alice, make_document, name):
    doc = make_document(content=b"<script>alert(1)</script>", name=name)
    client.force_login(alice)
    response = client.get(file_url(doc))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_download_parameter_forces_attachment_and_keeps_a_unicode_name(client, alice, make_document):
    doc = make_document(content=b"%PDF-1.4", name="Offerte Müller.pdf")
    client.force_login(alice)
    response = client.get(file_url(doc) + "?download=1")
    # Django's content_disposition_header: RFC 6266's filename* for a name that is not ASCII.
    assert response["Content-Disposition"] == "attachment; filename*=utf-8''Offerte%20M%C3%BCller.pdf"


def test_an_ascii_name_is_quoted_and_escaped(client, alice, make_document):
    doc = make_document(content=b"x", name='say "hi".txt')
    client.force_login(alice)
    response = client.get(file_url(doc))
    assert response["Content-Disposition"] == 'inline; filename="say \\"hi\\".txt"'


def test_a_pdf_is_always_a_sandboxed_download(client, alice, make_document):
    """A browser's PDF viewer would run the PDF's JavaScript: the View tab uses PDF.js instead."""
    doc = make_document(content=b"%PDF-1.4", name="scan.pdf")
    client.force_login(alice)
    response = client.get(file_url(doc))
    assert response["Content-Disposition"] == 'attachment; filename="scan.pdf"'
    assert response["Content-Type"] == "application/octet-stream"
    assert "sandbox" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "marker"),
    [
        ("scan.pdf", 'id="pdf-viewer"'),
        ("photo.png", "<img"),
        ("clip.mp4", "<video"),
        ("song.mp3", "<audio"),
        ("readme.txt", 'title="Text" sandbox'),
        ("sheet.xlsx", '?download=1">Download'),
    ],
)
def test_the_view_tab_renders_by_type(client, alice, make_document, name, marker):
    doc = make_document(content=b"x", name=name)
    client.force_login(alice)
    page = client.get(reverse("archive:document", args=[doc.pk])).content.decode()
    view_tab = page.split('id="panel-view"')[1].split("</section>")[0]
    assert marker in view_tab
