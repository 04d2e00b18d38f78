"""Who sees what: alice sees her group's documents; for bob they do not exist."""

from __future__ import annotations

import pytest
from django.urls import reverse

from archive import selectors
from archive.models import Document


@pytest.fixture
def doc(make_document):
    return make_document(content=b"alice's contract", name="contract.txt")


def routes(doc: Document, number: int | None = None) -> list[tuple[str, str, dict]]:
    """Every route that touches a document, for ``doc`` or, with ``number``, for
    another number but the same file id (a document that does not exist)."""
    number = doc.pk if number is None else number
    file_id = doc.files.get().pk
    return [
        ("get", reverse("archive:document", args=[number]), {}),
        ("get", reverse("archive:file", args=[number, file_id]), {}),
        ("get", reverse("archive:file", args=[number, file_id]) + "?download=1", {}),
        ("get", reverse("archive:links") + f"?ids={number}", {}),
        ("post", reverse("archive:document_fields", args=[number]), {"title": "hacked"}),
        ("post", reverse("archive:document_notes", args=[number]), {"notes": "hacked"}),
    ]


def test_alice_sees_her_groups_documents(client, alice, doc):
    client.force_login(alice)
    for method, url, data in routes(doc):
        response = getattr(client, method)(url, data)
        assert response.status_code in (200, 302), (url, response.status_code)
    assert selectors.document_get_for_user(alice, doc.pk) == doc


def test_bob_gets_404_on_every_route_exactly_like_a_missing_document(client, bob, doc):
    client.force_login(bob)
    for (method, url, data), (_, missing_url, _) in zip(routes(doc), routes(doc, doc.pk + 1000), strict=True):
        response = getattr(client, method)(url, data)
        response_missing = getattr(client, method)(missing_url, data)
        assert response.status_code == 404, url
        assert response_missing.status_code == 404, missing_url
        assert response.content == response_missing.content
    doc.refresh_from_db()
    assert doc.title == "contract.txt" and doc.notes == ""


def test_a_file_of_another_document_is_not_reachable_through_ones_own(client, alice, bob, doc, make_document, group_b):
    bobs = make_document(content=b"bob's secret", name="secret.txt", owner_group=group_b)
    client.force_login(alice)
    url = reverse("archive:file", args=[doc.pk, bobs.files.get().pk])
    assert client.get(url).status_code == 404


def test_the_table_lists_only_visible_documents(client, alice, bob, doc, make_document, group_b):
    make_document(content=b"bob's", name="bobs-file.txt", owner_group=group_b)
    client.force_login(alice)
    body = client.get(reverse("archive:table")).content.decode()
    assert "contract.txt" in body and "bobs-file.txt" not in body
    client.force_login(bob)
    body = client.get(reverse("archive:table")).content.decode()
    assert "contract.txt" not in body and "bobs-file.txt" in body


def test_a_link_selection_with_one_foreign_document_is_refused_whole(client, alice, doc, make_document, group_b):
    foreign = make_document(name="x.txt", owner_group=group_b)
    client.force_login(alice)
    response = client.get(reverse("archive:links") + f"?ids={doc.pk},{foreign.pk}")
    assert response.status_code == 404


def test_superusers_see_everything(client, admin_user, doc):
    client.force_login(admin_user)
    assert client.get(reverse("archive:document", args=[doc.pk])).status_code == 200


def test_logged_out_visitors_are_sent_to_login_for_every_route(client, doc):
    for method, url, data in routes(doc):
        response = getattr(client, method)(url, data)
        if url.startswith(reverse("archive:links")):
            assert response.status_code == 404  # JSON endpoint: no redirect, nothing disclosed
            continue
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login"))


def test_upload_refuses_a_group_the_user_is_not_in(client, alice, group_b):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(alice)
    response = client.post(
        reverse("archive:upload"),
        {
            "files": [SimpleUploadedFile("a.txt", b"a")],
            "owner_group": group_b.pk,
        },
    )
    assert response.status_code == 200  # the form again, with an error
    assert Document.objects.count() == 0


def test_inactive_users_see_nothing(alice, doc):
    alice.is_active = False
    alice.save()
    assert not selectors.documents_visible_to(alice).exists()
