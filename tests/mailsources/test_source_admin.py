"""WebAdmin pages for mail sources: forms, write-only secrets, test connection,
"sync now", live progress and the `mailtest` command; the status and progress
texts tell the truth (incremental runs, resyncs, failing mailboxes)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from archive.models import FieldDefinition
from mailsources.models import MailboxStatus, MailSource, SourceStatus, SyncRun
from mailsources.secrets import decrypt_secret
from tests.mailsources import graph_pipeline
from tests.mailsources.graph_pipeline import ALICE, BOB, add_mails
from tests.mailsources.graph_pipeline import sync as graph_sync
from tests.mailsources.imap_pipeline import mail, small_batches, sync

# Microsoft 365 fixtures (the fake Graph, Django configured to talk to it, a tenant in it).
graph_server = graph_pipeline.graph_server
fake = graph_pipeline.fake
loopback_only = graph_pipeline.loopback_only
graph_settings = graph_pipeline.graph_settings
m365 = graph_pipeline.m365


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


# --------------------------------------------------------------------------- true status texts


def progress_text(client, source) -> str:
    return client.get(reverse("mailsources:progress", args=[source.pk])).json()["progress"]


@pytest.mark.django_db(transaction=True)
def test_progress_counts_what_each_run_reads_first_incremental_and_resync(
    client, staff, imap_mailbox, imap_source_factory
):
    imap_mailbox.append_many("INBOX", [mail(f"old {i}") for i in range(15)])
    source = imap_source_factory(imap_mailbox)
    client.force_login(staff)
    sync(source)
    assert progress_text(client, source) == "15 / 15 (new 15, duplicate 0) — Finished"

    # Incremental: 8 new of 23 in the folder. Live, after each committed batch of 3, and at the end.
    imap_mailbox.append_many("INBOX", [mail(f"new {i}") for i in range(8)])
    seen: list[str] = []
    sync(source, client_factory=small_batches(3), after_commit=lambda ids: seen.append(progress_text(client, source)))
    assert seen == [
        "3 / 8 (new 3, duplicate 0) — Running",
        "6 / 8 (new 6, duplicate 0) — Running",
        "8 / 8 (new 8, duplicate 0) — Running",
    ]
    assert progress_text(client, source) == "8 / 8 (new 8, duplicate 0) — Finished"
    page = client.get(reverse("mailsources:detail", args=[source.pk])).content.decode()
    assert '<span id="source-progress">8 / 8 (new 8, duplicate 0) — Finished</span>' in page

    # Nothing new: an incremental run that reads nothing says so.
    sync(source)
    assert progress_text(client, source) == "0 / 0 (new 0, duplicate 0) — Finished"

    # A resync (UIDVALIDITY changed) reads every message again, by content: all duplicates.
    imap_mailbox.change_uidvalidity()
    sync(source)
    assert progress_text(client, source) == "23 / 23 (new 0, duplicate 23) — Finished"


def test_a_source_with_failing_mailboxes_is_partly_failing_and_names_them(fake, m365, client, staff):
    m365.add_mailbox(BOB)
    fake.update_app(m365.client_id, allowed_mailboxes=[ALICE, "nobody@contoso.com"])  # an access policy
    add_mails(fake, "inbox", 2)
    source = m365.source(mailboxes=[BOB, ALICE, "nobody@contoso.com"])

    graph_sync(source)

    source.refresh_from_db()
    assert source.status == SourceStatus.PARTIAL  # not "OK"
    assert source.status_message == (
        "2 of 3 mailboxes failing: bob@contoso.com, nobody@contoso.com (see the run history)"
    )
    failing = "Failing mailboxes: bob@contoso.com (Stopped: error), nobody@contoso.com (Stopped: error)"
    client.force_login(staff)
    listing = client.get(reverse("mailsources:list")).content.decode()
    assert "Partly failing — 2 of 3 mailboxes failing: bob@contoso.com, nobody@contoso.com" in listing
    assert failing in listing and 'class="status-partial"' in listing
    page = client.get(reverse("mailsources:detail", args=[source.pk])).content.decode()
    assert f'<dd id="source-failing" data-none="none">{failing}</dd>' in page
    assert '<dd id="source-status" class="status-partial">Partly failing — 2 of 3 mailboxes failing' in page
    data = client.get(reverse("mailsources:progress", args=[source.pk])).json()
    assert data["status"] == "partial" and data["failing"] == failing
    assert data["status_text"].startswith("Partly failing — 2 of 3 mailboxes failing")

    # Access granted, the unknown mailbox removed: OK again, nothing listed as failing.
    fake.update_app(m365.client_id, allowed_mailboxes=[ALICE, BOB])
    source.mailboxes = f"{BOB}\n{ALICE}"
    source.save()
    graph_sync(source)
    source.refresh_from_db()
    assert source.status == SourceStatus.OK
    data = client.get(reverse("mailsources:progress", args=[source.pk])).json()
    assert (data["status_text"], data["failing"]) == ("OK", "")
    assert (
        '<dd id="source-failing" data-none="none">none</dd>'
        in client.get(reverse("mailsources:detail", args=[source.pk])).content.decode()
    )


def test_a_mailbox_status_failing_is_never_shown_as_ok(client, staff, group_a):
    """Rows from before the "partial" status: a failing mailbox still shows."""
    source = MailSource.objects.create(
        kind="m365", name="m", owner_group=group_a, mailboxes=f"{ALICE}\n{BOB}", status=SourceStatus.OK
    )
    MailboxStatus.objects.create(source=source, mailbox=BOB, status=SourceStatus.ERROR, message="denied")
    MailboxStatus.objects.create(source=source, mailbox="gone@contoso.com", status=SourceStatus.ERROR)  # not configured
    client.force_login(staff)
    listing = client.get(reverse("mailsources:list")).content.decode()
    assert "Partly failing" in listing and "Failing mailboxes: bob@contoso.com (Stopped: error)" in listing
    assert "gone@contoso.com" not in listing
