"""WebAdmin pages for mail sources: forms, write-only secrets, test connection,
"sync now", live progress and the `mailtest` command."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from archive.models import FieldDefinition
from mailsources.models import MailSource, SourceStatus, SyncRun
from mailsources.secrets import decrypt_secret


def imap_form(imap_mailbox, dovecot, group, **overrides) -> dict:
    data = {
        "name": "Office mail",
        "host": dovecot.host,
        "port": str(dovecot.tls_port),
        "security": "tls",
        "username": imap_mailbox.user.name,
        "secret": imap_mailbox.user.password,
        "ca_file": dovecot.ca_file,
        "enabled": "on",
        "interval_minutes": "15",
        "folders": "INBOX",
        "owner_group": str(group.pk),
        "min_age_days": "0",
        "after_archive": "keep",
        "from_field": str(FieldDefinition.objects.get(name="from").pk),
        "subject_field": str(FieldDefinition.objects.get(name="subject").pk),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def staff(admin_user):
    return admin_user


def test_creating_an_imap_source_stores_the_password_encrypted(client, staff, imap_mailbox, dovecot, group_a):
    client.force_login(staff)
    response = client.post(reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a))
    assert response.status_code == 302, response.context and response.context["form"].errors
    source = MailSource.objects.get()
    assert source.kind == "imap"
    assert imap_mailbox.user.password.encode() not in bytes(source.secret_encrypted)
    assert decrypt_secret(source.secret_encrypted) == imap_mailbox.user.password


def test_the_password_is_never_rendered_back(client, staff, imap_mailbox, dovecot, group_a):
    client.force_login(staff)
    client.post(reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a))
    source = MailSource.objects.get()
    for url in (
        reverse("mailsources:edit", args=[source.pk]),
        reverse("mailsources:detail", args=[source.pk]),
        reverse("mailsources:list"),
    ):
        assert imap_mailbox.user.password not in client.get(url).content.decode()


def test_editing_without_a_password_keeps_the_stored_one(client, staff, imap_mailbox, dovecot, group_a):
    client.force_login(staff)
    client.post(reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a))
    source = MailSource.objects.get()
    response = client.post(
        reverse("mailsources:edit", args=[source.pk]),
        imap_form(imap_mailbox, dovecot, group_a, secret="", interval_minutes="60"),
    )
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.interval_minutes == 60
    assert decrypt_secret(source.secret_encrypted) == imap_mailbox.user.password


@pytest.mark.parametrize("changed", ["host", "username"])
def test_changing_host_or_username_requires_the_password_again(client, staff, imap_mailbox, dovecot, group_a, changed):
    client.force_login(staff)
    client.post(reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a))
    source = MailSource.objects.get()
    response = client.post(
        reverse("mailsources:edit", args=[source.pk]),
        imap_form(imap_mailbox, dovecot, group_a, secret="", **{changed: "other.example"}),
    )
    assert response.status_code == 200
    assert "changed" in str(response.context["form"].errors["secret"])
    source.refresh_from_db()
    assert getattr(source, changed) != "other.example"


def test_unencrypted_imap_needs_the_explicit_switch(client, staff, imap_mailbox, dovecot, group_a):
    client.force_login(staff)
    response = client.post(
        reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a, security="none")
    )
    assert "security" in response.context["form"].errors
    response = client.post(
        reverse("mailsources:create", args=["imap"]),
        imap_form(imap_mailbox, dovecot, group_a, security="none", allow_unencrypted="on"),
    )
    assert response.status_code == 302


def test_move_needs_a_target_folder(client, staff, imap_mailbox, dovecot, group_a):
    client.force_login(staff)
    response = client.post(
        reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a, after_archive="move")
    )
    assert "move_to_folder" in response.context["form"].errors


def test_the_test_connection_button_reports_success_and_failure(client, staff, imap_mailbox, dovecot, group_a):
    imap_mailbox.append("INBOX", b"Subject: Newest one\r\nFrom: a@b.c\r\n\r\nhi\r\n")
    client.force_login(staff)
    client.post(reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a))
    source = MailSource.objects.get()
    page = client.post(reverse("mailsources:test", args=[source.pk]), follow=True).content.decode()
    assert "Connection test passed" in page and "Newest one" in page
    client.post(
        reverse("mailsources:edit", args=[source.pk]),
        imap_form(imap_mailbox, dovecot, group_a, secret="wrong-password"),
    )
    page = client.post(reverse("mailsources:test", args=[source.pk]), follow=True).content.decode()
    assert "Connection test failed" in page
    assert "wrong-password" not in page


def test_mailtest_command_prints_the_report_or_a_specific_error(staff, imap_mailbox, dovecot, group_a, client, capsys):
    imap_mailbox.append("INBOX", b"Subject: Hello from mailtest\r\nFrom: a@b.c\r\n\r\nhi\r\n")
    client.force_login(staff)
    client.post(reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a))
    call_command("mailtest", "Office mail")
    out = capsys.readouterr().out
    assert "Hello from mailtest" in out and "INBOX" in out
    source = MailSource.objects.get()
    source.port = 1  # nothing listens there
    source.save()
    with pytest.raises(CommandError) as excinfo:
        call_command("mailtest", str(source.pk))
    assert imap_mailbox.user.password not in str(excinfo.value)
    with pytest.raises(CommandError, match="No mail source 'nope'"):
        call_command("mailtest", "nope")


def test_progress_endpoint_reports_the_running_run(client, staff, group_a):
    source = MailSource.objects.create(
        kind="imap", name="s", owner_group=group_a, host="h", username="u", status=SourceStatus.RUNNING
    )
    SyncRun.objects.create(source=source, done=120, total=500, new=100, duplicate=20)
    client.force_login(staff)
    data = client.get(reverse("mailsources:progress", args=[source.pk])).json()
    assert data["status"] == "running"
    assert data["run"]["done"] == 120 and data["run"]["total"] == 500 and data["run"]["new"] == 100


def test_sync_now_enqueues_a_run_and_clears_a_stopped_state(client, staff, group_a, settings, tmp_path):
    source = MailSource.objects.create(
        kind="imap", name="s", owner_group=group_a, host="h", username="u", status=SourceStatus.ERROR, next_run_at=None
    )
    client.force_login(staff)
    client.post(reverse("mailsources:sync", args=[source.pk]))
    source.refresh_from_db()
    assert source.status == SourceStatus.IDLE and source.next_run_at is not None


def test_source_pages_are_for_administrators_only(client, alice, group_a):
    source = MailSource.objects.create(kind="imap", name="s", owner_group=group_a, host="h", username="u")
    client.force_login(alice)
    for url in (
        reverse("mailsources:list"),
        reverse("mailsources:detail", args=[source.pk]),
        reverse("mailsources:edit", args=[source.pk]),
        reverse("mailsources:create", args=["imap"]),
    ):
        assert client.get(url).status_code == 403  # the styled 403 page, not a login loop
    assert client.post(reverse("mailsources:sync", args=[source.pk])).status_code == 403
