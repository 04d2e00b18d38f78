"""The WebAdmin pages: policies edited and logged, administrators only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from archive.integrity.models import AuditEntry
from archive.retention.forms import LegalHoldForm, ReleaseForm, RetentionPolicyForm
from archive.retention.models import ExpiryList, RetentionPolicy


def test_a_policy_is_created_changed_and_deleted_and_each_act_is_logged(client, admin_user, source):
    client.force_login(admin_user)
    response = client.post(
        reverse("retention:policy_create"),
        {
            "name": "Office mail",
            "order": "10",
            "enabled": "on",
            "preset": "de6",
            "years": "0",
            "months": "0",
            "days": "0",
            "count_from": "end_of_year",
            "source_id": str(source.pk),
            "folder": "INBOX",
        },
    )
    assert response.status_code == 302
    policy = RetentionPolicy.objects.get()
    assert (policy.preset, policy.source_id, policy.folder) == ("de6", source.pk, "INBOX")
    page = client.get(reverse("retention:policies")).content.decode()
    assert "Office mail" in page and "source “Office”" in page and 'data-lock="on"' in page
    response = client.post(
        reverse("retention:policy_edit", args=[policy.pk]),
        {
            "name": "Office mail",
            "order": "10",
            "preset": "custom",
            "years": "2",
            "months": "0",
            "days": "0",
            "count_from": "date",
            "source_id": "",
        },
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.preset, policy.years, policy.enabled, policy.source_id) == ("custom", 2, False, None)
    client.post(reverse("retention:policy_delete", args=[policy.pk]))
    assert not RetentionPolicy.objects.exists()
    logged = [e.details["action"] for e in AuditEntry.objects.filter(action="retention_policy_changed")]
    assert logged == ["created", "changed", "deleted"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"preset": "custom", "years": "0", "months": "0", "days": "0"}, "custom duration needs"),
        ({"preset": "ch10", "field_value": "invoice"}, "Choose the field"),
        ({"preset": "ch10", "years": "-1"}, "greater than or equal to 0"),
        ({"preset": "bogus"}, "Select a valid choice"),
    ],
)
def test_bad_policies_are_refused_with_a_clear_message(client, admin_user, data, message):
    client.force_login(admin_user)
    base = {"name": "x", "order": "1", "years": "0", "months": "0", "days": "0", "count_from": "date"}
    response = client.post(reverse("retention:policy_create"), {**base, **data})
    assert response.status_code == 200 and message in response.content.decode()
    assert not RetentionPolicy.objects.exists()


def test_only_one_default_policy(client, admin_user, policy):
    policy("first", is_default=True)
    client.force_login(admin_user)
    response = client.post(
        reverse("retention:policy_create"),
        {
            "name": "second",
            "order": "1",
            "preset": "ch10",
            "is_default": "on",
            "years": "0",
            "months": "0",
            "days": "0",
            "count_from": "date",
        },
    )
    assert response.status_code == 200 and RetentionPolicy.objects.count() == 1


HOSTILE = ["", "-1", "1e400", "9" * 30, "2024-13-45", "x" * 600, "\x00<script>"]
# Every field of the retention pages' forms (their own lists: a field added there is
# fuzzed too), and the expiry list's decision button.
FIELDS = sorted(
    {
        *RetentionPolicyForm.Meta.fields,
        *LegalHoldForm.Meta.fields,
        *ReleaseForm.base_fields,
        "decision",
    }
)


def test_no_input_to_any_retention_page_is_a_server_error(client, admin_user, policy, hold, make_mail):
    from tests.archive.test_access import project_routes

    make_mail("2001-01-01")
    existing = {"policy": policy().pk}
    client.force_login(admin_user)
    client.post(reverse("retention:expiry_build"))
    existing |= {"expiry": ExpiryList.objects.get().pk, "hold": hold(whole_archive=True).pk}
    routes = [r for r in project_routes() if r.name.startswith("retention:")]
    for value in HOSTILE:
        for route in routes:
            kind = route.name.split(":")[1].split("_")[0]  # policy_edit → policy
            for pk in (existing[kind], 2**63 - 1) if route.kwargs else (None,):
                url = reverse(route.name, kwargs={k: pk for k in route.kwargs})
                assert client.get(url).status_code < 500, (route.name, value)
                assert client.post(url, {f: value for f in FIELDS}).status_code < 500, (route.name, value)
