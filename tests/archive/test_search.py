"""The search specification, run as it is on SQLite (FTS5) and on MariaDB
(InnoDB FULLTEXT): whichever ``DATABASE_URL`` the suite runs with.

Transactional: InnoDB applies full-text index changes at commit, so a search
sees only committed documents — as it does in production."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from archive import search, services, storage
from archive.models import Document, DocumentFile, ExtractionStatus, FieldDefinition, FieldType, SearchEntry
from archive.search import SearchQueryError

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def archive(group_a):
    """Creates a document of group_a (Sales) unless told otherwise; ``text`` is
    stored as the extracted text of its file, as extraction would."""

    def make(
        title: str = "",
        *,
        text: str = "",
        group: Group | None = None,
        notes: str = "",
        file_name: str = "file.txt",
        **values: object,
    ) -> Document:
        blob = storage.put_bytes((text or title).encode())
        document = services.document_create(
            owner_group=group or group_a,
            values={"title": title, **values},
            files=[services.NewFile(name=file_name, blob=blob)],
        )
        if text:
            DocumentFile.objects.filter(document=document).update(text=text, extraction_status=ExtractionStatus.DONE)
        if notes:
            services.document_set_notes(document, notes)
        search.index_document(document.pk)
        return document

    return make


def found(user, text: str, **kwargs) -> list[Document]:
    return list(search.search_documents(user, text, **kwargs).documents)


def test_all_words_must_match_anywhere(alice, archive):
    both = archive("Invoice", text="Payment due in March")
    archive("Invoice", text="Payment due in April")
    assert found(alice, "invoice march") == [both]
    assert found(alice, "MARCH Invoice") == [both]


def test_a_phrase_matches_words_in_that_order(alice, archive):
    phrase = archive("a", text="the annual report of the board")
    archive("b", text="report: the annual figures")
    assert found(alice, '"annual report"') == [phrase]


def test_excluded_words_and_phrases(alice, archive):
    final = archive("Offer final")
    archive("Offer draft")
    archive("Offer", text="the old offer")
    assert found(alice, 'offer -draft -"old offer"') == [final]


def test_only_exclusions_list_everything_else(alice, archive):
    keep = archive("Keep me")
    archive("Drop me")
    assert found(alice, "-drop") == [keep]


def test_prefix_search(alice, archive):
    invoice = archive("Invoices 2024")
    agenda = archive("Agenda")
    archive("Offer")
    assert found(alice, "invoi*") == [invoice]
    assert set(found(alice, "ag*")) == {agenda}


def test_case_and_accents_do_not_matter(alice, archive):
    mueller = archive("Brief an Herrn Müller, Hauptstraße 5")
    assert found(alice, "muller") == [mueller]
    assert found(alice, "MÜLLER hauptstrasse") == [mueller]


def test_short_words_and_stopwords_are_searchable(alice, archive):
    """InnoDB skips words under 3 letters and stopwords unless told otherwise."""
    ag = archive("Muster AG", text="To be or not to be")
    archive("Muster GmbH")
    assert found(alice, "ag") == [ag]
    assert found(alice, '"to be or not to be"') == [ag]
    assert found(alice, "not") == [ag]  # a stopword of InnoDB's default list, 3 letters (not padded)
    assert found(alice, "the") == []


def test_field_terms_match_only_that_field(alice, archive):
    from_alice = archive("Hello", **{"from": "Alice Example <alice@example.com>", "subject": "Annual report"})
    mentions_alice = archive(
        "About alice", text="alice wrote about the annual report", **{"from": "Bob <bob@example.org>"}
    )
    assert set(found(alice, "alice")) == {from_alice, mentions_alice}
    assert found(alice, "from:alice") == [from_alice]
    assert found(alice, "From:alice@example.com") == [from_alice]
    assert found(alice, 'subject:"annual report"') == [from_alice]
    assert found(alice, "-from:alice alice") == [mentions_alice]
    assert found(alice, "from:ali*") == [from_alice]


def test_notes_and_file_names_are_searchable(alice, archive):
    noted = archive("Contract", notes="Call Mr. Keller before renewal", file_name="vertrag-keller.pdf")
    assert found(alice, "renewal") == [noted]
    assert found(alice, "notes:keller") == [noted]
    assert found(alice, "file:vertrag") == [noted]


def test_date_ranges(alice, archive):
    jan = archive("January", date="2024-01-15")
    mar = archive("March", date="2024-03-31")
    archive("April", date="2024-04-01")
    undated = archive("Undated")
    assert set(found(alice, "date:2024-01-01..2024-03-31")) == {jan, mar}
    assert found(alice, "date:2024-03") == [mar]
    assert found(alice, "date:31.3.2024") == [mar]
    assert set(found(alice, "date:..2024-02")) == {jan}
    assert found(alice, "march date:2024") == [mar]
    assert set(found(alice, "-date:2024-03..")) == {jan, undated}  # not in that range


def test_custom_date_number_and_yes_no_fields(alice, archive):
    FieldDefinition.objects.create(name="due", label="Due", type=FieldType.DATE)
    FieldDefinition.objects.create(name="amount", label="Amount", type=FieldType.NUMBER)
    FieldDefinition.objects.create(name="paid", label="Paid", type=FieldType.YESNO)
    small = archive("Small", due="2024-05-01", amount="100", paid=True)
    large = archive("Large", due="2024-07-01", amount="1250.50", paid=False)
    assert found(alice, "due:2024-05") == [small]
    assert found(alice, "amount:100") == [small]
    assert found(alice, "amount:1000..2000") == [large]
    assert found(alice, "amount:1250.5") == [large]
    assert found(alice, "paid:yes") == [small]
    assert found(alice, "paid:no") == [large]


def test_number_owner_and_kind(alice, admin_user, archive, group_b):
    first = archive("First")
    second = archive("Second", group=group_b)
    assert found(admin_user, f"number:{first.pk}") == [first]
    assert found(admin_user, "owner:legal") == [second]
    assert found(admin_user, "kind:mail") == []
    assert set(found(admin_user, "kind:document")) == {first, second}


def test_results_honour_access_rules(alice, bob, admin_user, archive, group_b):
    sales = archive("Quarterly numbers", text="secret merger plans")
    legal = archive("Quarterly numbers", text="secret merger plans", group=group_b)
    assert found(alice, "merger") == [sales]
    assert found(bob, "merger") == [legal]
    assert set(found(admin_user, "merger")) == {sales, legal}
    results = search.search_documents(bob, "merger")
    assert results.documents.count() == 1
    assert set(results.snippets(list(results.documents))) == {legal.pk}


def test_an_anonymous_or_inactive_user_finds_nothing(alice, archive):
    from django.contrib.auth.models import AnonymousUser

    archive("Anything")
    assert found(AnonymousUser(), "anything") == []
    alice.is_active = False
    alice.save()
    assert found(alice, "anything") == []


def test_relevance_puts_the_best_match_first(alice, archive):
    archive("Unrelated one")
    archive("Unrelated two")
    once = archive("Mentions solar once", text="we talked about solar and many other things at length")
    often = archive("Solar solar", text="solar panels, solar power, solar roof")
    results = search.search_documents(alice, "solar")
    assert results.by_relevance
    assert list(results.documents) == [often, once]


def test_results_can_be_sorted_by_any_column(alice, archive):
    b = archive("Beta report", date="2024-02-01", subject="zebra")
    a = archive("Alpha report", date="2024-03-01", subject="yak")
    fields = {f.name: f for f in FieldDefinition.objects.all()}
    assert found(alice, "report", sort_field=fields["title"], descending=False) == [a, b]
    assert found(alice, "report", sort_field=fields["date"], descending=True) == [a, b]
    assert found(alice, "report", sort_field=fields["subject"], descending=False) == [a, b]
    assert found(alice, "report", sort_field=fields["number"], descending=False) == [b, a]


def test_snippets_mark_the_match_and_escape_everything_else(alice, archive):
    archive("Mail", text="Hello <b>team</b>, the <script>alert(1)</script> invoice for March is attached.")
    results = search.search_documents(alice, "invoice march")
    (snippet,) = results.snippets(list(results.documents)).values()
    assert "<mark>invoice</mark>" in snippet.html and "<mark>March</mark>" in snippet.html
    assert "&lt;script&gt;" in snippet.html and "<script>" not in snippet.html
    assert "&lt;b&gt;team&lt;/b&gt;" in snippet.html
    assert snippet.source == "file.txt"


def test_a_snippet_shows_the_passage_with_most_terms(alice, archive):
    filler = " ".join(f"word{i}" for i in range(200))
    text = f"budget appears here alone. {filler} Later the budget for Zürich is final."
    archive("Budget", text=text)
    results = search.search_documents(alice, "budget zurich")
    (snippet,) = results.snippets(list(results.documents)).values()
    assert "<mark>budget</mark> for <mark>Zürich</mark>" in snippet.html
    assert snippet.html.startswith("…")


def test_changing_fields_or_notes_updates_the_index(alice, archive):
    document = archive("Old title")
    services.document_update_values(document, {"title": "New heading"})
    assert found(alice, "old") == []
    assert found(alice, "heading") == [document]
    services.document_set_notes(document, "remember the milk")
    assert found(alice, "milk") == [document]


def test_a_deleted_document_leaves_the_index(alice, archive, settings):
    settings.RETENTION_DELETION_LOCK = False  # deleted directly, not through an expiry list
    document = archive("Ephemeral")
    document.delete()
    assert not SearchEntry.objects.filter(pk=document.pk).exists()
    assert found(alice, "ephemeral") == []


def test_a_document_is_found_by_its_fields_before_and_without_extraction(alice, group_a):
    blob = storage.put_bytes(b"%PDF-1.4 broken")
    document = services.document_create(
        owner_group=group_a,
        values={"title": "Scanned contract", "subject": "Leasing"},
        files=[services.NewFile(name="scan.pdf", blob=blob)],
    )
    assert found(alice, "leasing contract") == [document]


def test_an_empty_or_meaningless_query_finds_nothing(alice, archive):
    archive("Something")
    assert found(alice, "") == []
    assert found(alice, '"" !!') == []


def test_a_bad_query_says_why(alice):
    with pytest.raises(SearchQueryError, match="not a date"):
        search.search_documents(alice, "date:someday")


def test_relevance_order_holds_with_filters_and_through_pages(alice, archive):
    """MariaDB returns hits best first without an ORDER BY; filters must not break that."""
    for i in range(3):
        archive(f"Filler {i}", date="2024-05-01")
    once = archive("Solar", text="solar once, then other words", date="2024-05-02")
    twice = archive("Solar solar", text="solar", date="2024-05-03")
    often = archive("Solar solar solar", text="solar solar solar", date="2024-05-04")
    archive("Solar out of range", text="solar solar solar solar", date="2023-01-01")
    results = search.search_documents(alice, "solar date:2024-05")
    assert list(results.documents) == [often, twice, once]
    paginator = results.paginator(2)
    assert (paginator.count, paginator.num_pages) == (3, 2)
    assert list(paginator.page(1).object_list) == [often, twice]
    assert list(paginator.page(2).object_list) == [once]


def test_an_owner_change_takes_effect_at_once(alice, bob, archive, group_b):
    moved = archive("Moved contract", text="handover protocol")
    Document.objects.filter(pk=moved.pk).update(owner_group=group_b)  # no re-indexing needed
    assert found(alice, "handover") == []
    assert found(bob, "handover") == [moved]


SCAN_QUERIES = [
    "solar",
    '"solar panels"',
    "sol*",
    "solar -roof",
    'solar -"solar roof"',
    "from:alice solar",
    "subject:offer",
    'subject:"annual offer"',
    "ag",
    "-solar",
    "solar date:2024-01",
]


def test_matching_document_by_document_finds_what_the_index_finds(alice, archive, monkeypatch):
    """The planner may read documents newest first — on MariaDB matching them one
    by one (LIKE on the token stream), on SQLite along the date index, each
    looked up in FTS5's matches — or check an excluded word on the row: the
    hits must be the same as through the full-text index's relevance order."""
    from archive.search import planner

    docs = [
        archive("Panels", text="solar panels on the roof", date="2024-01-02"),
        archive("Roof", text="the solar roof", date="2024-01-03", **{"from": "Alice <alice@example.com>"}),
        archive("Offer", text="solar", date="2024-01-04", subject="Annual offer"),
        archive("Muster AG", text="nothing else", date="2024-01-05"),
        archive("Solarium", text="a solarium", date="2024-01-06"),
        archive("Old", text="solar panels", date="2019-01-01"),
    ]
    assert len(docs) == 6
    for query in SCAN_QUERIES:
        by_index = set(found(alice, query))
        parsed = search.parse_query(query, FieldDefinition.objects.all())
        late = tuple(t for t in parsed.terms if t.negate)
        for plan in (planner.Plan(scan=True), planner.Plan(late_exclusions=late)):
            monkeypatch.setattr(planner, "plan", lambda *a, plan=plan, **k: plan)
            monkeypatch.setattr(planner, "plan_fts5", lambda *a, plan=plan, **k: plan)
            results = search.search_documents(alice, query)
            assert set(results.documents) == by_index, (query, plan)
            if plan.scan and parsed.positive_terms:
                dates = [d.date for d in results.documents]
                assert not results.by_relevance and dates == sorted(dates, reverse=True), query
        monkeypatch.undo()


def test_an_entry_holds_the_month_of_its_document_date_where_the_engine_uses_it(group_a):
    """Written with the document (``index_new_documents``), rewritten on a change of the date."""
    from archive.search.backends import backend_for

    blob = storage.put_bytes(b"x")
    document = services.document_create(
        owner_group=group_a, values={"title": "Offer", "date": "2018-11-05"}, files=[services.NewFile("x", blob)]
    )
    months = [t for t in SearchEntry.objects.get(document=document).text.split() if t.startswith("_m")]
    assert months == (["_m201811"] if backend_for().month_tokens else [])
    services.document_update_values(document, {"date": "2019-02-01"})
    months = [t for t in SearchEntry.objects.get(document=document).text.split() if t.startswith("_m")]
    assert months == (["_m201902"] if backend_for().month_tokens else [])


def test_a_range_asked_of_the_index_by_its_months_finds_what_the_date_finds(alice, archive, monkeypatch):
    """MariaDB may ask the index for one of a date range's months
    (``tokens.month_token``, UTC) besides the words; the date condition stays
    exact. Documents at the edges of a range in Zurich lie in other UTC months."""
    from archive.search import planner

    with timezone.override("Europe/Zurich"):
        inside = [
            archive("Offer", text="solar offer", date="2024-03-01T00:30:00+01:00"),  # 29 February in UTC
            archive("Offer", text="solar", date="2024-03-31T23:30:00+02:00"),  # 21:30 UTC
            archive("Offer", text="solar", date="2024-03-15"),
        ]
        outside = [
            archive("Offer", text="solar", date="2024-02-29T23:30:00+01:00"),
            archive("Offer", text="solar", date="2024-04-01T00:10:00+02:00"),  # 31 March in UTC
            archive("Offer", text="solar", date="2023-03-15"),
            archive("Undated", text="solar"),
        ]
        assert len(outside) == 4
        for query in ("solar date:2024-03", "solar date:2024-03-01..2024-03-31 -nothing", "offer solar date:2024-03"):
            expected = set(found(alice, query))
            assert expected <= set(inside) and expected, query
            months = tuple(search.parse_query(query, FieldDefinition.objects.all()).date_months())
            assert months[0] == "_m202402", query
            monkeypatch.setattr(planner, "plan", lambda *a, months=months, **k: planner.Plan(months=months))
            assert set(found(alice, query)) == expected, query
            assert set(found(alice, query, allow_scan=False)) == expected, query
            monkeypatch.undo()
        if connection.vendor == "mysql":  # the index is asked: a month without documents finds none
            assert SearchEntry.objects.get(document=inside[0]).text.split()[0] == "_m202402"
            monkeypatch.setattr(planner, "plan", lambda *a, **k: planner.Plan(months=("_m209901",)))
            assert found(alice, "solar date:2024-03") == []


# --- the time budget (issue 11): "too complex" instead of a worker held for long ---------

# About a billion rows: minutes of work on either database, unless interrupted.
ENDLESS = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000) SELECT COUNT(*) FROM c a, c b, c x"
)


def test_the_database_stops_a_statement_that_outruns_the_budget():
    # The statement would run for minutes: the "too complex" answer is the budget's doing.
    with pytest.raises(search.SearchTooComplex, match="too complex to answer in time — narrow it"):
        with search.time_budget(0.2), connection.cursor() as cursor:
            cursor.execute(ENDLESS)
    with connection.cursor() as cursor:  # the connection is usable, and unlimited again
        cursor.execute(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 500) SELECT COUNT(*) FROM c"
        )
        assert cursor.fetchone() == (500,)


class SteppingClock:
    """Each reading one second later than the one before."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_search_past_its_budget_is_too_complex(alice, archive):
    archive("Invoice", text="Payment due in March")
    clock = SteppingClock()  # the budget starts at 1; the first statement starts at 2, the next at 3 …
    with pytest.raises(search.SearchTooComplex):
        with search.time_budget(2.5, clock=clock):
            results = search.search_documents(alice, "invoice")
            page = results.paginator(50).get_page(1)
            results.snippets(list(page.object_list))
    # With time to spare, the same search answers.
    with search.time_budget(60):
        assert found(alice, "invoice march") != []


def test_the_budget_comes_from_the_settings(settings):
    from archive.search.budget import budget_seconds

    settings.SEARCH_TIME_BUDGET_MS = 1500
    assert budget_seconds() == 1.5


def test_innodbs_own_full_text_limit_is_too_complex_too():
    from django.db import InternalError, OperationalError

    from archive.search.budget import is_too_complex

    assert is_too_complex(InternalError(188, "FTS query exceeds result cache limit"), mariadb=True)
    assert is_too_complex(OperationalError(1969, "max_statement_time exceeded"), mariadb=True)
    assert not is_too_complex(OperationalError(2006, "MySQL server has gone away"), mariadb=True)
    assert is_too_complex(OperationalError("interrupted"), mariadb=False)
    assert not is_too_complex(OperationalError("database is locked"), mariadb=False)
