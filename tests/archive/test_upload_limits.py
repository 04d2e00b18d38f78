"""Upload size limits hold while the request streams: per file (MAX_UPLOAD_BYTES)
and per request (MAX_UPLOAD_REQUEST_BYTES). An upload over them gets 413 and a
clear message on the upload page; nothing reaches the store and no temporary
file is left behind. Real multipart requests through Django's parser, and raw
HTTP against the live server."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from archive.models import Document

MiB = 1024 * 1024


@pytest.fixture
def limits(settings, tmp_path):
    """1 MiB per file, 3 MiB per request; files over 64 KiB go to temporary files
    in a folder of the test's own, so a leftover shows."""
    settings.MAX_UPLOAD_BYTES = 1 * MiB
    settings.MAX_UPLOAD_REQUEST_BYTES = 3 * MiB
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "upload-tmp")
    (tmp_path / "upload-tmp").mkdir()
    return tmp_path / "upload-tmp"


def files_in(folder) -> list:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def a_file(name: str, size: int) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"%PDF-1.4\n" + b"x" * (size - 9), content_type="application/pdf")


def assert_refused(response, limits, isolated_store) -> None:
    assert response.status_code == 413
    page = response.content.decode()
    assert 'id="upload-error"' in page
    assert "Nothing was stored: the upload is too large" in page
    assert "1.0\xa0MB" in page and "3.0\xa0MB" in page  # the limits, as the user reads them
    assert '<form method="post" enctype="multipart/form-data">' in page  # the form, to try again
    assert Document.objects.count() == 0
    assert files_in(isolated_store) == []
    assert files_in(limits) == []


def test_the_upload_page_tells_the_limits_in_advance(client, alice, limits):
    client.force_login(alice)
    page = client.get(reverse("archive:upload")).content.decode()
    assert "At most 1.0\xa0MB per file and 3.0\xa0MB per upload." in page


def test_a_file_under_the_limit_is_archived_and_its_temporary_file_removed(
    client, alice, group_a, limits, isolated_store
):
    client.force_login(alice)
    response = client.post(
        reverse("archive:upload"), {"files": [a_file("ok.pdf", MiB - 1024)], "owner_group": group_a.pk}
    )
    assert response.status_code == 302
    assert Document.objects.get().files.get().size == MiB - 1024
    assert len(files_in(isolated_store)) == 1
    assert files_in(limits) == []


def test_a_file_over_the_per_file_limit_is_refused_with_413(client, alice, group_a, limits, isolated_store):
    client.force_login(alice)
    response = client.post(
        reverse("archive:upload"), {"files": [a_file("big.pdf", MiB + 1)], "owner_group": group_a.pk}
    )
    assert_refused(response, limits, isolated_store)


def test_one_file_over_the_limit_refuses_the_whole_upload(client, alice, group_a, limits, isolated_store):
    """The first file is complete (a temporary file) when the second crosses the limit."""
    client.force_login(alice)
    files = [a_file("first.pdf", 900 * 1024), a_file("second.pdf", 2 * MiB), a_file("third.pdf", 1000)]
    response = client.post(reverse("archive:upload"), {"owner_group": group_a.pk, "files": files})
    assert_refused(response, limits, isolated_store)


def test_files_each_under_the_limit_but_over_the_request_limit_are_refused(
    client, alice, group_a, limits, isolated_store
):
    client.force_login(alice)
    files = [a_file(f"part-{i}.pdf", 900 * 1024) for i in range(4)]  # 3.5 MiB in all
    response = client.post(reverse("archive:upload"), {"owner_group": group_a.pk, "files": files})
    assert_refused(response, limits, isolated_store)


def test_the_refusal_is_a_413_not_a_csrf_failure(alice, group_a, limits, isolated_store):
    """Stopping at the first file still reads the fields before it: the CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get(reverse("archive:upload"))
    token = client.cookies["csrftoken"].value
    files = [a_file(f"part-{i}.pdf", 900 * 1024) for i in range(4)]
    response = client.post(
        reverse("archive:upload"), {"csrfmiddlewaretoken": token, "owner_group": group_a.pk, "files": files}
    )
    assert_refused(response, limits, isolated_store)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param([2 * MiB], id="a file over the file limit"),
        pytest.param([900 * 1024] * 4, id="over the request limit"),
    ],
)
def test_the_live_server_answers_413_over_http(live_server, alice, group_a, limits, isolated_store, sizes):
    """A browser's multipart POST over a real socket, CSRF token and all."""
    browser = Client()
    browser.force_login(alice)
    session = browser.cookies["sessionid"].value
    address = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.request("GET", "/dms/upload/", headers={"Cookie": f"sessionid={session}"})
    page = connection.getresponse()
    body = page.read().decode()
    csrf_cookie = re.search(r"csrftoken=([^;]+)", page.getheader("Set-Cookie") or "").group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)

    boundary = "----limit-test"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n{token}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="owner_group"\r\n\r\n{group_a.pk}\r\n'.encode(),
    ]
    for i, size in enumerate(sizes):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="file-{i}.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n".encode()
            + b"x" * size
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    connection.request(
        "POST",
        "/dms/upload/",
        body=b"".join(parts),
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Cookie": f"sessionid={session}; csrftoken={csrf_cookie}",
            "Referer": live_server.url + "/dms/upload/",
        },
    )
    response = connection.getresponse()
    answer = response.read().decode()
    connection.close()
    assert response.status == 413
    assert "Nothing was stored: the upload is too large" in answer
    assert Document.objects.count() == 0
    assert files_in(isolated_store) == []
    assert files_in(limits) == []
