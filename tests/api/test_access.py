"""Who sees what through the API: the same access check as the WebDMS pages.

The routes come from the api app's ``urlpatterns``: a new route without its
expected answers below fails the first test."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, get_resolver, reverse
from rest_framework.test import APIClient

from api import urls as api_urls
from mailsources.models import MailSource, SourceKind
from tests.integrity.auditors import make_auditor

ROUTES = [p.name for p in api_urls.urlpatterns if isinstance(p, URLPattern)]

# route → (method, alice's answer on her own document, admin's answer, the auditor's)
EXPECTS = {
    "documents": ("get", 200, 200, 200),
    "document": ("get", 200, 200, 200),
    "file": ("get", 200, 200, 200),
    "links": ("get", 200, 200, 200),
    "sources": ("get", 403, 200, 403),
    "source": ("get", 403, 200, 403),
    "source_runs": ("get", 403, 200, 403),
    "source_sync": ("post", 403, 202, 403),
    "schema": ("get", 200, 200, 200),
    "docs": ("get", 200, 200, 200),
}
DOCUMENT_ROUTES = {"document", "file", "links"}


@pytest.fixture
def source(group_a) -> MailSource:
    return MailSource.objects.create(kind=SourceKind.IMAP, name="box", owner_group=group_a, host="h", username="u")


def url_for(name: str, doc, source, number=None, file_id=None) -> str:
    number = doc.pk if number is None else number
    file_id = doc.files.get().pk if file_id is None else file_id
    args = {
        "document": [number],
        "file": [number, file_id],
        "source": [source.pk],
        "source_runs": [source.pk],
        "source_sync": [source.pk],
    }.get(name, [])
    url = reverse(f"api:{name}", args=args)
    return url + f"?ids={number}" if name == "links" else url


def call(client, name, url):
    return getattr(client, EXPECTS[name][0])(url)


def test_every_api_route_has_its_expected_answers():
    assert set(ROUTES) == set(EXPECTS)
    included = [p for p in get_resolver().url_patterns if getattr(p, "namespace", None) == "api"]
    assert len(included) == 1 and reverse("api:documents") == "/api/v1/documents/"


def test_alice_the_admin_and_the_auditor_get_exactly_the_expected_answers(
    alice, admin_user, auditor, make_document, source, api_as
):
    doc = make_document()
    for user, column in ((alice, 1), (admin_user, 2), (auditor, 3)):
        client = api_as(user, ("read", "upload", "admin") if user.is_staff else ("read", "upload"))
        for name in ROUTES:
            response = call(client, name, url_for(name, doc, source))
            assert response.status_code == EXPECTS[name][column], (user, name, response.content[:200])


def test_bob_gets_404_on_alices_document_exactly_like_a_missing_one(alice, bob, make_document, source, api_as):
    doc = make_document()
    client = api_as(bob)
    for name in DOCUMENT_ROUTES:
        seen = call(client, name, url_for(name, doc, source))
        missing = call(client, name, url_for(name, doc, source, number=doc.pk + 1000))
        assert seen.status_code == missing.status_code == 404, name
        assert seen.content == missing.content, name
    huge = call(client, "document", url_for("document", doc, source, number=10**30))
    assert huge.status_code == 404 and huge.content == seen.content
    assert client.get(reverse("api:documents")).json()["results"] == []


def test_a_file_of_another_document_is_not_reachable_through_ones_own(alice, make_document, group_b, source, api_as):
    mine = make_document()
    theirs = make_document(content=b"bob's secret", name="secret.txt", owner_group=group_b)
    response = api_as(alice).get(url_for("file", mine, source, file_id=theirs.files.get().pk))
    assert response.status_code == 404


def test_a_published_document_is_still_404_for_others_in_the_api(alice, bob, make_document, source, api_as):
    """The API has no visitors' view: what is not the user's own does not exist."""
    from archive.models import ArchiveSettings, FieldDefinition, FieldType

    field = FieldDefinition.objects.create(name="public", label="Public", type=FieldType.YESNO)
    settings = ArchiveSettings.load()
    settings.publish_field = field
    settings.save()
    doc = make_document(values={"public": True})
    assert api_as(bob).get(url_for("document", doc, source)).status_code == 404


def test_visitors_without_credentials_get_401_everywhere(make_document, source):
    doc = make_document()
    client = APIClient()
    for name in ROUTES:
        response = call(client, name, url_for(name, doc, source))
        assert response.status_code in (401, 403), name
        assert b"alice" not in response.content and b"hello" not in response.content


def test_inactive_users_tokens_stop_working(alice, make_document, source, api_as):
    client = api_as(alice)
    alice.is_active = False
    alice.save()
    assert client.get(reverse("api:documents")).status_code == 401


def test_the_auditor_reads_through_the_api_but_uploads_and_syncs_nothing(auditor, make_document, source, api_as):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from archive.models import Document

    doc = make_document()  # alice's group; the auditor is not in it
    client = api_as(auditor)
    assert client.get(url_for("document", doc, source)).json()["number"] == doc.pk
    upload = client.post(reverse("api:documents"), {"files": [SimpleUploadedFile("a.txt", b"a")]}, format="multipart")
    assert upload.status_code == 403 and b"read-only" in upload.content
    staff_auditor = make_auditor("dave", staff=True)
    sync = api_as(staff_auditor, ("read", "admin")).post(url_for("source_sync", doc, source))
    assert sync.status_code == 403
    assert api_as(staff_auditor, ("read", "admin")).get(url_for("sources", doc, source)).status_code == 200
    assert Document.objects.count() == 1
    source.refresh_from_db()
    assert source.queued_at is None
