"""Error pages in the product's look (issue 11, finding 6/7): 400, 403, 404 and
500 extend the base template, say nothing about the request or the server;
a signed-in user without the right gets the 403 page, not a login loop; static
files carry the pages' security headers."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.views import defaults

STYLED = '<link rel="stylesheet" href="/static/webadmin.css">'


def assert_styled_error(response, code: int, heading: str) -> str:
    html = response.content.decode()
    assert response.status_code == code
    assert STYLED in html and 'class="card error-page"' in html
    assert f"Error {code}" in html and f"<h1>{heading}</h1>" in html
    assert "Traceback" not in html and "Django" not in html
    return html


@pytest.mark.parametrize("url", ["/webadmin/", "/webadmin/archive/", "/webadmin/sources/", "/webadmin/sources/1/"])
def test_a_user_who_is_not_staff_gets_the_403_page_and_no_redirect_loop(client, alice, url):
    client.force_login(alice)
    response = client.get(url)
    assert "Location" not in response
    assert_styled_error(response, 403, "No access")
    # Before: /webadmin/ → /login/?next=/webadmin/ → /webadmin/ … until the browser gave up.
    assert client.get(f"/login/?next={url}").status_code == 302  # the login page sends a user on, once


def test_visitors_are_still_asked_to_log_in_and_staff_get_in(client, admin_user):
    assert client.get("/webadmin/")["Location"] == "/login/?next=/webadmin/"
    client.force_login(admin_user)
    assert client.get("/webadmin/").status_code == 200


def test_a_missing_page_is_the_styled_404_without_the_path_or_the_reason(client, alice):
    client.force_login(alice)
    html = assert_styled_error(client.get("/dms/no-such-page-xyz/"), 404, "Not found")
    assert "no-such-page-xyz" not in html
    html = assert_styled_error(client.get(reverse("archive:document", args=[987654])), 404, "Not found")
    assert "No such document" not in html and "987654" not in html


def test_the_404_page_is_the_same_for_every_user(client, alice, bob):
    client.force_login(alice)
    first = client.get("/dms/doc/987654/").content
    client.force_login(bob)
    assert client.get("/dms/doc/987654/").content == first  # no user name, no CSRF token


def test_a_bad_request_is_the_styled_400(client, db):
    client.raise_request_exception = False  # Django logs the DisallowedHost, the user gets the page
    assert_styled_error(client.get("/dms/", HTTP_HOST="evil.example"), 400, "Bad request")


def test_the_500_page_is_styled_and_needs_nothing_from_the_request(db):
    request = RequestFactory().get("/dms/")
    response = defaults.server_error(request)
    assert_styled_error(response, 500, "Something went wrong")


def test_the_handlers_render_the_projects_templates(rf, db):
    request = rf.get("/x/")
    assert "error-page" in defaults.permission_denied(request, Exception("secret reason")).content.decode()
    body = defaults.bad_request(request, Exception("secret reason")).content.decode()
    assert "error-page" in body and "secret reason" not in body


@pytest.mark.parametrize("path", ["/static/webadmin.css", "/static/webdms.js"])
def test_static_files_carry_the_same_security_headers_as_pages(client, db, path):
    page = client.get("/login/")
    response = client.get(path)
    assert response.status_code == 200
    for header in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"):
        assert response[header] == page[header], header
    assert response["Referrer-Policy"] == page["Referrer-Policy"]


def test_a_form_without_its_csrf_token_gets_the_styled_403(db):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    html = assert_styled_error(client.post("/login/", {"username": "x", "password": "y"}), 403, "Form expired")
    assert "CSRF" not in html and "Referer" not in html
