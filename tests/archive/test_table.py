"""The WebDMS table's columns, posters and suggestions follow the archive settings."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from archive import selectors
from archive.models import ArchiveSettings, FieldDefinition, FieldType, PrimaryUsage
from archive.table import table_columns
from archive.thumbnails import posters_for


def names(settings: ArchiveSettings, *, reduced: bool) -> list[str]:
    return [f.name for f in table_columns(settings, selectors.field_definitions(), reduced=reduced)]


@pytest.fixture
def settings_(db) -> ArchiveSettings:
    return ArchiveSettings.load()


def test_each_primary_usage_leads_with_its_columns(settings_):
    settings_.primary_usage = PrimaryUsage.MAILS
    assert names(settings_, reduced=True)[:4] == ["number", "from", "subject", "date"]
    settings_.primary_usage = PrimaryUsage.MEDIA
    assert names(settings_, reduced=True)[:4] == ["number", "filename", "title", "date"]
    settings_.primary_usage = PrimaryUsage.DOCUMENTS
    assert names(settings_, reduced=True)[:4] == ["number", "title", "date", "owner"]


def test_the_usage_columns_are_part_of_the_reduced_table(settings_):
    # "File name" is not marked for the reduced table, but a media archive needs it.
    assert not FieldDefinition.objects.get(name="filename").in_reduced_table
    settings_.primary_usage = PrimaryUsage.MEDIA
    assert "filename" in names(settings_, reduced=True)
    settings_.primary_usage = PrimaryUsage.DOCUMENTS
    assert "filename" not in names(settings_, reduced=True)


def test_the_full_table_has_every_field_and_the_reduced_one_those_marked(settings_):
    everything = {f.name for f in FieldDefinition.objects.all()}
    assert set(names(settings_, reduced=False)) == everything
    reduced = names(settings_, reduced=True)
    assert "to" not in reduced and "created" not in reduced and "subject" in reduced


def test_internal_fields_leave_the_reduced_table_only(settings_):
    settings_.hide_internal_in_reduced = True
    internal = set(FieldDefinition.objects.filter(internal=True).values_list("name", flat=True))
    assert internal == {"number", "owner", "created", "modified"}
    assert not internal & set(names(settings_, reduced=True))
    assert internal <= set(names(settings_, reduced=False))


def test_suppressing_the_title_removes_it_from_both_tables(settings_):
    settings_.suppress_title = True
    assert "title" not in names(settings_, reduced=True)
    assert "title" not in names(settings_, reduced=False)


def test_the_title_width_is_in_fifteenths_of_a_pixel(settings_):
    settings_.title_width = 3000
    assert settings_.title_width_px == 200
    settings_.title_width = 4500
    assert settings_.title_width_px == 300


def test_posters_need_one_query_for_a_whole_page(make_document):
    docs = [make_document(content=bytes([i]) * 10, name=f"clip{i}.mp4") for i in range(5)]
    docs.append(make_document(content=b"\x89PNG", name="still.png"))
    docs.append(make_document(content=b"ID3", name="song.mp3"))
    with CaptureQueriesContext(connection) as queries:
        posters = posters_for(docs)
    assert len(queries) == 1
    assert [posters[d.pk].kind for d in docs] == ["video"] * 5 + ["image", "badge"]


def test_the_table_page_does_not_grow_queries_with_rows(client, alice, make_document):
    settings = ArchiveSettings.load()
    settings.primary_usage = PrimaryUsage.MEDIA
    settings.save()
    client.force_login(alice)
    make_document(name="one.mp4")
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("archive:table"))
    for i in range(10):
        make_document(content=bytes([i]), name=f"clip{i}.mp4")
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("archive:table"))
    assert len(many) == len(few)


@pytest.fixture
def colour(db) -> FieldDefinition:
    return FieldDefinition.objects.create(name="colour", label="Colour", type=FieldType.SELECTION)


@pytest.fixture
def size(db) -> FieldDefinition:
    return FieldDefinition.objects.create(name="size", label="Size", type=FieldType.SELECTION, choices="S\nM\nL\nXL")


def test_suggestions_are_the_most_used_values_first(alice, make_document, colour):
    for value, times in (("red", 1), ("blue", 3), ("green", 2), ("", 4)):
        for _ in range(times):
            make_document(values={"colour": value})
    definitions = selectors.field_definitions()
    assert selectors.field_suggestions(alice, definitions, 2) == {"colour": ["blue", "green"]}
    assert selectors.field_suggestions(alice, definitions, 10) == {"colour": ["blue", "green", "red"]}
    assert selectors.field_suggestions(alice, definitions, 0) == {}


def test_suggestions_are_per_field_and_fill_up_with_allowed_values(alice, make_document, colour, size):
    make_document(values={"colour": "red", "size": "L"})
    make_document(values={"colour": "L", "size": "L"})
    make_document(values={"size": "S"})
    suggestions = selectors.field_suggestions(alice, selectors.field_definitions(), 3)
    assert suggestions == {"colour": ["L", "red"], "size": ["L", "S", "M"]}


def test_suggestions_come_only_from_documents_the_user_may_see(alice, bob, make_document, group_b, colour):
    make_document(values={"colour": "secret-codename"}, owner_group=group_b)
    make_document(values={"colour": "red"})
    definitions = selectors.field_definitions()
    assert selectors.field_suggestions(alice, definitions, 5) == {"colour": ["red"]}
    assert selectors.field_suggestions(bob, definitions, 5) == {"colour": ["secret-codename"]}


def test_suggestions_cost_one_query_per_selection_field(alice, make_document, colour, size):
    make_document(values={"colour": "red", "size": "L"})
    definitions = selectors.field_definitions()
    with CaptureQueriesContext(connection) as queries:
        selectors.field_suggestions(alice, definitions, 5)
    # Whether the user is an auditor and their groups (documents_visible_to), then one per selection field.
    assert len(queries) == 4


@pytest.mark.parametrize(
    ("given", "page"),
    [("3", 3), ("9" * 30, 10_000), ("²", 1), ("①", 1), ("-2", 1), ("0", 1), ("1.5", 1), ("", 1), (None, 1)],
)
def test_a_page_number_from_the_address_is_bounded(given, page):
    from archive.paging import CappedPaginator, page_number

    assert page_number(given, CappedPaginator.max_page) == page


def test_a_page_far_past_the_end_shows_the_last_page(client, alice, make_document):
    make_document(name="only.txt")
    client.force_login(alice)
    response = client.get(reverse("archive:table"), {"page": "9" * 30})
    assert response.status_code == 200 and "only.txt" in response.content.decode()


def test_every_cell_links_to_its_document_and_yes_no_values_read_in_the_language(client, alice, make_document):
    """The cells as the table shows them: each one the document's link (built once
    per row), a yes/no field as a word of the user's language, nothing for no value."""
    FieldDefinition.objects.create(name="paid", label="Paid", type=FieldType.YESNO)
    FieldDefinition.objects.create(name="ref", label="Reference", type=FieldType.TEXT)
    paid = make_document(content=b"a", name="paid.pdf", values={"paid": True, "ref": "R-1"})
    open_ = make_document(content=b"b", name="open.pdf", values={"paid": False})
    client.force_login(alice)
    try:
        response = client.get(reverse("archive:table"), {"reduced": "0"}, HTTP_ACCEPT_LANGUAGE="de")
    finally:
        translation.activate(settings.LANGUAGE_CODE)  # the request's language stays active in the thread
    rows = {row.document.pk: row for row in response.context["rows"]}
    for document in (paid, open_):
        assert rows[document.pk].url == reverse("archive:document", args=[document.pk])
    shown = {pk: {c.name: value for c, value in row.cells} for pk, row in rows.items()}
    assert (shown[paid.pk]["paid"], shown[open_.pk]["paid"]) == ("ja", "nein")
    assert (shown[paid.pk]["ref"], shown[open_.pk]["ref"]) == ("R-1", "")
    html = response.content.decode()
    link = reverse("archive:document", args=[paid.pk])
    assert html.count(f'class="cell-link" href="{link}"') == len(rows[paid.pk].cells)
    assert f'href="{link}" tabindex="-1" title="ja">ja</a>' in html
