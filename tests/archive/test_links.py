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


# --- no 500 from any number (issue 11) ------------------------------------------------------


@pytest.mark.parametrize("ids", ["9" * 30, "9" * 19, f"1,{'9' * 30}", "0", "-5"])
def test_numbers_no_document_can_have_are_not_found(client, alice, doc, ids):
    client.force_login(alice)
    expected = 400 if ids.startswith("-") else 404  # "-5" is not a document number at all
    assert client.get(reverse("archive:links"), {"ids": ids}).status_code == expected
    client.logout()
    assert client.get(reverse("archive:links"), {"ids": ids}).status_code in (expected, 401)


@pytest.mark.parametrize("ids", ["²", "①", "1,²", "1_000", "0x10", " ", "1,,2"])
def test_ids_that_only_look_like_numbers_are_a_400(client, alice, doc, ids):
    client.force_login(alice)
    response = client.get(reverse("archive:links"), {"ids": ids})
    assert response.status_code == (404 if ids == "1,,2" else 400), ids


def test_a_selection_of_links_is_bounded(client, alice, doc):
    client.force_login(alice)
    response = client.get(reverse("archive:links"), {"ids": ",".join([str(doc.pk)] * 1001)})
    assert response.status_code == 400 and "at most 1000" in response.json()["error"]


@pytest.mark.parametrize("go", ["²", "①", "٣", "9" * 30, "9" * 20, "-1", "1.0", "abc"])
@pytest.mark.parametrize("signed_in", [True, False], ids=["user", "visitor"])
def test_a_legacy_link_with_something_else_than_a_number_is_not_found(client, alice, go, signed_in):
    if signed_in:
        client.force_login(alice)
    response = client.get("/perl/avclient/index.pl", {"target": "new", "go": go})
    assert response.status_code == 404
    assert 'class="card error-page"' in response.content.decode()


def test_a_legacy_link_without_a_number_opens_the_archive(client):
    assert client.get("/perl/avclient/index.pl")["Location"] == reverse("archive:table")
    assert client.get("/perl/avclient/index.pl?target=new&go=")["Location"] == reverse("archive:table")


@pytest.mark.parametrize("number", ["9" * 19, "9" * 30, "18446744073709551616"])
def test_a_document_url_with_a_number_too_large_for_any_document_is_a_404(client, alice, number):
    client.force_login(alice)
    assert client.get(f"/dms/doc/{number}/").status_code == 404
    assert client.get(f"/dms/doc/1/file/{number}/").status_code == 404
