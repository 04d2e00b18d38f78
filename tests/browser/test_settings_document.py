"""The document-view settings, each changed through WebAdmin and checked in the
WebDMS (headless Chromium): extended icons, field columns, notes, combobox."""

from __future__ import annotations

import pytest

from archive import services
from archive.models import Document, FieldDefinition, FieldType
from tests.browser.settings_form import change_settings, log_in_as, visible_texts

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def report(make_document):
    return make_document(content=b"%PDF-1.4 report", name="report.pdf")


def toolbar(page) -> list[str]:
    return visible_texts(page, ".toolbar a, .toolbar button")


def test_hide_extended_icons_leaves_only_the_basic_actions(page, live_server, admin_user, report):
    log_in_as(page, live_server, admin_user)
    page.goto(f"/dms/doc/{report.pk}/")
    assert {"Download", "Open file", "Print"} <= set(toolbar(page))

    change_settings(page, hide_extended_icons=True)
    page.goto(f"/dms/doc/{report.pk}/")
    assert toolbar(page) == ["Table", "Copy access link", "Upload"]
    assert page.locator("#tab-view").is_visible()  # "view" is the View tab
    page.goto("/dms/")
    assert set(toolbar(page)) <= {"Copy access link", "Upload", "Search"}


def field_column_count(page) -> int:
    """How many columns the Fields tab's inputs are laid out in, as drawn."""
    return page.eval_on_selector_all(
        "#panel-fields .grid label.field",
        "labels => new Set(labels.map(l => Math.round(l.getBoundingClientRect().left))).size",
    )


def test_number_of_columns_for_fields(page, live_server, admin_user, report):
    log_in_as(page, live_server, admin_user)
    page.goto(f"/dms/doc/{report.pk}/#fields")
    assert field_column_count(page) == 1
    for columns in (3, 2):
        change_settings(page, field_columns=columns)
        page.goto(f"/dms/doc/{report.pk}/#fields")
        assert field_column_count(page) == columns
    # A narrow screen always gets one column.
    page.set_viewport_size({"width": 600, "height": 900})
    assert field_column_count(page) == 1


def test_show_note_field_hides_the_notes_and_keeps_them(page, live_server, admin_user, report):
    services.document_set_notes(report, "Call Mr. Muster before Friday.")
    log_in_as(page, live_server, admin_user)
    page.goto(f"/dms/doc/{report.pk}/")
    page.click("#tab-notes")
    assert page.input_value("#panel-notes textarea") == "Call Mr. Muster before Friday."

    change_settings(page, show_notes=False)
    page.goto(f"/dms/doc/{report.pk}/#notes")
    assert page.locator("#tab-notes").count() == 0
    assert page.locator("#panel-notes").count() == 0
    assert page.locator("#panel-view").is_visible()  # the #notes link falls back to View
    assert Document.objects.get(pk=report.pk).notes == "Call Mr. Muster before Friday."

    change_settings(page, show_notes=True)
    page.goto(f"/dms/doc/{report.pk}/#notes")
    assert page.input_value("#panel-notes textarea") == "Call Mr. Muster before Friday."


def suggestions(page, field: str) -> list[str]:
    """The values the browser offers while typing into the field (its datalist)."""
    return page.eval_on_selector(
        f"#id_{field}", "input => input.list ? Array.from(input.list.options).map(o => o.value) : []"
    )


def test_elements_in_combobox_fields(page, live_server, admin_user, make_document):
    FieldDefinition.objects.create(name="department", label="Department", type=FieldType.SELECTION)
    FieldDefinition.objects.create(name="project", label="Project", type=FieldType.SELECTION)
    for department, times in (("Sales", 3), ("Legal", 2), ("Support", 1)):
        for _ in range(times):
            make_document(values={"department": department, "project": "Alpenblick"})
    document = make_document(name="new.pdf")
    log_in_as(page, live_server, admin_user)
    page.goto(f"/dms/doc/{document.pk}/#fields")
    assert suggestions(page, "department") == []  # 0, the default: none

    change_settings(page, combobox_elements=2)
    page.goto(f"/dms/doc/{document.pk}/#fields")
    assert suggestions(page, "department") == ["Sales", "Legal"]  # most used first
    assert suggestions(page, "project") == ["Alpenblick"]  # values are per field
    # Typing filters the offered values; picking one saves it.
    page.fill("#id_department", "Le")
    page.fill("#id_department", "Legal")
    page.click("#panel-fields button[type=submit]")
    page.wait_for_selector(".messages:has-text('Fields saved.')")
    assert Document.objects.get(pk=document.pk).values["department"] == "Legal"

    change_settings(page, combobox_elements=5)
    page.goto(f"/dms/doc/{document.pk}/#fields")
    assert suggestions(page, "department") == ["Legal", "Sales", "Support"]
