"""Archive administration: every setting of SPEC §4, validated, admins only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from archive.models import ArchiveSettings, FieldDefinition

URL = reverse("webadmin:archive_settings")

LABELS = [
    "Primary archive usage",
    "Layout (Theme)",
    "Hide extended icons",
    "Number of columns for fields (1,2,3)",
    "Start with reduced table",
    "Hide internal fields in reduced table",
    "Suppress field &#x27;Title&#x27; in main view",
    "Width of field &#x27;Title&#x27; in table",
    "Field for publishing",
    "Save filename in field",
    "Versioning",
    "Field for version key",
    "Elements in combobox fields (0-x)",
    "Show note field",
    "DNS name for API call",
    "Title field for API link (Ctrl+C WebDMS)",
]


def valid_form(**overrides) -> dict:
    data = {
        "primary_usage": "documents",
        "theme": "bright",
        "field_columns": "1",
        "title_width": "3000",
        "combobox_elements": "0",
        "show_notes": "on",
        "dns_name": "http://192.168.0.233",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_page_shows_every_setting_under_the_original_label(client, admin_user):
    client.force_login(admin_user)
    page = client.get(URL).content.decode()
    for label in LABELS:
        assert f">{label}</label>" in page, label


def test_non_administrators_cannot_open_or_change_it(client, alice):
    client.force_login(alice)
    assert client.get(URL).status_code == 403  # the styled 403 page, not a login loop
    client.post(URL, valid_form(dns_name="https://evil.example"))
    assert ArchiveSettings.load().dns_name == ""


def test_a_valid_form_is_saved(client, admin_user):
    client.force_login(admin_user)
    published = FieldDefinition.objects.create(name="published", label="Published", type="yesno")
    response = client.post(
        URL,
        valid_form(
            field_columns="3",
            title_width="4500",
            publish_field=str(published.pk),
            link_title_field=str(FieldDefinition.objects.get(name="filename").pk),
            dns_name="https://archive.example.com/",
        ),
    )
    assert response.status_code == 302
    settings = ArchiveSettings.load()
    assert settings.field_columns == 3
    assert settings.title_width_px == 300
    assert settings.publish_field == published
    assert settings.dns_name == "https://archive.example.com"
    assert settings.link_title_field.name == "filename"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"dns_name": "192.168.0.233"}, "dns_name"),
        ({"dns_name": "https://host/perl"}, "dns_name"),
        ({"dns_name": "https://host?go=1"}, "dns_name"),
        ({"field_columns": "4"}, "field_columns"),
        ({"field_columns": "0"}, "field_columns"),
        ({"title_width": "0"}, "title_width"),
        ({"title_width": "-5"}, "title_width"),
        ({"title_width": "wide"}, "title_width"),
        ({"combobox_elements": "-1"}, "combobox_elements"),
        ({"theme": "neon"}, "theme"),
        ({"versioning": "on"}, "version_key_field"),
    ],
)
def test_bad_values_are_refused_with_a_message_and_nothing_is_saved(client, admin_user, overrides, field):
    client.force_login(admin_user)
    response = client.post(URL, valid_form(**overrides))
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert ArchiveSettings.load().dns_name == ""


def test_the_publishing_field_must_be_a_yes_no_field(client, admin_user):
    client.force_login(admin_user)
    title = FieldDefinition.objects.get(name="title")
    response = client.post(URL, valid_form(publish_field=str(title.pk)))
    assert "publish_field" in response.context["form"].errors


def test_the_form_needs_a_csrf_token(admin_user):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(admin_user)
    assert csrf_client.post(URL, valid_form()).status_code == 403
