"""The new-source form (issue 15): the only group preselected, "Folders"
empty (= all folders, as its help says), the password next to the user name,
and a new source disabled — not synced by the scheduler — until its first
successful connection test or until the administrator enables it. The
source page's progress bar: percent, time taken and time left."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from mailsources import services
from mailsources.forms import AWAITING_TEST, ImapSourceForm, M365SourceForm
from mailsources.models import MailSource, RunStatus, SourceStatus, SyncRun
from mailsources.views import duration_text, run_progress
from tests.mailsources.test_source_admin import imap_form


@pytest.fixture
def staff(admin_user):
    return admin_user


def test_the_only_group_is_preselected_and_two_groups_are_not(group_a):
    Group.objects.exclude(pk=group_a.pk).delete()  # the default "Archive" group
    assert ImapSourceForm()["owner_group"].initial == group_a.pk
    Group.objects.create(name="Second")
    assert ImapSourceForm()["owner_group"].initial is None
    assert ImapSourceForm(initial={"owner_group": group_a.pk})["owner_group"].initial == group_a.pk


def test_folders_start_empty_and_the_help_says_that_means_all(db):
    form = ImapSourceForm()
    assert (form["folders"].initial or "") == ""
    assert "empty for all folders" in str(form.fields["folders"].help_text)
    assert MailSource._meta.get_field("folders").default == ""


def test_the_secret_follows_the_account_it_belongs_to(db):
    imap = list(ImapSourceForm().fields)
    assert imap[imap.index("username") + 1] == "secret"
    m365 = list(M365SourceForm().fields)
    assert m365[m365.index("client_id") + 1] == "secret"


def test_a_new_source_starts_disabled_and_is_not_scheduled(client, staff, imap_mailbox, dovecot, group_a):
    client.force_login(staff)
    html = client.get(reverse("mailsources:create", args=["imap"])).content.decode()
    enabled = re.search(r'<input type="checkbox" name="enabled"[^>]*>', html).group(0)
    assert "checked" not in enabled
    client.post(reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a, enabled=None))
    source = MailSource.objects.get()
    assert not source.enabled and source.status == SourceStatus.DISABLED and source.status_message == AWAITING_TEST
    assert services.sources_due(timezone.now() + dt.timedelta(minutes=1)) == []  # the scheduler leaves it
    detail = client.get(reverse("mailsources:detail", args=[source.pk])).content.decode()
    assert "Waiting for a successful" in detail


def test_the_first_successful_test_enables_it(client, staff, imap_mailbox, dovecot, group_a):
    imap_mailbox.append("INBOX", b"Subject: Newest one\r\nFrom: a@b.c\r\n\r\nhi\r\n")
    client.force_login(staff)
    client.post(
        reverse("mailsources:create", args=["imap"]),
        imap_form(imap_mailbox, dovecot, group_a, enabled=None, secret="wrong-password"),
    )
    source = MailSource.objects.get()
    page = client.post(reverse("mailsources:test", args=[source.pk]), follow=True).content.decode()
    source.refresh_from_db()
    assert "Connection test failed" in page and not source.enabled  # a failed test changes nothing
    client.post(reverse("mailsources:edit", args=[source.pk]), imap_form(imap_mailbox, dovecot, group_a, enabled=None))
    page = client.post(reverse("mailsources:test", args=[source.pk]), follow=True).content.decode()
    source.refresh_from_db()
    assert "The source is enabled now" in page
    assert source.enabled and source.status == SourceStatus.IDLE and source.status_message == ""
    assert services.sources_due() == [source.pk]


def test_a_source_disabled_later_stays_disabled_after_a_test(client, staff, imap_mailbox, dovecot, group_a):
    client.force_login(staff)
    client.post(reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a))
    source = MailSource.objects.get()
    assert source.enabled and source.status == SourceStatus.IDLE  # enabled explicitly on the form
    client.post(reverse("mailsources:edit", args=[source.pk]), imap_form(imap_mailbox, dovecot, group_a, enabled=None))
    client.post(reverse("mailsources:test", args=[source.pk]))
    source.refresh_from_db()
    assert not source.enabled


def test_enabling_a_waiting_source_on_the_form_clears_the_wait(client, staff, imap_mailbox, dovecot, group_a):
    client.force_login(staff)
    client.post(reverse("mailsources:create", args=["imap"]), imap_form(imap_mailbox, dovecot, group_a, enabled=None))
    source = MailSource.objects.get()
    client.post(reverse("mailsources:edit", args=[source.pk]), imap_form(imap_mailbox, dovecot, group_a))
    source.refresh_from_db()
    assert source.enabled and source.status == SourceStatus.IDLE and source.status_message == ""


# --- Progress bar ---------------------------------------------------------------------------

START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def run(**fields) -> SyncRun:
    return SyncRun(started=START, **fields)


def test_progress_has_percent_time_taken_and_time_left_at_the_pace_so_far():
    now = START + dt.timedelta(seconds=60)
    bar = run_progress(run(done=120, total=480), now)
    assert bar == {"percent": 25, "elapsed": "1 min 00 s", "eta": "3 min 00 s", "eta_seconds": 180, "running": True}


def test_no_estimate_without_a_total_or_before_the_first_mail():
    now = START + dt.timedelta(seconds=30)
    assert run_progress(run(done=5, total=None), now)["percent"] is None
    assert run_progress(run(done=5, total=None), now)["eta"] == ""
    assert run_progress(run(done=0, total=100), now)["eta_seconds"] is None
    assert run_progress(None, now)["percent"] is None


def test_a_finished_run_shows_its_duration_and_no_time_left():
    finished = run(done=480, total=480, finished=START + dt.timedelta(hours=2, minutes=7), status=RunStatus.OK)
    bar = run_progress(finished, START + dt.timedelta(days=1))
    assert bar == {"percent": 100, "elapsed": "2 h 07 min", "eta": "", "eta_seconds": None, "running": False}


def test_duration_texts():
    assert [duration_text(s) for s in (0, 45.4, 65, 3599, 3600, None)] == [
        "0 s",
        "45 s",
        "1 min 05 s",
        "59 min 59 s",
        "1 h 00 min",
        "",
    ]


def test_the_page_and_its_json_carry_the_bar_the_history_and_last_run(client, staff, group_a):
    source = MailSource.objects.create(kind="imap", name="s", owner_group=group_a, host="h", username="u")
    SyncRun.objects.create(source=source, done=100, total=400, new=100)
    MailSource.objects.filter(pk=source.pk).update(last_run_at=START)
    client.force_login(staff)
    html = client.get(reverse("mailsources:detail", args=[source.pk])).content.decode()
    assert '<progress id="source-progress-bar" max="100" value="25"' in html
    assert 'id="source-last-run">' + timezone.localtime(START).strftime("%Y-%m-%d %H:%M:%S") in html
    assert 'class="run-status status-running">Running<' in html
    data = client.get(reverse("mailsources:progress", args=[source.pk])).json()
    assert data["bar"]["percent"] == 25 and data["bar"]["running"]
    assert data["runs"][0]["status"] == "running" and data["runs"][0]["finished"] == "running"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["runs"][0]["started"])
    assert data["last_run"] == timezone.localtime(START).strftime("%Y-%m-%d %H:%M:%S")
