"""Field for publishing (SPEC §4, issue 5 item 7): a published document opens
through its access link without login — read-only, View tab only, its own
files only; unpublished and withdrawn documents ask for a login; every public
open is logged."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from archive import services, storage
from archive.models import ArchiveSettings, Document, FieldDefinition, FieldType, PublicAccess


@pytest.fixture
def published_field(db) -> FieldDefinition:
    field = FieldDefinition.objects.create(name="published", label="Published", type=FieldType.YESNO)
    settings = ArchiveSettings.load()
    settings.publish_field = field
    settings.save()
    return field


@pytest.fixture
def flyer(make_document, published_field) -> Document:
    return make_document(content=b"%PDF-1.4 flyer", name="flyer.pdf", values={"published": True})


@pytest.fixture
def contract(make_document, published_field) -> Document:
    return make_document(content=b"confidential", name="contract.txt", values={"published": False})


def legacy_url(document: Document) -> str:
    return f"/perl/avclient/index.pl?target=new&go={document.pk}"


def document_url(document: Document) -> str:
    return reverse("archive:document", args=[document.pk])


def file_url(document: Document, file_id: int | None = None) -> str:
    return reverse("archive:file", args=[document.pk, file_id or document.original().pk])


def assert_asks_for_login(response, url: str) -> None:
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")
    assert url.split("?")[0] in response["Location"]


def test_a_visitor_opens_a_published_document_through_its_access_link(client, flyer):
    response = client.get(legacy_url(flyer), follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == document_url(flyer)
    body = response.content.decode()
    assert 'id="tab-view"' in body
    assert file_url(flyer) in body  # the viewer shows the file
    response = client.get(file_url(flyer))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"%PDF-1.4 flyer"


def test_the_public_view_is_read_only_with_the_view_tab_only(client, flyer):
    body = client.get(document_url(flyer)).content.decode()
    for absent in (
        'id="tab-fields"',
        'id="tab-notes"',
        'id="tab-files"',
        '<form method="post" action="/dms',
        reverse("archive:upload"),
        reverse("archive:document_fields", args=[flyer.pk]),
    ):
        assert absent not in body, absent
    response = client.post(reverse("archive:document_fields", args=[flyer.pk]), {"title": "defaced"})
    assert_asks_for_login(response, reverse("archive:document_fields", args=[flyer.pk]))
    response = client.post(reverse("archive:document_notes", args=[flyer.pk]), {"notes": "defaced"})
    assert response.status_code == 302
    flyer.refresh_from_db()
    assert flyer.title == "flyer.pdf" and flyer.notes == ""


def test_the_public_view_links_to_no_other_document(client, flyer, contract):
    body = client.get(document_url(flyer)).content.decode()
    numbers = {int(n) for n in re.findall(r"/dms/doc/(\d+)/", body)}
    assert numbers == {flyer.pk}
    assert f"go={contract.pk}" not in body


def test_a_visitor_gets_only_the_published_documents_own_files(client, flyer, contract):
    foreign_file = contract.original().pk
    # Another document's file through the published document's URL: not there.
    assert client.get(file_url(flyer, foreign_file)).status_code == 404
    # The other document itself: login.
    assert_asks_for_login(client.get(file_url(contract)), file_url(contract))


def test_an_unpublished_document_asks_for_a_login_like_a_missing_one(client, contract):
    for url in (document_url(contract), file_url(contract)):
        assert_asks_for_login(client.get(url), url)
    missing = reverse("archive:document", args=[contract.pk + 1000])
    assert_asks_for_login(client.get(missing), missing)
    response = client.get(reverse("archive:links") + f"?ids={contract.pk}")
    assert response.status_code == 404
    assert PublicAccess.objects.count() == 0


def test_unsetting_the_field_withdraws_the_document_at_once(client, flyer):
    assert client.get(document_url(flyer)).status_code == 200
    services.document_update_values(flyer, {"published": False})
    assert_asks_for_login(client.get(document_url(flyer)), document_url(flyer))
    assert_asks_for_login(client.get(file_url(flyer)), file_url(flyer))


def test_clearing_the_field_for_publishing_withdraws_every_document(client, flyer):
    settings = ArchiveSettings.load()
    settings.publish_field = None
    settings.save()
    assert_asks_for_login(client.get(document_url(flyer)), document_url(flyer))


def test_public_responses_are_not_kept_in_any_cache(client, flyer):
    for url in (document_url(flyer), file_url(flyer)):
        response = client.get(url)
        assert response.status_code == 200
        assert response["Cache-Control"] == "no-store"


def test_every_public_open_is_logged(client, flyer):
    client.get(document_url(flyer), HTTP_USER_AGENT="Newsletter reader", REMOTE_ADDR="203.0.113.7")
    client.get(file_url(flyer), HTTP_USER_AGENT="Newsletter reader", REMOTE_ADDR="203.0.113.7")
    client.get(document_url(flyer), REMOTE_ADDR="198.51.100.2")
    log = list(PublicAccess.objects.filter(document=flyer).order_by("pk"))
    assert [(a.ip, a.path) for a in log] == [
        ("203.0.113.7", document_url(flyer)),
        ("203.0.113.7", file_url(flyer)),
        ("198.51.100.2", document_url(flyer)),
    ]
    assert log[0].user_agent == "Newsletter reader"


def test_the_owner_opening_their_document_is_not_a_public_open(client, alice, flyer):
    client.force_login(alice)
    body = client.get(document_url(flyer)).content.decode()
    assert 'id="tab-fields"' in body
    assert PublicAccess.objects.count() == 0


def test_a_user_of_another_group_sees_a_published_document_read_only(client, bob, flyer, contract):
    client.force_login(bob)
    body = client.get(document_url(flyer)).content.decode()
    assert 'id="tab-view"' in body and 'id="tab-fields"' not in body
    assert PublicAccess.objects.filter(document=flyer).count() == 1
    assert client.get(document_url(contract)).status_code == 404


def test_a_visitor_gets_the_newest_version_only(client, flyer, group_a):
    settings = ArchiveSettings.load()
    settings.versioning = True
    settings.version_key_field = FieldDefinition.objects.get(name="filename")
    settings.save()
    old_file = flyer.original().pk
    services.document_create_from_upload(
        name="flyer.pdf",
        blob=storage.put_bytes(b"%PDF-1.4 flyer v2"),
        content_type="application/pdf",
        owner_group=group_a,
    )
    flyer.refresh_from_db()
    newest = flyer.original()
    assert newest.pk != old_file
    body = client.get(document_url(flyer)).content.decode()
    assert file_url(flyer, newest.pk) in body and file_url(flyer, old_file) not in body
    assert client.get(file_url(flyer, newest.pk)).status_code == 200
    assert client.get(file_url(flyer, old_file)).status_code == 404


def test_every_public_route_is_hardened_in_the_one_access_entry_point(client, group_a, published_field):
    """Document, file, mail body and mail part of a published mail: each
    visitor request logged and kept out of caches (``archive/access.py``)."""
    from tests.archive.mail_samples import archive_mail, html_mail

    mail = archive_mail(
        html_mail('<p>news</p><img src="cid:logo@example.com" alt="logo">'), group_a, values={"published": True}
    )
    body = client.get(reverse("archive:mail_body", args=[mail.pk]))
    (part,) = set(re.findall(r"/mail/part/([0-9.]+)/", body.content.decode()))
    urls = [
        document_url(mail),
        file_url(mail),
        reverse("archive:mail_body", args=[mail.pk]),
        reverse("archive:mail_part", args=[mail.pk, part]),
    ]
    PublicAccess.objects.all().delete()
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Cache-Control"] == "no-store" and response["X-Robots-Tag"] == "noindex", url
    assert list(PublicAccess.objects.order_by("pk").values_list("path", flat=True)) == urls
