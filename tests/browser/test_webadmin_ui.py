"""WebAdmin of issue 15 in headless Chromium: users and groups pages, the
new-source form's defaults, the source page's progress bar following a run.
Screenshots: test-artifacts/webadmin-*.png."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from mailsources.models import MailSource, RunStatus, SyncRun

pytestmark = pytest.mark.django_db(transaction=True)


def test_users_and_groups_pages(page, login, admin_user, alice, group_a, artifacts_dir):
    login("admin", "admin-pass-123")
    page.goto("/webadmin/")
    page.click("#menu-users")
    page.wait_for_selector("#users tr[data-user='alice']")
    page.click("#user-create")
    page.fill("#id_username", "carol")
    page.fill("#id_email", "carol@example.com")
    page.check(f"input[name=groups][value='{group_a.pk}']")
    page.fill("#id_password1", "short")
    page.fill("#id_password2", "short")
    page.click("button.primary")
    # The error stands at its field, in the product's look.
    page.wait_for_selector("tr.error[data-field='password1'] .field-errors")
    page.screenshot(path=str(artifacts_dir / "webadmin-user-error.png"), full_page=True)
    page.fill("#id_password1", "a-long-passphrase-9")
    page.fill("#id_password2", "a-long-passphrase-9")
    page.click("button.primary")
    page.wait_for_selector("#users tr[data-user='carol']")
    page.screenshot(path=str(artifacts_dir / "webadmin-users.png"), full_page=True)
    assert list(User.objects.get(username="carol").groups.all()) == [group_a]
    page.click("#users tr[data-user='alice'] button.toggle-active")
    page.wait_for_selector("#users tr.inactive[data-user='alice']")
    assert not User.objects.get(username="alice").is_active
    page.goto("/webadmin/groups/")
    page.click("#group-create")
    page.fill("#id_name", "Board")
    page.check(f"input[name=members][value='{alice.pk}']")
    page.click("button.primary")
    page.wait_for_selector("#groups tr[data-group='Board']")
    page.screenshot(path=str(artifacts_dir / "webadmin-groups.png"), full_page=True)
    assert list(Group.objects.get(name="Board").user_set.all()) == [alice]


def test_the_new_source_form_defaults(page, login, admin_user, artifacts_dir):
    Group.objects.exclude(name="Archive").delete()
    only = Group.objects.get(name="Archive")
    login("admin", "admin-pass-123")
    page.goto("/webadmin/sources/new/imap/")
    assert page.input_value("#id_owner_group") == str(only.pk)
    assert page.input_value("#id_folders") == ""
    assert not page.is_checked("#id_enabled")
    fields = page.eval_on_selector_all("table.form tr[data-field]", "rows => rows.map(r => r.dataset.field)")
    assert fields[fields.index("username") + 1] == "secret"
    page.screenshot(path=str(artifacts_dir / "webadmin-new-source.png"), full_page=True)


def test_the_progress_bar_follows_the_run(page, login, admin_user, group_a, artifacts_dir):
    source = MailSource.objects.create(kind="imap", name="Office", owner_group=group_a, host="h", username="u")
    MailSource.objects.filter(pk=source.pk).update(status="running")
    run = SyncRun.objects.create(source=source, done=10, total=40, new=10)
    login("admin", "admin-pass-123")
    page.goto(f"/webadmin/sources/{source.pk}/")
    page.wait_for_selector("#source-progress-box[data-percent='25']")
    assert page.get_attribute("#source-progress-bar", "value") == "25"
    # The worker goes on: the page follows without a reload (it polls while the run runs).
    SyncRun.objects.filter(pk=run.pk).update(done=30, new=30)
    page.wait_for_selector("#source-progress-box[data-percent='75']")
    assert "left" in page.inner_text("#source-progress-time")
    page.screenshot(path=str(artifacts_dir / "webadmin-progress.png"), full_page=True)
    SyncRun.objects.filter(pk=run.pk).update(done=40, new=40, status=RunStatus.OK, finished=run.started)
    MailSource.objects.filter(pk=source.pk).update(status="ok", last_run_at=run.started)
    page.wait_for_selector("#run-history tr.run-ok .status-ok")
    page.wait_for_selector("#source-progress-box.finished[data-percent='100']")
    assert page.inner_text("#source-last-run") != "—"
