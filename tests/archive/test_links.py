"""Access links: the copy-link endpoint, the title rule and the legacy URL."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from archive.links import validate_dns_name
from archive.models import ArchiveSettings, FieldDefinition


@pytest.fixture
def doc(make_document):
    return make_document(name="viastockalperhd.mp4")


def set_link_settings(dns: str, title_field: str | None) -> None:
    settings = ArchiveSettings.load()
    settings.dns_name = dns
    settings.link_title_field = FieldDefinition.objects.get(name=title_field) if title_field else None
    settings.save()


def test_the_endpoint_returns_title_url_and_both_clipboard_flavours(client, alice, doc):
    set_link_settings("http://192.168.0.233", "filename")
    client.force_login(alice)
    data = client.get(reverse("archive:links") + f"?ids={doc.pk}").json()
    url = f"http://192.168.0.233/perl/avclient/index.pl?target=new&go={doc.pk}"
    assert data["links"] == [{"number": doc.pk, "title": "viastockalperhd.mp4", "url": url}]
    assert data["text"] == f"viastockalperhd.mp4\n{url}"
    assert data["html"] == f'<a href="{url.replace("&", "&amp;")}">viastockalperhd.mp4</a>'
    assert data["configured"] is True


def test_without_title_field_the_title_line_is_number_colon_title(client, alice, doc):
    set_link_settings("https://archive.example.com", None)
    doc.values["title"] = "Alpine <video>"
    doc.title = "Alpine <video>"
    doc.save()
    client.force_login(alice)
    data = client.get(reverse("archive:links") + f"?ids={doc.pk}").json()
    assert data["text"].split("\n")[0] == f"{doc.pk}: Alpine <video>"
    assert "Alpine &lt;video&gt;" in data["html"]


def test_without_dns_name_the_browsers_address_is_used(client, alice, doc):
    set_link_settings("", "filename")
    client.force_login(alice)
    data = client.get(reverse("archive:links") + f"?ids={doc.pk}", HTTP_HOST="localhost").json()
    assert data["links"][0]["url"] == f"http://localhost/perl/avclient/index.pl?target=new&go={doc.pk}"
    assert data["configured"] is False


def test_several_documents_give_one_pair_each_in_the_order_asked(client, alice, make_document):
    set_link_settings("https://a.example", "filename")
    first, second = make_document(name="one.txt"), make_document(name="two.txt")
    client.force_login(alice)
    data = client.get(reverse("archive:links") + f"?ids={second.pk},{first.pk}").json()
    assert data["text"].split("\n") == [
        "two.txt",
        f"https://a.example/perl/avclient/index.pl?target=new&go={second.pk}",
        "one.txt",
        f"https://a.example/perl/avclient/index.pl?target=new&go={first.pk}",
    ]


def test_bad_ids_are_a_clear_400(client, alice):
    client.force_login(alice)
    assert client.get(reverse("archive:links") + "?ids=abc").status_code == 400
    assert client.get(reverse("archive:links")).status_code == 400


def test_the_legacy_url_redirects_to_the_document_and_through_login(client, alice, doc):
    legacy = f"/perl/avclient/index.pl?target=new&go={doc.pk}"
    response = client.get(legacy)
    assert response.status_code == 302 and response["Location"] == f"/dms/doc/{doc.pk}/"
    response = client.get(response["Location"])
    assert response["Location"] == f"/login/?next=/dms/doc/{doc.pk}/"
    response = client.post(
        "/login/",
        {
            "username": "alice",
            "password": "alice-pass-123",
            "next": f"/dms/doc/{doc.pk}/",
        },
    )
    assert response["Location"] == f"/dms/doc/{doc.pk}/"
    assert client.get(response["Location"]).status_code == 200


def test_the_legacy_url_says_nothing_about_whether_a_document_exists(client, doc):
    assert client.get("/perl/avclient/index.pl?target=new&go=999999")["Location"] == "/dms/doc/999999/"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "https:/\\evil.example"])
def test_next_never_leads_off_site(client, alice, target):
    response = client.post("/login/", {"username": "alice", "password": "alice-pass-123", "next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("archive:table")


@pytest.mark.parametrize(
    "value",
    [
        "http://192.168.0.233",
        "https://archivistaimnetz.ch",
        "https://archive.example.com:8443",
        "http://[::1]:8000",
        "",
    ],
)
def test_valid_dns_names(value):
    validate_dns_name(value)


@pytest.mark.parametrize(
    "value",
    [
        "192.168.0.233",
        "ftp://host",
        "https://host/path",
        "https://host?x=1",
        "https://host#f",
        "https://user@host",
        "https://",
        "https://bad_host!",
        "javascript:alert(1)",
        "https://host:99999",
    ],
)
def test_invalid_dns_names(value):
    with pytest.raises(ValidationError):
        validate_dns_name(value)
