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
from django.contrib.auth.models import Group, Permission
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from archive import selectors
from archive.models import Document
from mailsources.models import MailSource, SourceKind
from tests.archive.mail_samples import archive_mail, html_mail
from tests.integrity.auditors import make_auditor


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

# The auditor (read-only, every document) on alice's document: reads, never writes.
AUDITOR_EXPECTS = {
    "archive:document": 200,
    "archive:file": 200,
    "archive:document_fields": 403,
    "archive:document_notes": 403,
    "archive:mail_body": 200,
    "archive:mail_part": 200,
}
# The auditor on every other route: (GET, POST). Every change is refused (403,
# or 405 where the route has no POST); the audit log and their own API tokens open.
AUDITOR_OTHER_EXPECTS = {
    "login": (302, 302),  # signed in already: on to the archive
    "logout": (405, 302),
    "archive:table": (200, 405),
    "archive:upload": (403, 403),
    "archive:links": (400, 405),
    "archive:overview": (200, 405),
    "webadmin:home": (403, 403),
    "webadmin:archive_settings": (403, 403),
    "webadmin:dashboard_reindex": (403, 403),
    "mailsources:list": (403, 403),
    "mailsources:create": (403, 403),
    "mailsources:detail": (403, 403),
    "mailsources:edit": (403, 403),
    "mailsources:test": (403, 403),
    "mailsources:sync": (403, 403),
    "mailsources:progress": (403, 403),
    "audit:log": (200, 403),
    "audit:export_csv": (200, 403),
    "audit:export_json": (200, 403),
    "legacy_link": (302, 405),
    "healthz": (200, 405),
    "set_language": (302, 302),  # the language menu: anyone may choose a language
    "tokens": (200, 200),  # their own tokens (an upload scope is refused where it is used)
    "token_revoke": (405, 404),  # not their token
    # Sign-in steps (no pending step: back to the login; OIDC not configured: 404); the
    # auditor's own second factor (an empty code: 400).
    "login_code": (302, 302),
    "account_two_factor": (200, 400),
    "oidc_authentication_init": (404, 404),
    "oidc_authentication_callback": (404, 404),
    # Imports change the archive: administrators only.
    "mailsources:import": (403, 403),
    "mailsources:import-upload": (403, 403),
    # Exports and the procedure documentation: the auditor's own copies (an empty form: 200 with
    # its errors; no export of that number: 404).
    "exports:list": (200, 200),
    "exports:detail": (404, 405),
    "exports:progress": (404, 405),
    "exports:download": (404, 405),
    "exports:procedure": (200, 405),
    "exports:procedure_generate": (405, 302),
    "exports:procedure_view": (200, 405),
    # Reports are read, never changed: reconciliation, retention, integrity.
    "reconcile:report": (200, 403),
    "retention:policies": (200, 403),
    "retention:policy_create": (403, 403),
    "retention:policy_edit": (403, 403),
    "retention:policy_delete": (403, 403),
    "retention:holds": (200, 403),
    "retention:hold_create": (403, 403),
    "retention:hold_release": (403, 403),
    "retention:expiry_lists": (200, 403),
    "retention:expiry_build": (403, 403),
    "retention:expiry_detail": (404, 403),
    "retention:expiry_decide": (403, 403),
    "retention:expiry_report": (404, 403),
    "retention:expiry_report_csv": (404, 403),
    "integrity:overview": (200, 403),
    # Users and groups: administrators only.
    "webadmin:users": (403, 403),
    "webadmin:user_create": (403, 403),
    "webadmin:user_edit": (403, 403),
    "webadmin:user_password": (403, 403),
    "webadmin:user_active": (403, 403),
    "webadmin:groups": (403, 403),
    "webadmin:group_create": (403, 403),
    "webadmin:group_edit": (403, 403),
}
# Staff routes an auditor who is also staff may read (GET) but never change.
STAFF_GET_OK = {"webadmin:home", "webadmin:archive_settings", "mailsources:list", "mailsources:detail"}

# Routes a visitor without session may open (everything else: the login page).
PUBLIC_ROUTES = {
    "login": 200,
    "healthz": 200,
    "set_language": 302,  # the language menu (a GET changes nothing, back to the page)
    "legacy_link": 302,  # to the document, which then asks for a login
    "archive:links": 400,  # JSON; without ids a 400 (tested below with ids)
    # Sign-in steps (webadmin/auth/): the code step without a password first leads
    # back to the login; OpenID Connect is off (404) unless configured.
    "login_code": 302,
    "oidc_authentication_init": 404,
    "oidc_authentication_callback": 404,
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


# Administration pages: a signed-in user without the staff flag gets 403 (GET and POST).
STAFF_NAMESPACES = ("retention:",)


def test_administration_routes_refuse_signed_in_users_who_are_not_staff(client, alice):
    routes = [r for r in project_routes() if r.name.startswith(STAFF_NAMESPACES)]
    assert routes
    client.force_login(alice)
    for route in routes:
        url = reverse(route.name, kwargs={k: 1 for k in route.kwargs})
        assert client.get(url).status_code in (403, 405), route.name
        assert client.post(url).status_code in (403, 405), route.name


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


@pytest.fixture
def source(group_a) -> MailSource:
    return MailSource.objects.create(kind=SourceKind.IMAP, name="box", owner_group=group_a, host="h", username="u")


def test_the_auditor_reads_every_document_route_and_writes_none(client, alice, auditor, doc):
    assert set(AUDITOR_EXPECTS) == set(ALICE_EXPECTS), "a document route without the auditor's answer"
    client.force_login(alice)
    part = a_part_of(client, doc)
    client.force_login(auditor)
    assert not auditor.groups.filter(pk=doc.owner_group_id).exists()  # not alice's group
    for route in DOCUMENT_ROUTES:
        response = request(client, route, url_for(route, doc, part=part))
        assert response.status_code == AUDITOR_EXPECTS[route.name], route.name
    doc.refresh_from_db()
    assert doc.title == "mail" and doc.notes == ""
    assert selectors.document_get_for_user(auditor, doc.pk) == doc


def test_the_auditor_gets_exactly_the_expected_answer_on_every_other_route(client, auditor, doc, source):
    others = [r for r in project_routes() if r not in DOCUMENT_ROUTES]
    assert {r.name for r in others} == set(AUDITOR_OTHER_EXPECTS), "a route without the auditor's answers"
    answers = {}
    for route in others:
        url = url_for(route, doc)
        client.force_login(auditor)
        get = client.get(url).status_code
        client.force_login(auditor)  # after a logout
        answers[route.name] = (get, client.post(url).status_code)
    assert answers == AUDITOR_OTHER_EXPECTS
    assert Document.objects.count() == 1


def test_an_auditor_who_is_also_staff_reads_the_administration_but_changes_nothing(client, doc, source):
    carol = make_auditor(staff=True)
    client.force_login(carol)
    others = [r for r in project_routes() if r.name.startswith(("webadmin:", "mailsources:"))]
    for route in others:
        url = reverse(route.name, kwargs={k: {"pk": source.pk, "kind": "imap"}[k] for k in route.kwargs})
        if route.name in STAFF_GET_OK:
            assert client.get(url).status_code == 200, route.name
        assert client.post(url).status_code == 403, route.name
    source.refresh_from_db()
    assert source.queued_at is None
    carol.user_permissions.add(*Permission.objects.filter(codename__in=["add_group", "change_user"]))
    client.force_login(carol)
    assert client.get(reverse("admin:auth_group_add")).status_code == 200
    response = client.post(reverse("admin:auth_group_add"), {"name": "Auditor's own"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not Group.objects.filter(name="Auditor's own").exists()


def test_normal_users_do_not_see_the_audit_log(client, alice):
    client.force_login(alice)
    for name in ("audit:log", "audit:export_csv", "audit:export_json"):
        assert client.get(reverse(name)).status_code == 403, name


def test_the_integrity_pages_are_for_administrators_and_auditors_only(client, alice, admin_user, auditor, doc):
    routes = [r for r in project_routes() if r.name.startswith("integrity:")]
    assert routes
    for route in routes:
        url = url_for(route, doc)
        client.force_login(alice)
        assert client.get(url).status_code == 403, route.name
        for reader in (admin_user, auditor):
            client.force_login(reader)
            assert client.get(url).status_code == 200, route.name
