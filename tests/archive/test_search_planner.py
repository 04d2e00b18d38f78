"""The MariaDB search planner: the full-text index, or documents newest first
one by one — chosen from how common the words are (search statistics)."""

from __future__ import annotations

import random

import pytest
from django.utils import timezone

from archive import search, services, storage
from archive.models import Document, FieldDefinition, SearchIndexState, SearchStatistic
from archive.search import planner, statistics, upgrade

pytestmark = pytest.mark.django_db(transaction=True)


def figures(total: int, groups: dict[int, float], tokens: dict[str, float]) -> None:
    SearchStatistic.objects.all().delete()
    SearchStatistic.objects.create(token=statistics.TOTAL, fraction=total)
    for group_id, share in groups.items():
        SearchStatistic.objects.create(token=f"{statistics.GROUP}{group_id}", fraction=share)
    for token, share in tokens.items():
        SearchStatistic.objects.create(token=token, fraction=share)


def plan_for(text: str, group_ids=None, allow_scan: bool = True) -> planner.Plan:
    parsed = search.parse_query(text, FieldDefinition.objects.all())
    qs = Document.objects.all()
    for condition in parsed.filters:
        qs = qs.filter(condition)
    return planner.plan(parsed, qs, group_ids, window=500, allow_scan=allow_scan)


def test_without_figures_the_index_is_used():
    assert plan_for("the") == planner.Plan()


def test_a_common_word_is_read_newest_first_a_rare_one_through_the_index(group_a):
    figures(1_000_000, {group_a.pk: 0.5}, {"the": 0.6, "invoice": 0.03})
    assert plan_for("the", [group_a.pk]).scan
    assert not plan_for("invoice", [group_a.pk]).scan
    assert not plan_for("zebra", [group_a.pk]).scan  # not in the figures: rare
    assert not plan_for("invoice zebra", [group_a.pk]).scan  # the rare word bounds the index's work
    assert not plan_for("invoice", [group_a.pk], allow_scan=False).scan  # relevance asked for


def test_an_index_read_the_time_budget_could_not_stop_is_never_started(group_a, settings):
    """InnoDB reads a posting list to its end whatever max_statement_time says:
    "the" in 60 % of a million documents is 1.2 s of reading (issue 11)."""
    figures(1_000_000, {group_a.pk: 0.5}, {"the": 0.6, "invoice": 0.03})
    settings.SEARCH_TIME_BUDGET_MS = 900
    assert plan_for("the zebra", [group_a.pk]).scan  # one by one instead: the budget stops that
    with pytest.raises(search.SearchTooComplex):
        plan_for("the", [group_a.pk], allow_scan=False)  # relevance needs the index
    settings.SEARCH_TIME_BUDGET_MS = 5000
    assert not plan_for("the zebra", [group_a.pk]).scan
    assert not plan_for("the", [group_a.pk], allow_scan=False).scan


def test_a_prefix_costs_the_posting_lists_of_all_its_words(group_a, settings):
    # "a*" reads "and", "archive", "a__" …: several postings per document, not one.
    figures(300_000, {}, {"and": 0.9, "archive": 0.8, "a__": 0.9, "at_": 0.9, "invoice": 0.03})
    settings.SEARCH_TIME_BUDGET_MS = 900
    assert not plan_for("invoice", allow_scan=False).scan
    with pytest.raises(search.SearchTooComplex):
        plan_for("a* invoice", allow_scan=False)  # 3.5 postings × 300,000 × 2 µs = 2.1 s (as one: 0.6 s)


def test_a_common_phrase_and_prefix_count_by_their_pairs_and_words():
    figures(1_000_000, {}, {"of__the": 0.4, "invoice": 0.2, "invoices": 0.2, "of_": 0.7, "the": 0.7})
    assert plan_for('"of the"').scan
    assert plan_for("invoic*").scan
    assert not plan_for('"of zebras"').scan


def test_a_common_excluded_word_is_checked_on_the_row():
    figures(1_000_000, {}, {"the": 0.6, "draft": 0.001})
    plan = plan_for("zebra -the -draft")
    assert [t.tokens for t in plan.late_exclusions] == [("the",)]
    assert not plan.scan


def test_a_short_date_range_is_read_document_by_document(group_a):
    blob = storage.put_bytes(b"x")
    for day in range(1, 4):
        services.document_create(
            owner_group=group_a,
            values={"title": "x", "date": f"2024-01-0{day}"},
            files=[services.NewFile(name="x.txt", blob=blob)],
        )
    figures(1_000_000, {group_a.pk: 1.0}, {"invoice": 0.05})
    assert plan_for("invoice date:2024-01").scan  # three documents to read
    assert not plan_for("invoice").scan


def test_statistics_come_from_a_sample_of_the_index(group_a, group_b):
    blob = storage.put_bytes(b"x")
    for i in range(30):
        services.document_create(
            owner_group=group_a if i % 3 else group_b,
            values={"title": f"common word{i}" + (" half" if i % 2 else "")},
            files=[services.NewFile(name="x.txt", blob=blob)],
        )
    kept = statistics.refresh(sample=1000, rng=random.Random(1))
    shares = dict(SearchStatistic.objects.values_list("token", "fraction"))
    assert kept == len(shares)
    assert shares["common"] == 1.0 and shares["half"] == 0.5
    assert "word7" not in shares  # rarer than the sample can tell
    assert shares[statistics.TOTAL] == 30
    assert shares[f"{statistics.GROUP}{group_b.pk}"] == pytest.approx(10 / 30)
    est = statistics.lookup(["common", "zebra"], ["hal"], [group_a.pk])
    assert est.total == 30 and est.visible == pytest.approx(20 / 30)
    assert est.fraction("zebra", 0.001) == 0.001 and est.prefix("hal", 0.001) == 0.5


def fts5_plan_for(text: str, group_ids=None, allow_scan: bool = True) -> planner.Plan:
    parsed = search.parse_query(text, FieldDefinition.objects.all())
    return planner.plan_fts5(parsed, group_ids, window=500, allow_scan=allow_scan)


def test_sqlite_walks_the_date_index_for_a_common_word_and_ranks_a_rare_one(group_a, django_assert_num_queries):
    """FTS5 ranks every match before the first row: for "the" in 60 % of a million
    documents 0.7 s, where walking newest first fills the window after ~1,700."""
    figures(1_000_000, {group_a.pk: 0.5}, {"the": 0.6, "invoice": 0.03, "zebra": 0.004, "from_anna": 0.2})
    assert fts5_plan_for("the", [group_a.pk]).scan
    assert fts5_plan_for("invoice", [group_a.pk]).scan  # 30,000 to rank, ~33,000 to walk (half visible)
    assert fts5_plan_for("invoice", None).scan  # an administrator walks half as far
    assert not fts5_plan_for("zebra", [group_a.pk]).scan  # 4,000 to rank, 250,000 to walk
    assert not fts5_plan_for("unheard", [group_a.pk]).scan  # not in the figures: rare
    assert not fts5_plan_for("the zebra", [group_a.pk]).scan  # the rare word bounds the ranking
    assert fts5_plan_for("from:anna", [group_a.pk]).scan  # a field word counts like a word
    assert fts5_plan_for("th*", [group_a.pk]).scan  # a prefix by the words it stands for
    assert not fts5_plan_for('"the the"', [group_a.pk]).scan  # a phrase may be rare: ranked
    assert not fts5_plan_for("the", [group_a.pk], allow_scan=False).scan  # relevance asked for
    assert not fts5_plan_for("-the", [group_a.pk]).scan  # only an exclusion: nothing to walk for
    fields = FieldDefinition.objects.all()
    word, exclusion, prefix = (search.parse_query(text, fields) for text in ("the", "-the", "th*"))
    with django_assert_num_queries(0):  # ranked either way: the figures are not read
        assert planner.plan_fts5(word, [group_a.pk], window=500, allow_scan=False) == planner.Plan()
        assert planner.plan_fts5(exclusion, [group_a.pk], window=500, allow_scan=True) == planner.Plan()
    with django_assert_num_queries(2):  # a prefix is weighed against the budget even when ranked
        assert planner.plan_fts5(prefix, [group_a.pk], window=500, allow_scan=False) == planner.Plan()
    SearchStatistic.objects.all().delete()
    assert fts5_plan_for("the", [group_a.pk]) == planner.Plan()  # no figures: ranked


def test_sqlite_refuses_prefixes_it_could_not_stop_in_time(group_a, settings):
    """FTS5 merges a prefix's words inside one step the progress handler cannot
    interrupt: ``s*`` with ~9 words per document of a million is ~2.6 s."""
    s_words = {f"s{a}{b}": 0.9 for a in "aeiou" for b in "nt"}  # 9 postings per document
    figures(1_000_000, {group_a.pk: 0.5}, {**s_words, "invoice": 0.03})
    settings.SEARCH_TIME_BUDGET_MS = 900
    for text in ("s*", "invoice s*", "invoice -s*"):
        for allow_scan in (True, False):
            with pytest.raises(search.SearchTooComplex), search.time_budget():
                fts5_plan_for(text, [group_a.pk], allow_scan=allow_scan)
    with search.time_budget():
        assert fts5_plan_for("inv*", [group_a.pk]) == fts5_plan_for("invoice", [group_a.pk])  # 30,000 to merge
    with search.time_budget(5):
        assert fts5_plan_for("s*", [group_a.pk]).scan  # within a longer budget
    # Outside a budget (a legal hold's search, an export's): it runs to its end.
    assert fts5_plan_for("s*", [group_a.pk]).scan


# --- a word and a date range: the range's months asked of the index ---------------------

MONTHS_2018_10_TO_2019_04 = [f"_m2018{m}" for m in ("10", "11", "12")] + [f"_m20190{m}" for m in range(1, 5)]


@pytest.fixture
def dated(group_a):
    blob = storage.put_bytes(b"x")
    return services.document_create(
        owner_group=group_a, values={"title": "x", "date": "2018-11-05"}, files=[services.NewFile(name="x", blob=blob)]
    )


def test_a_common_word_in_a_long_range_asks_the_index_for_the_months(group_a, dated, monkeypatch):
    """ "proposal" in 13 % of a million documents, 2018-10..2019-04 (7 months of
    0.76 %), a user who sees half: ranked and filtered by date, ~19,000 rows
    to read for 500 hits in the range; one by one in the range, ~3,800
    documents out of the pool; by its months, 183,000 postings and the hits
    (this search, measured by hand at a million: 0.94 s, 0.56 s and 0.22 s)."""
    monkeypatch.setattr(planner, "RANGE_PROBE", 0)  # the range as if too big to count
    figures(1_000_000, {group_a.pk: 0.5}, {"proposal": 0.13, **dict.fromkeys(MONTHS_2018_10_TO_2019_04, 0.0076)})
    with timezone.override("UTC"):
        plan = plan_for("proposal date:2018-10..2019-04", [group_a.pk])
        assert plan == planner.Plan(months=tuple(MONTHS_2018_10_TO_2019_04))
        assert plan_for("proposal date:2018-10..2019-04", [group_a.pk], allow_scan=False).months  # ranked too
        assert not plan_for("proposal", [group_a.pk]).months  # no range, no months
        # A rare word: its few hits are checked on the row; the months would only cost.
        assert plan_for("zebra date:2018-10..2019-04", [group_a.pk]) == planner.Plan()
        # A range that is most of the archive narrows nothing the months could help with.
        figures(1_000_000, {group_a.pk: 0.5}, {"proposal": 0.13, **dict.fromkeys(MONTHS_2018_10_TO_2019_04, 0.12)})
        assert not plan_for("proposal date:2018-10..2019-04", [group_a.pk]).months


def test_months_are_not_asked_while_entries_without_them_remain(group_a, dated, monkeypatch):
    monkeypatch.setattr(planner, "RANGE_PROBE", 0)
    figures(1_000_000, {group_a.pk: 0.5}, {"proposal": 0.13, **dict.fromkeys(MONTHS_2018_10_TO_2019_04, 0.0076)})
    SearchIndexState.objects.update_or_create(pk=1, defaults={"pending": True})
    with timezone.override("UTC"):
        assert not plan_for("proposal date:2018-10..2019-04", [group_a.pk]).months
        assert upgrade.upgrade() is True
        assert plan_for("proposal date:2018-10..2019-04", [group_a.pk]).months
