"""No input makes a server error (issue 11): generated values for every GET
parameter on every route of the project, as a normal user, as a visitor and
as an administrator.

The routes come from ``urlpatterns`` (``tests/archive/test_access.py``), the
parameter names from the views' source (every ``request.GET`` they read), so
a new route or parameter is fuzzed without being listed here. The test client
re-raises a view's exception, so a 500 fails with its traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.archive.mail_samples import archive_mail, html_mail
from tests.archive.test_access import Route, project_routes

BASE_DIR = Path(__file__).resolve().parents[1]
VIEW_MODULES = [
    "archive/views.py",
    "archive/access.py",
    "webadmin/views.py",
    "webadmin/users.py",
    "mailsources/views.py",
    "mailsources/reconcile_views.py",
    "archive/exports/views.py",
]
_GET_KEY = re.compile(r"""request\.GET(?:\.get\(|\[)\s*["'](\w+)["']""")
# Read through a loop over names (the upload form's initial values) or by Django itself.
OTHER_PARAMETERS = {"version_key", "owner_group", "next"}


def get_parameters() -> list[str]:
    names = set(OTHER_PARAMETERS)
    for module in VIEW_MODULES:
        names |= set(_GET_KEY.findall((BASE_DIR / module).read_text()))
    return sorted(names)


PARAMETERS = get_parameters()
ROUTES = project_routes()

# The inputs of the penetration test, and their relatives.
HOSTILE = [
    "²",
    "①",
    "٣",
    "9" * 30,
    "-1",
    "0",
    "",
    " ",
    "1e400",
    "1.5",
    "NaN",
    "date:9999-12-31",
    "date:0001-01-01",
    "date:..9999-12-31",
    "date:2024-13-45",
    "number:" + "9" * 30,
    "number:-" + "9" * 30 + "..",
    "amount:1e999999999",
    "amount:" + "9" * 40 + "..",
    "a* " * 1300,
    " ".join(f"w{i}" for i in range(3000)),
    '"' + "x " * 2000 + '"',
    "kind:nothing",
    "published:perhaps",
    "owner:%",
    "from:\x00",
    "-",
    '"',
    "*",
    ",,,",
    "1,2,3," + "9" * 30,
    "%00",
    "\u202e",
]
values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.from_regex(r"[a-z]{1,8}:[\w.\-\"*]{0,24}", fullmatch=True),
)
parameters = st.dictionaries(st.sampled_from(PARAMETERS), values, max_size=4)
path_parts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"), min_size=1, max_size=20
)


@pytest.fixture
def documents(group_a, make_document):
    mail = archive_mail(html_mail('<p>hello</p><img src="cid:logo@example.com" alt="logo">'), group_a)
    text = make_document(content=b"hello world", name="hello.txt")
    return mail, text


def test_the_parameter_list_comes_from_the_views():
    assert {"q", "page", "sort", "dir", "reduced", "ids", "go", "download", "remote", "format", "t"} <= set(PARAMETERS)


def url_of(route: Route, data: st.DataObject, documents) -> str:
    mail, text = documents
    doc = data.draw(st.sampled_from(documents))
    numbers = st.one_of(st.just(doc.pk), st.integers(min_value=0, max_value=10**19 - 1))
    file_ids = st.one_of(st.just(doc.files.first().pk), st.integers(min_value=0, max_value=10**19 - 1))
    fill = {
        "number": numbers,
        "file_id": file_ids,
        "pk": st.integers(min_value=0, max_value=10**19 - 1),
        "part": st.one_of(st.sampled_from(["1", "2", "1.2", "0", "99"]), path_parts),
        "kind": st.one_of(st.sampled_from(["imap", "m365"]), path_parts),
    }
    return reverse(route.name, kwargs={k: data.draw(fill[k], label=k) for k in route.kwargs})


def check(client, url: str, params: dict[str, str]) -> None:
    response = client.get(url, params)
    assert response.status_code < 500, (url, params, response.status_code)


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples every run: a failure is reproducible, not flaky
    database=None,
)


@FUZZ
@given(data=st.data())
def test_no_input_makes_a_server_error_for_a_user(client, alice, documents, data):
    client.force_login(alice)
    route = data.draw(st.sampled_from(ROUTES), label="route")
    check(client, url_of(route, data, documents), data.draw(parameters, label="params"))


@FUZZ
@given(data=st.data())
def test_no_input_makes_a_server_error_for_a_visitor(client, documents, data):
    route = data.draw(st.sampled_from(ROUTES), label="route")
    check(client, url_of(route, data, documents), data.draw(parameters, label="params"))


@FUZZ
@given(data=st.data())
def test_no_input_makes_a_server_error_for_an_administrator(client, admin_user, documents, data):
    client.force_login(admin_user)  # past the 403s: the administration pages' own parameters
    route = data.draw(st.sampled_from(ROUTES), label="route")
    check(client, url_of(route, data, documents), data.draw(parameters, label="params"))


@pytest.mark.parametrize("persona", ["alice", None, "admin_user"], ids=["user", "visitor", "administrator"])
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_hostile_value_on_every_parameter_of_every_route(request, client, documents, route, persona):
    if persona is not None:
        client.force_login(request.getfixturevalue(persona))
    doc = documents[0]
    kwargs = {"number": doc.pk, "file_id": doc.files.first().pk, "pk": 1, "part": "1", "kind": "imap"}
    url = reverse(route.name, kwargs={k: kwargs[k] for k in route.kwargs})
    for value in HOSTILE:
        check(client, url, dict.fromkeys(PARAMETERS, value))
