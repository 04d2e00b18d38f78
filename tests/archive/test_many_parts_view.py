"""The document page of a mail with many parts (issue 10, requirement 9): the
View tab's part list and the Files tab show the first parts with a "Show all N"
link, every row's download URL is the one ``reverse()`` gives, the page's queries
do not grow with the parts, and a mail over ``MAIL_MAX_MIME_PARTS`` keeps its
first parts and says why."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from archive import mailview, processing, views
from archive.models import FileRole
from bench.bigmail_bench import many_parts_mail
from tests.archive.mail_samples import archive_mail

SHOWN = 3


@pytest.fixture
def few_shown(monkeypatch):
    monkeypatch.setattr(mailview, "PARTS_SHOWN", SHOWN)
    monkeypatch.setattr(views, "FILES_SHOWN", SHOWN)


def processed_mail(group, parts: int):
    document = archive_mail(many_parts_mail(parts), group)
    processing.mail_documents_process([document.pk])
    return document


def page(client, document, query: str = "") -> str:
    response = client.get(reverse("archive:document", args=[document.pk]) + query)
    assert response.status_code == 200
    return response.content.decode()


def listed_parts(html: str) -> list[tuple[str, str]]:
    listed = re.search(r'<ul class="mail-attachments".*?</ul>', html, re.S)
    assert listed is not None
    return re.findall(r'<a href="([^"]+)">([^<]+)</a>', listed.group(0))


def listed_files(html: str) -> list[tuple[str, str]]:
    table = re.search(r'<table class="files">.*?</table>', html, re.S)
    assert table is not None
    return re.findall(r'<tr><td><a href="([^"]+)">([^<]+)</a>', table.group(0))


def test_the_view_tab_lists_the_first_parts_and_links_to_all(client, alice, group_a, few_shown):
    document = processed_mail(group_a, 8)  # the body and 7 attachments
    client.force_login(alice)
    html = page(client, document)
    assert [name for _url, name in listed_parts(html)] == ["part-1.txt", "part-2.txt", "part-3.txt"]
    assert "The first 3 of 7 parts are listed." in html
    assert 'href="?parts=all#view" id="mail-attachments-all">Show all 7 parts</a>' in html

    everything = page(client, document, "?parts=all")
    assert [name for _url, name in listed_parts(everything)] == [f"part-{n}.txt" for n in range(1, 8)]
    assert 'id="mail-attachments-more"' not in everything


def test_the_files_tab_lists_the_first_attachments_and_the_original(client, alice, group_a, few_shown):
    document = processed_mail(group_a, 8)
    client.force_login(alice)
    html = page(client, document)
    assert [name for _url, name in listed_files(html)] == ["part-1.txt", "part-2.txt", "part-3.txt", "mail.eml"]
    assert "4 of 8 files are listed." in html
    assert 'href="?parts=all#files" id="files-all">Show all 8 files</a>' in html

    everything = page(client, document, "?parts=all")
    names = [name for _url, name in listed_files(everything)]
    assert names == [*(f"part-{n}.txt" for n in range(1, 8)), "mail.eml"]
    assert 'id="files-more"' not in everything


def test_every_listed_url_is_the_reversed_one_and_downloads_its_part(client, alice, group_a, few_shown):
    document = processed_mail(group_a, 5)
    client.force_login(alice)
    html = page(client, document, "?parts=all")
    files = {f.name: f for f in document.files.all()}
    for url, name in listed_files(html):
        assert url == reverse("archive:file", args=[document.pk, files[name].pk]) + "?download=1"
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Disposition"].startswith("attachment;")
    for url, name in listed_parts(html):
        part = files[name].part
        assert url == reverse("archive:mail_part", args=[document.pk, part]) + "?download=1"
        response = client.get(url)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        assert content.decode().strip() == f"part {name.removeprefix('part-').removesuffix('.txt')} of the many"


def test_a_mail_with_few_parts_shows_no_show_all_link(client, alice, group_a):
    document = processed_mail(group_a, 4)
    client.force_login(alice)
    html = page(client, document)
    assert len(listed_parts(html)) == 3 and len(listed_files(html)) == 4
    assert "Show all" not in html


def test_the_pages_queries_do_not_grow_with_the_parts(client, alice, group_a, few_shown):
    small, large = processed_mail(group_a, 3), processed_mail(group_a, 40)
    client.force_login(alice)
    page(client, small)  # sessions, settings and templates warmed up
    counts = []
    for document in (small, large, large):
        with CaptureQueriesContext(connection) as queries:
            page(client, document)
        counts.append(len(queries))
    assert counts[1] == counts[2] == counts[0] + 1  # one more: the count behind "Show all N files"


def test_a_mail_over_the_parts_limit_keeps_its_first_parts_and_says_why(client, alice, group_a, settings):
    # MAIL_MAX_MIME_PARTS counts every MIME node: the multipart itself, the
    # text body, then the attachments (the bench's 10,000-part mail: 498 files).
    settings.MAIL_MAX_MIME_PARTS = 12
    document = processed_mail(group_a, 30)
    document.refresh_from_db()
    assert document.parse_error == "limit exceeded: more than 12 MIME parts"
    attachments = document.files.filter(role=FileRole.ATTACHMENT).count()
    assert attachments == 12 - 2
    client.force_login(alice)
    html = page(client, document, "?parts=all")
    assert "more than 12 MIME parts" in html
    assert len(listed_parts(html)) == attachments
