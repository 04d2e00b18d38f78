"""The audit log records every administrative act: archive settings, mail
sources, field definitions, users, groups and permissions — through the
Django admin and the WebAdmin pages — with who did it, and never a password
or its hash."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

from archive.integrity.audit import AuditAction
from archive.integrity.models import AuditEntry
from archive.models import ArchiveSettings, FieldDefinition
from mailsources.models import MailSource
from tests.integrity.test_audit_access import entries, last

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client


def all_details() -> str:
    return json.dumps(list(AuditEntry.objects.values_list("details", flat=True)))


def settings_post(**changes: object) -> dict[str, object]:
    """The archive settings form as it stands, with ``changes``."""
    from archive.forms import ArchiveSettingsForm

    form = ArchiveSettingsForm(instance=ArchiveSettings.load())
    data: dict[str, object] = {}
    for name in form.fields:
        value = form.initial.get(name)
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = "" if value is None else value
    data.update(changes)
    return data


def test_archive_settings_changed_old_and_new(admin_client_, admin_user):
    before = ArchiveSettings.load()
    assert admin_client_.post(reverse("webadmin:archive_settings"), settings_post(field_columns=3)).status_code == 302
    assert ArchiveSettings.load().field_columns == 3
    entry = last(AuditAction.SETTINGS_CHANGED)
    assert (entry.actor, entry.user_id, entry.outcome) == ("admin", admin_user.pk, "ok")
    assert entry.details == {
        "settings": "archive",
        "changed": {"field_columns": {"old": before.field_columns, "new": 3}},
    }
    # Saved without a change: nothing to log.
    admin_client_.post(reverse("webadmin:archive_settings"), settings_post())
    assert len(entries(AuditAction.SETTINGS_CHANGED)) == 1


def test_a_mail_source_added_and_edited_without_its_secret(admin_client_, group_a):
    data = {
        "name": "Office",
        "owner_group": group_a.pk,
        "host": "imap.example.com",
        "port": "993",
        "security": "tls",
        "username": "office@example.com",
        "secret": "hunter2-imap-secret",
        "folders": "INBOX",
        "interval_minutes": "15",
        "min_age_days": "0",
        "after_archive": "keep",
        "enabled": "on",
    }
    response = admin_client_.post(reverse("mailsources:create", args=["imap"]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    source = MailSource.objects.get()
    added = last(AuditAction.SOURCE_CHANGED)
    assert (added.actor, added.details["source"], added.details["change"]) == ("admin", source.pk, "added")
    assert added.details["fields"]["secret"] == {"changed": True}
    assert added.details["fields"]["host"] == {"old": "", "new": "imap.example.com"}

    data.update(host="mail.example.com", secret="another-secret-value")
    assert admin_client_.post(reverse("mailsources:edit", args=[source.pk]), data).status_code == 302
    changed = last(AuditAction.SOURCE_CHANGED)
    assert changed.details["change"] == "changed"
    assert changed.details["fields"]["host"] == {"old": "imap.example.com", "new": "mail.example.com"}
    assert changed.details["fields"]["secret"] == {"changed": True}
    assert "hunter2" not in all_details() and "another-secret" not in all_details()

    admin_client_.post(reverse("mailsources:sync", args=[source.pk]))
    sync = last(AuditAction.SOURCE_CHANGED)
    assert (sync.actor, sync.details["change"], sync.details["fields"]) == ("admin", "sync requested", {})


def test_users_groups_and_permissions_changed_in_the_django_admin(admin_client_, alice, group_a):
    admin_client_.post(reverse("admin:auth_group_add"), {"name": "Finance"})
    finance = Group.objects.get(name="Finance")
    group_added = last(AuditAction.GROUP_CHANGED)
    assert (group_added.actor, group_added.details) == (
        "admin",
        {
            "model": "auth.group",
            "id": finance.pk,
            "name": "Finance",
            "change": "added",
            "fields": {"name": {"new": "Finance"}},
        },
    )
    view_doc = Permission.objects.get(codename="view_document")
    admin_client_.post(
        reverse("admin:auth_group_change", args=[finance.pk]), {"name": "Finance", "permissions": [view_doc.pk]}
    )
    granted = last(AuditAction.PERMISSION_CHANGED)
    assert (granted.actor, granted.details["name"], granted.details["added"]) == (
        "admin",
        "Finance",
        ["archive.view_document"],
    )

    change = reverse("admin:auth_user_change", args=[alice.pk])
    form = {
        "username": "alice",
        "first_name": "Alice",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "groups": [group_a.pk, finance.pk],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    assert admin_client_.post(change, form).status_code == 302
    user_changed = [e for e in entries(AuditAction.USER_CHANGED) if e.details.get("change") == "changed"][-1]
    assert user_changed.details["fields"]["first_name"] == {"old": "", "new": "Alice"}
    membership = last(AuditAction.USER_CHANGED)
    assert (membership.details["change"], membership.details["added"]) == ("groups added", ["Finance"])

    form["groups"] = [finance.pk]
    admin_client_.post(change, form)
    removed = last(AuditAction.USER_CHANGED)
    assert (removed.details["change"], removed.details["removed"]) == ("groups removed", ["Sales"])


def test_a_password_change_logs_that_it_changed_never_the_password_or_its_hash(admin_client_, alice):
    old_hash = User.objects.get(pk=alice.pk).password
    url = reverse("admin:auth_user_password_change", args=[alice.pk])
    response = admin_client_.post(
        url, {"password1": "N3w-secret-passphrase!", "password2": "N3w-secret-passphrase!", "usable_password": "true"}
    )
    assert response.status_code == 302
    new_hash = User.objects.get(pk=alice.pk).password
    assert new_hash != old_hash
    entry = last(AuditAction.USER_CHANGED)
    assert (entry.actor, entry.details["name"], entry.details["fields"]) == (
        "admin",
        "alice",
        {"password": {"changed": True}},
    )
    logged = all_details()
    assert "N3w-secret" not in logged and new_hash not in logged and old_hash not in logged
    assert new_hash.split("$")[-1] not in logged


def test_a_field_definition_changed_and_deleted_in_the_admin(admin_client_):
    admin_client_.post(
        reverse("admin:archive_fielddefinition_add"),
        {"name": "project", "label": "Project", "type": "text", "order": 100, "choices": ""},
    )
    field = FieldDefinition.objects.get(name="project")
    added = last(AuditAction.FIELD_DEFINITION_CHANGED)
    assert (added.actor, added.details["change"], added.details["fields"]["label"]) == (
        "admin",
        "added",
        {"new": "Project"},
    )
    admin_client_.post(reverse("admin:archive_fielddefinition_delete", args=[field.pk]), {"post": "yes"})
    deleted = last(AuditAction.FIELD_DEFINITION_CHANGED)
    assert (deleted.details["change"], deleted.details["name"], deleted.details["id"]) == (
        "deleted",
        str(field),
        field.pk,
    )


def test_changes_outside_a_request_are_not_acts_of_the_application(group_a):
    """Fixtures, migrations, ``createsuperuser``: no request, no entry."""
    user = User.objects.create_user("eve", password="x")
    user.groups.add(group_a)
    Group.objects.create(name="Temp").delete()
    assert not AuditEntry.objects.exists()
