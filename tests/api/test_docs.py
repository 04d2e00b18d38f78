"""The schema and the browsable docs: served from static, under a CSP of their own."""

from __future__ import annotations

import re

from django.contrib.staticfiles import finders
from django.urls import reverse

from api.views import DOCS_CSP


def test_the_schema_is_openapi_3_and_lists_the_v1_operations(client, alice):
    client.force_login(alice)
    schema = client.get(reverse("api:schema") + "?format=json").json()
    assert schema["openapi"].startswith("3.")
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
    assert schema["components"]["securitySchemes"]["tokenAuth"]["scheme"] == "bearer"


def test_the_docs_page_loads_swagger_ui_from_static_with_no_inline_script(client, alice):
    client.force_login(alice)
    response = client.get(reverse("api:docs"))
    assert response.status_code == 200 and response["Content-Security-Policy"] == DOCS_CSP
    html = response.content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert finders.find(url.removeprefix("/static/")), url  # vendored, no CDN
    assert "//" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', html)).replace("/api/docs/", "")
    start = client.get(reverse("api:docs") + "?script=")
    assert start.status_code == 200 and "javascript" in start["Content-Type"]


def test_the_schema_and_docs_need_a_login(client, db):
    assert client.get(reverse("api:schema")).status_code in (401, 403)
    assert client.get(reverse("api:docs")).status_code in (401, 403)
