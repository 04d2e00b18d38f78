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


# --- bounded input (issue 11) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("a* " * 1300, "characters long; at most 1,000 are allowed — narrow it"),
        (" ".join(f"w{i}" for i in range(200)), "200 terms (each word of a phrase counts); at most 32"),
        ('"' + " ".join(f"x{i}" for i in range(100)) + '"', "100 terms"),
        ("date:9999-12-31", "the year must be between 1000 and 9998"),
        ("number:" + "9" * 30, "out of range"),
    ],
    ids=["repeated prefixes", "many words", "huge phrase", "last date", "huge number"],
)
def test_a_hostile_query_gets_a_clear_message_in_the_table(client, alice, archived, query, message):
    archived("Anything", "anything a aa")
    client.force_login(alice)
    response = client.get(reverse("archive:table"), {"q": query})
    html = response.content.decode()
    assert response.status_code == 200
    assert '<p class="search-error" role="alert">' in html and message in html
    assert rows(html) == []


def test_a_repeated_prefix_is_one_term(client, alice, archived):
    hit = archived("Alpha", "alpha beta")
    client.force_login(alice)
    html = client.get(reverse("archive:table"), {"q": "alp* " * 150}).content.decode()
    assert rows(html) == [hit.pk]
    assert html.count("<mark>") == 1


def test_a_search_past_the_time_budget_says_narrow_it(client, alice, archived, settings):
    archived("Invoice", "Payment due in March")
    client.force_login(alice)
    settings.SEARCH_TIME_BUDGET_MS = 0  # every statement is past it
    response = client.get(reverse("archive:table"), {"q": "invoice"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "too complex to answer in time — narrow it" in html and rows(html) == []
    settings.SEARCH_TIME_BUDGET_MS = 3000
    assert len(rows(client.get(reverse("archive:table"), {"q": "invoice"}).content.decode())) == 1


@pytest.mark.parametrize("page", ["9" * 30, "²", "-3", "1e5", "0"])
def test_any_page_number_gives_a_page(client, alice, archived, page):
    hit = archived("Invoice", "Payment due in March")
    client.force_login(alice)
    for params in ({"page": page}, {"page": page, "q": "invoice"}):
        response = client.get(reverse("archive:table"), params)
        assert response.status_code == 200
        assert rows(response.content.decode()) == [hit.pk], params


def test_the_search_box_is_bounded_in_the_browser_too(client, alice):
    from archive.search.query import MAX_QUERY_CHARS

    client.force_login(alice)
    assert f'maxlength="{MAX_QUERY_CHARS}"' in client.get(reverse("archive:table")).content.decode()
