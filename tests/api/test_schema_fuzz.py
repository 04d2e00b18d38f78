"""Schema-driven fuzzing (issue 16): schemathesis generates requests for every
operation of the served OpenAPI schema and sends them to a live server as a
normal user with a read+upload token. No answer may be a server error, and
every answer must match the schema: status code, content type and body."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api import tokens

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 15  # per operation: bounded, so a database's run stays well under a minute


@pytest.fixture
def served(live_server, alice, make_document):
    secret = tokens.token_create(alice, "fuzz", ["read", "upload"])[1]
    headers = {"Authorization": f"Bearer {secret}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json", headers=headers)
    return live_server.url, headers, schema


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_the_schema_covers_every_api_route(served):
    _, _, schema = served
    labels = {op.label for op in operations(schema)}
    assert labels == {
        "GET /api/v1/documents/",
        "POST /api/v1/documents/",
        "GET /api/v1/documents/{number}/",
        "GET /api/v1/documents/{number}/files/{file_id}/",
        "GET /api/v1/links/",
        "GET /api/v1/sources/",
        "GET /api/v1/sources/{id}/",
        "GET /api/v1/sources/{id}/runs/",
        "POST /api/v1/sources/{id}/sync/",
    }


def test_answers_on_real_objects_match_the_schema(served, alice, make_document):
    """Generated values rarely hit an existing document: these cases do, once each."""
    base_url, headers, schema = served
    doc = make_document(content=b"0123456789", name="digits.txt")
    file_id = doc.files.get().pk
    by_label = {op.label: op for op in operations(schema)}
    cases = [
        by_label["GET /api/v1/documents/"].Case(query={"q": "digits"}),
        by_label["GET /api/v1/documents/"].Case(query={"page": 2}),
        by_label["GET /api/v1/documents/{number}/"].Case(path_parameters={"number": doc.pk}),
        by_label["GET /api/v1/documents/{number}/files/{file_id}/"].Case(
            path_parameters={"number": doc.pk, "file_id": file_id}
        ),
        by_label["GET /api/v1/documents/{number}/files/{file_id}/"].Case(
            path_parameters={"number": doc.pk, "file_id": file_id}, headers={"Range": "bytes=2-5"}
        ),
        by_label["GET /api/v1/links/"].Case(query={"ids": str(doc.pk)}),
        by_label["POST /api/v1/documents/"].Case(
            body={"files": [b"uploaded"], "owner_group": alice.groups.get().pk}, media_type="multipart/form-data"
        ),
    ]
    statuses = [case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS).status_code for case in cases]
    assert statuses == [200, 200, 200, 200, 206, 200, 201]


def test_no_operation_gives_a_server_error_or_an_answer_outside_the_schema(served):
    base_url, headers, schema = served
    session = requests.Session()
    for operation in operations(schema):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:
            case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=CHECKS)

        run()
