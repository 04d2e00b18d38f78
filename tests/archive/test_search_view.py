"""The search box of the WebDMS table: hits in the normal table, snippets,
sorting, and nothing of documents the user cannot open."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from archive import search, services, storage
from archive.models import DocumentFile, ExtractionStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def archived(group_a):
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


def rows(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-number="(\d+)"', html)]


def test_hits_show_in_the_table_with_highlighted_snippets(client, alice, archived):
    hit = archived("Lieferschein", "Die Palette <b>kommt</b> am Dienstag mit der Post.")
    archived("Rechnung", "Zahlbar innert 30 Tagen.")
    client.force_login(alice)
    response = client.get(reverse("archive:table"), {"q": "palette dienstag"})
    html = response.content.decode()
    assert response.status_code == 200
    assert rows(html) == [hit.pk]
    assert "1 hit" in html
    assert "<mark>Palette</mark>" in html and "<mark>Dienstag</mark>" in html
    assert "&lt;b&gt;kommt&lt;/b&gt;" in html


def test_nothing_of_another_groups_documents_shows(client, bob, archived, group_a):
    archived("Merger plans", "Confidential: the merger with Example Corp")
    client.force_login(bob)
    html = client.get(reverse("archive:table"), {"q": "merger"}).content.decode()
    assert rows(html) == []
    assert "0 hits" in html
    assert "Confidential" not in html and "Example Corp" not in html


def test_markup_in_a_document_is_never_rendered(client, alice, archived):
    archived("<img src=x onerror=alert(1)>", "<script>alert('x')</script> payload word")
    client.force_login(alice)
    html = client.get(reverse("archive:table"), {"q": "payload"}).content.decode()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html


def test_results_sort_by_a_column_and_keep_the_query(client, alice, archived):
    b = archived("Beta report", "quarterly report")
    a = archived("Alpha report", "quarterly report")
    client.force_login(alice)
    html = client.get(reverse("archive:table"), {"q": "report", "sort": "title", "dir": "asc"}).content.decode()
    assert rows(html) == [a.pk, b.pk]
    assert "q=report" in html  # the column links and the pager keep the search
    assert 'id="sort-relevance"' in html


def test_a_bad_query_explains_itself(client, alice, archived):
    archived("Anything", "anything")
    client.force_login(alice)
    response = client.get(reverse("archive:table"), {"q": "date:someday"})
    assert response.status_code == 200
    assert "not a date" in response.content.decode()
    assert rows(response.content.decode()) == []


def test_the_search_box_keeps_the_query(client, alice):
    client.force_login(alice)
    html = client.get(reverse("archive:table"), {"q": 'from:alice "x y"'}).content.decode()
    assert 'value="from:alice &quot;x y&quot;"' in html


def test_the_table_stops_counting_past_the_page_it_shows(alice, archived):
    from archive.models import Document
    from archive.paging import CappedPaginator

    for i in range(5):
        archived(f"Doc {i}", "text")
    qs = Document.objects.order_by("pk")
    first = CappedPaginator(qs, 2, page=1, limit=3)
    assert (first.count, first.more) == (4, True)
    assert first.get_page(1).has_next()
    assert CappedPaginator(qs, 2, page=2, limit=3).get_page(2).has_next()
    last = CappedPaginator(qs, 2, page=3, limit=3)
    assert (last.count, last.more) == (5, False)
    assert not last.get_page(3).has_next()
