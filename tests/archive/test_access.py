"""Who sees what: alice sees her group's documents; for bob they do not exist.

The routes come from the project's ``urlpatterns`` (every pattern resolved,
its kwargs filled), so a new route is covered without anyone remembering to
add it: a route with a document number must go through ``@document_access``
and have its expected answer for alice below, and every other route must
send a visitor to the login page unless it is listed as public."""

from __future__ import annotations

import dataclasses
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from archive import selectors
from archive.models import Document
from tests.archive.mail_samples import archive_mail, html_mail


@dataclasses.dataclass(frozen=True)
class Route:
    name: str  # namespace:name
    kwargs: tuple[str, ...]
    callback: object


def project_routes() -> list[Route]:
    """Every named URL pattern of the project, except Django's admin site
    (staff only; its access is Django's own) and the REST API (token or
    session, 401 not a login page; tests/api/test_access.py covers its routes)."""
    found: list[Route] = []

    def walk(patterns: list, namespace: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                if p.app_name in ("admin", "api"):
                    continue
                walk(p.url_patterns, f"{namespace}{p.namespace}:" if p.namespace else namespace)
            elif isinstance(p, URLPattern) and p.name:
                kwargs = tuple(p.pattern.converters) if hasattr(p.pattern, "converters") else ()
                found.append(Route(namespace + p.name, kwargs, p.callback))

    walk(get_resolver().url_patterns, "")
    return found


DOCUMENT_ROUTES = [r for r in project_routes() if "number" in r.kwargs]

# What alice gets on each route of her own mail document (a POST route: the
# redirect back to the document after saving). A new document route needs its line here.
ALICE_EXPECTS = {
    "archive:document": ("get", 200),
    "archive:file": ("get", 200),
    "archive:document_fields": ("post", 302),
    "archive:document_notes": ("post", 302),
    "archive:mail_body": ("get", 200),
    "archive:mail_part": ("get", 200),
}
POST_DATA = {"archive:document_fields": {"title": "hacked"}, "archive:document_notes": {"notes": "hacked"}}

# Routes a visitor without session may open (everything else: the login page).
PUBLIC_ROUTES = {
    "login": 200,
    "healthz": 200,
    "legacy_link": 302,  # to the document, which then asks for a login
    "archive:links": 400,  # JSON; without ids a 400 (tested below with ids)
}


@pytest.fixture
def doc(group_a) -> Document:
    return archive_mail(html_mail('<p>alice\'s contract</p><img src="cid:logo@example.com" alt="logo">'), group_a)


def url_for(route: Route, doc: Document, number: int | None = None, part: str = "1") -> str:
    values = {
        "number": doc.pk if number is None else number,
        "file_id": doc.files.get().pk,
        "part": part,
        "pk": 1,
        "kind": "imap",
    }
    return reverse(route.name, kwargs={k: values[k] for k in route.kwargs})


def a_part_of(client, doc: Document) -> str:
    """A part of the mail its body frame shows (the inline image)."""
    html = client.get(reverse("archive:mail_body", args=[doc.pk])).content.decode()
    return re.findall(r"/mail/part/([0-9.]+)/", html)[0]


def request(client, route: Route, url: str):
    method = ALICE_EXPECTS[route.name][0]
    return getattr(client, method)(url, POST_DATA.get(route.name, {}))


def test_the_route_list_comes_from_the_urlpatterns():
    names = {r.name for r in DOCUMENT_ROUTES}
    assert names == set(ALICE_EXPECTS), "a document route without its expected answer in ALICE_EXPECTS"
    assert len(project_routes()) > len(DOCUMENT_ROUTES) + 10


@pytest.mark.parametrize("route", DOCUMENT_ROUTES, ids=lambda r: r.name)
def test_every_document_route_goes_through_the_one_access_check(route):
    assert getattr(route.callback, "document_access", False), f"{route.name}: add @document_access"


def test_alice_gets_exactly_the_expected_answer_on_every_route(client, alice, doc):
    client.force_login(alice)
    part = a_part_of(client, doc)
    for route in DOCUMENT_ROUTES:
        url = url_for(route, doc, part=part)
        assert request(client, route, url).status_code == ALICE_EXPECTS[route.name][1], url
    download = reverse("archive:file", args=[doc.pk, doc.files.get().pk]) + "?download=1"
    assert client.get(download).status_code == 200
    links = client.get(reverse("archive:links") + f"?ids={doc.pk}")
    assert links.status_code == 200 and links.json()["links"][0]["number"] == doc.pk
    assert selectors.document_get_for_user(alice, doc.pk) == doc


def test_bob_gets_404_on_every_route_exactly_like_a_missing_document(client, alice, bob, doc):
    client.force_login(alice)
    part = a_part_of(client, doc)
    client.force_login(bob)
    for route in DOCUMENT_ROUTES:
        response = request(client, route, url_for(route, doc, part=part))
        response_missing = request(client, route, url_for(route, doc, doc.pk + 1000, part=part))
        assert response.status_code == 404, route.name
        assert response_missing.status_code == 404, route.name
        assert response.content == response_missing.content, route.name
    assert client.get(reverse("archive:links") + f"?ids={doc.pk}").status_code == 404
    doc.refresh_from_db()
    assert doc.title == "mail" and doc.notes == ""


def test_logged_out_visitors_are_sent_to_login_for_every_document_route(client, doc):
    for route in DOCUMENT_ROUTES:
        url = url_for(route, doc)
        response = request(client, route, url)
        assert response.status_code == 302, route.name
        assert response["Location"] == f"{reverse('login')}?next={url}", route.name
    # The JSON endpoint: no redirect, nothing disclosed.
    assert client.get(reverse("archive:links") + f"?ids={doc.pk}").status_code == 404


def test_every_other_route_asks_a_visitor_to_log_in_unless_it_is_public(client, doc):
    others = [r for r in project_routes() if r not in DOCUMENT_ROUTES]
    assert set(PUBLIC_ROUTES) <= {r.name for r in others}
    for route in others:
        url = url_for(route, doc)
        response = client.get(url)
        if route.name in PUBLIC_ROUTES:
            assert response.status_code == PUBLIC_ROUTES[route.name], route.name
            continue
        if route.name == "logout":
            assert response.status_code == 405  # POST only
            continue
        assert response.status_code == 302, route.name
        assert response["Location"].startswith(f"{reverse('login')}?next="), route.name


def test_a_file_of_another_document_is_not_reachable_through_ones_own(client, alice, bob, doc, make_document, group_b):
    bobs = make_document(content=b"bob's secret", name="secret.txt", owner_group=group_b)
    client.force_login(alice)
    url = reverse("archive:file", args=[doc.pk, bobs.files.get().pk])
    assert client.get(url).status_code == 404


def test_the_table_lists_only_visible_documents(client, alice, bob, make_document, group_b):
    make_document(content=b"alice's", name="contract.txt")
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


def test_the_integrity_pages_are_for_administrators_only(client, alice, admin_user, doc):
    routes = [r for r in project_routes() if r.name.startswith("integrity:")]
    assert routes
    for route in routes:
        url = url_for(route, doc)
        client.force_login(alice)
        assert client.get(url).status_code == 403, route.name
        client.force_login(admin_user)
        assert client.get(url).status_code == 200, route.name
