"""The dashboard (issue 16): precomputed daily figures, search coverage, queue
backlog, the alarm rules (with a clock the test passes as ``now``) and who may
see which figures — staff the WebAdmin one, users the figures of their own
documents in the WebDMS overview."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from kombu import Connection

from archive import charts, dashboard
from archive.models import ArchiveDay, Document, DocumentFile, ExtractionStatus
from mailsources import dashboard as sources_dashboard
from mailsources.models import ArchivedMail, MailboxStatus, MailSource, RunStatus, SourceKind, SourceStatus, SyncRun
from webadmin import dashboard as webadmin_dashboard

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/2")
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def _created(document: Document, moment: dt.datetime) -> None:
    """Backdate a document and its files (``created`` is auto_now_add)."""
    Document.objects.filter(pk=document.pk).update(created=moment)
    DocumentFile.objects.filter(document=document).update(created=moment)


def _source(group, name: str = "Office", *, interval: int = 15, created: dt.datetime = NOW) -> MailSource:
    source = MailSource.objects.create(
        kind=SourceKind.M365, name=name, owner_group=group, interval_minutes=interval, mailboxes="a@example.org"
    )
    MailSource.objects.filter(pk=source.pk).update(created=created)
    source.refresh_from_db()
    return source


def _mail(source: MailSource, document: Document, mailbox: str, size: int, moment: dt.datetime) -> None:
    mail = ArchivedMail.objects.create(
        source=source, mailbox=mailbox, sha256=uuid.uuid4().hex * 2, document=document, size=size
    )
    ArchivedMail.objects.filter(pk=mail.pk).update(created=moment)
    _created(document, moment)  # archived in one transaction: the same moment


def _done(document: Document) -> None:
    DocumentFile.objects.filter(document=document).update(extraction_status=ExtractionStatus.DONE)


# --------------------------------------------------------------------------- figures


def test_daily_figures_count_documents_and_bytes_per_day_and_group(make_document, group_a, group_b):
    for day in (3, 3, 1):
        _created(make_document(b"x" * 10), NOW - dt.timedelta(days=day))
    _created(make_document(b"y" * 7, owner_group=group_b), NOW - dt.timedelta(days=1))

    webadmin_dashboard.figures_refresh(full=True, now=NOW)

    rows = {(r.date, r.owner_group_id): r for r in ArchiveDay.objects.filter(source=0)}
    three_days_ago = (NOW - dt.timedelta(days=3)).date()
    assert rows[three_days_ago, group_a.pk].documents == 2
    assert rows[three_days_ago, group_a.pk].bytes == 20
    assert rows[three_days_ago, group_a.pk].indexed == 2  # uploads are indexed in their transaction
    days = dashboard.growth_per_day(None, now=NOW, days=7)
    assert [p.documents for p in days] == [0, 0, 0, 2, 0, 2, 0]
    assert [p.bytes for p in days][-2] == 17
    only_b = dashboard.growth_per_day([group_b.pk], now=NOW, days=7)
    assert [p.documents for p in only_b] == [0, 0, 0, 0, 0, 1, 0]
    months = dashboard.growth_per_month(None, now=NOW, months=3)
    assert [(p.label, p.documents) for p in months] == [("2026-09", 0), ("2026-10", 0), ("2026-11", 4)]
    assert dashboard.totals(None).documents == 4
    assert dashboard.totals(None).bytes == 37


def test_the_frequent_refresh_recomputes_today_and_yesterday_and_keeps_older_days(make_document, group_a, settings):
    settings.RETENTION_DELETION_LOCK = False  # the old document is deleted directly
    old = make_document()
    _created(old, NOW - dt.timedelta(days=10))
    webadmin_dashboard.figures_refresh(full=True, now=NOW)
    # The old day's row is not recounted by the frequent refresh: a change
    # there shows after the nightly one.
    Document.objects.filter(pk=old.pk).delete()
    _created(make_document(), NOW - dt.timedelta(hours=1))
    _created(make_document(), NOW - dt.timedelta(days=1))

    webadmin_dashboard.figures_refresh(now=NOW)

    assert [p.documents for p in dashboard.growth_per_day(None, now=NOW, days=11)] == [1] + [0] * 8 + [1, 1]
    webadmin_dashboard.figures_refresh(full=True, now=NOW)
    assert dashboard.totals(None).documents == 2


def test_the_first_refresh_computes_every_day(make_document):
    _created(make_document(), NOW - dt.timedelta(days=400))
    webadmin_dashboard.figures_refresh(now=NOW)
    assert dashboard.totals(None).documents == 1


def test_mail_figures_per_source_and_mailbox(make_document, group_a):
    source = _source(group_a)
    other = _source(group_a, "Second")
    for mailbox, size, days in (("a@example.org", 100, 1), ("a@example.org", 50, 40), ("b@example.org", 7, 0)):
        _mail(source, make_document(), mailbox, size, NOW - dt.timedelta(days=days))
    _mail(other, make_document(), "c@example.org", 9, NOW)

    webadmin_dashboard.figures_refresh(full=True, now=NOW)

    found = {(m.source, m.mailbox): m for m in dashboard.growth_per_mailbox(None, now=NOW)}
    assert set(found) == {(source.pk, "a@example.org"), (source.pk, "b@example.org"), (other.pk, "c@example.org")}
    assert found[source.pk, "a@example.org"].documents == 2
    assert found[source.pk, "a@example.org"].recent == 1
    assert found[source.pk, "a@example.org"].bytes == 150
    # Mail rows do not count twice in the all-documents totals.
    assert dashboard.totals(None).documents == 4


# --------------------------------------------------------------------------- coverage


def test_coverage_counts_pending_and_failed_files_and_finds_the_oldest(make_document, group_a, group_b):
    done = make_document()
    _done(done)
    pending = make_document()  # its extraction task never ran (no commit in this test)
    _created(pending, NOW - dt.timedelta(hours=3))
    failed = make_document(owner_group=group_b)
    DocumentFile.objects.filter(document=failed).update(extraction_status=ExtractionStatus.FAILED)
    none = make_document(owner_group=group_b)
    DocumentFile.objects.filter(document=none).update(extraction_status=ExtractionStatus.NONE)
    webadmin_dashboard.figures_refresh(full=True, now=NOW)

    found = dashboard.coverage(None)
    assert (found.documents, found.pending_files, found.failed_files, found.waiting_documents) == (4, 1, 1, 2)
    assert found.searchable == 2
    assert found.percent == pytest.approx(50.0)
    assert found.oldest_pending == NOW - dt.timedelta(hours=3)
    mine = dashboard.coverage([group_a.pk])
    assert (mine.documents, mine.pending_files, mine.failed_files, mine.percent) == (2, 1, 0, 50.0)
    theirs = dashboard.coverage([group_b.pk])
    assert (theirs.documents, theirs.failed_files, theirs.oldest_pending) == (2, 1, None)


def test_an_empty_archive_is_fully_covered(db):
    found = dashboard.coverage(None)
    assert found.percent == 100.0
    assert dashboard.coverage_alarms(found, now=NOW) == []


def test_coverage_alarms_when_a_pending_file_is_older_than_the_threshold(make_document):
    _created(make_document(), NOW - dt.timedelta(minutes=90))
    found = dashboard.coverage(None)

    assert dashboard.coverage_alarms(found, now=NOW, stall_minutes=120) == []
    assert dashboard.coverage_alarms(found, now=NOW - dt.timedelta(minutes=40), stall_minutes=60) == []
    (alarm,) = dashboard.coverage_alarms(found, now=NOW, stall_minutes=60)
    assert "1 file(s) wait" in alarm and "90 minutes" in alarm


# --------------------------------------------------------------------------- sources


def test_a_source_stalls_when_its_last_finished_run_is_older_than_n_intervals(group_a):
    source = _source(group_a, interval=15, created=NOW - dt.timedelta(days=5))
    run = SyncRun.objects.create(source=source, status=RunStatus.OK)
    SyncRun.objects.filter(pk=run.pk).update(
        started=NOW - dt.timedelta(minutes=50), finished=NOW - dt.timedelta(minutes=44)
    )
    # A failed run later does not count as finished.
    failed = SyncRun.objects.create(source=source, status=RunStatus.FAILED)
    SyncRun.objects.filter(pk=failed.pk).update(finished=NOW - dt.timedelta(minutes=5))

    assert sources_dashboard.source_alarms(now=NOW, intervals=3) == []  # 44 < 45 minutes
    (alarm,) = sources_dashboard.source_alarms(now=NOW + dt.timedelta(minutes=2), intervals=3)
    assert "'Office' stalls" in alarm and "46 minutes" in alarm
    MailSource.objects.filter(pk=source.pk).update(enabled=False)
    assert sources_dashboard.source_alarms(now=NOW + dt.timedelta(days=1), intervals=3) == []


def test_a_new_source_gets_its_intervals_from_its_creation(group_a):
    _source(group_a, interval=10, created=NOW - dt.timedelta(minutes=25))
    assert sources_dashboard.source_alarms(now=NOW, intervals=3) == []
    (alarm,) = sources_dashboard.source_alarms(now=NOW + dt.timedelta(minutes=10), intervals=3)
    assert "no finished run since it was created" in alarm


def test_failing_mailboxes_and_stopped_sources_alarm(group_a):
    source = _source(group_a, created=NOW)
    MailboxStatus.objects.create(source=source, mailbox="a@example.org", status=SourceStatus.ERROR, message="403")
    MailSource.objects.filter(pk=source.pk).update(status=SourceStatus.ERROR, status_message="bad secret")
    alarms = sources_dashboard.source_alarms(now=NOW, intervals=3)
    assert any("a@example.org" in a and "403" in a for a in alarms)
    assert any("stopped with an error: bad secret" in a for a in alarms)


def test_runs_per_day_count_finished_and_failed_runs_and_the_longest(group_a):
    source = _source(group_a)
    for status, minutes, took in ((RunStatus.OK, 60, 30), (RunStatus.FAILED, 30, 5), (RunStatus.PARTIAL, 10, 400)):
        run = SyncRun.objects.create(source=source, status=status)
        started = NOW - dt.timedelta(minutes=minutes)
        SyncRun.objects.filter(pk=run.pk).update(started=started, finished=started + dt.timedelta(seconds=took))
    today = sources_dashboard.runs_per_day(now=NOW, days=2)[-1]
    assert (today.finished, today.failed, today.longest_seconds) == (1, 2, 400.0)


# --------------------------------------------------------------------------- queues


def test_filesystem_backlog_counts_each_queues_message_files(settings, tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    # control_folder too: kombu otherwise writes its exchange files to ./control.
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(tmp_path / "control"),
    }
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    # Names of this test's own: kombu keeps the filesystem exchanges in a process-wide state.
    first, second, empty = (f"{n}{uuid.uuid4().hex[:8]}" for n in ("sync", "extraction", "processing"))
    with Connection("filesystem://", transport_options=options) as conn:
        for queue, n in ((first, 2), (second, 3)):
            q = conn.SimpleQueue(queue)
            for i in range(n):
                q.put({"n": i})
            q.close()
    assert dashboard.queue_backlog([first, empty, second]) == {first: 2, empty: 0, second: 3}


def test_redis_backlog_is_the_length_of_each_queue(settings):
    name = f"dash-test-{uuid.uuid4().hex}"
    settings.CELERY_BROKER_URL = TEST_REDIS_URL
    with Connection(TEST_REDIS_URL) as conn:
        q = conn.SimpleQueue(name)
        for i in range(4):
            q.put({"n": i}, priority=9 if i == 0 else None)
        q.close()
    try:
        assert dashboard.queue_backlog([name, f"{name}-empty"]) == {name: 4, f"{name}-empty": 0}
    finally:
        client = redis.Redis.from_url(TEST_REDIS_URL)
        client.delete(name, *(f"{name}\x06\x16{p}" for p in (3, 6, 9)))


def test_an_unknown_or_unreachable_broker_is_not_applicable(settings):
    settings.CELERY_BROKER_URL = "memory://"
    assert dashboard.queue_backlog(["sync"]) == {"sync": None}
    with socket_closed() as port:
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
        assert dashboard.queue_backlog(["sync"]) == {"sync": None}


class socket_closed:
    """A loopback port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


# --------------------------------------------------------------------------- charts


def test_charts_are_svg_with_escaped_labels():
    svg = charts.bar_chart(
        ["<script>x</script>", "b&c"], [charts.Series('s"1', [1, 2]), charts.Series("s2", [0, 3])], title="T<i>"
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<script>" not in svg and "<i>" not in svg
    assert "&lt;script&gt;" in svg and "b&amp;c" in svg and "s&quot;1" in svg
    assert 'style="' not in svg  # the CSP allows no inline styles
    assert svg.count('<g class="bar"') == 2
    meter = charts.meter(42.5, title="Cover")
    assert "42.5 %" in meter and 'width="136.0"' in meter


# --------------------------------------------------------------------------- pages and access


def test_webadmin_home_is_for_staff_only_and_keeps_its_links(client, alice, admin_user):
    url = reverse("webadmin:home")
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(alice)
    assert client.get(url).status_code == 403
    client.force_login(admin_user)
    page = client.get(url).content.decode()
    for link in (
        reverse("webadmin:archive_settings"),
        reverse("mailsources:list"),
        reverse("admin:archive_fielddefinition_changelist"),
        reverse("webadmin:users"),
        reverse("webadmin:groups"),
    ):
        assert f'href="{link}"' in page
    assert 'id="dashboard"' in page and "<svg" in page and "Search coverage" in page


def test_the_home_page_shows_the_alarm_banner_with_its_reason(client, admin_user, make_document, settings):
    settings.DASHBOARD_COVERAGE_STALL_MINUTES = 30
    _created(make_document(), timezone.now() - dt.timedelta(hours=2))
    client.force_login(admin_user)
    page = client.get(reverse("webadmin:home")).content.decode()
    assert 'id="dashboard-alarm"' in page and "Search coverage stalls" in page


def test_the_home_page_reads_no_document_rows(client, admin_user, make_document):
    """At a million documents a page view must not count them: figures come
    from ArchiveDay, files only by the extraction-status index."""
    for _ in range(3):
        make_document()
    webadmin_dashboard.figures_refresh(full=True)
    client.force_login(admin_user)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("webadmin:home")).status_code == 200
    table = connection.ops.quote_name("archive_document")
    assert not [q["sql"] for q in queries if f"FROM {table}" in q["sql"]]
    for q in queries:
        if connection.ops.quote_name("archive_documentfile") in q["sql"]:
            assert "extraction_status" in q["sql"], q["sql"]


def test_reindex_is_a_staff_post_with_csrf_and_queues_the_waiting_documents(alice, admin_user, make_document):
    waiting = [make_document(), make_document()]
    DocumentFile.objects.filter(document=waiting[1]).update(
        extraction_status=ExtractionStatus.FAILED, extraction_attempts=3
    )
    url = reverse("webadmin:dashboard_reindex")
    before = dashboard.queue_backlog(["extraction"])["extraction"]

    user = Client(enforce_csrf_checks=True)
    user.force_login(alice)
    assert user.post(url).status_code == 403
    staff = Client(enforce_csrf_checks=True)
    staff.force_login(admin_user)
    assert staff.get(url).status_code == 405
    assert staff.post(url).status_code == 403  # no CSRF token
    assert dashboard.queue_backlog(["extraction"])["extraction"] == before

    page = staff.get(reverse("webadmin:home"))
    token = page.cookies[settings.CSRF_COOKIE_NAME].value if settings.CSRF_COOKIE_NAME in page.cookies else None
    token = token or staff.cookies[settings.CSRF_COOKIE_NAME].value
    response = staff.post(url, {"csrfmiddlewaretoken": token}, follow=True)
    assert response.status_code == 200
    assert "2 document(s) queued" in response.content.decode()
    # The failed file got fresh attempts; both documents are on the real (filesystem) broker's queue.
    assert DocumentFile.objects.get(document=waiting[1]).extraction_status == ExtractionStatus.PENDING
    assert dashboard.queue_backlog(["extraction"])["extraction"] == (before or 0) + 2


def test_the_webdms_overview_shows_a_user_only_their_documents(client, alice, bob, make_document, group_b):
    make_document()
    make_document()
    for _ in range(3):
        DocumentFile.objects.filter(document=make_document(owner_group=group_b)).update(
            extraction_status=ExtractionStatus.FAILED
        )
    webadmin_dashboard.figures_refresh(full=True)
    url = reverse("archive:overview")
    assert client.get(url).status_code == 302
    client.force_login(alice)
    page = client.get(url).content.decode()
    assert 'id="figure-documents">2<' in page
    assert "0 failed" in page
    client.force_login(bob)
    page = client.get(url).content.decode()
    assert 'id="figure-documents">3<' in page and "3 failed" in page
    assert "Re-index" not in page  # the action is the administrators'
    table = client.get(reverse("archive:table")).content.decode()
    assert f'href="{url}"' in table


def test_the_beat_refreshes_the_figures_on_the_processing_queue():
    from webadmin.celery import app

    entries = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "webadmin.tasks.refresh_dashboard_figures"
    ]
    assert {bool(e.get("kwargs", {}).get("full")) for e in entries} == {False, True}
    assert app.amqp.router.route({}, "webadmin.tasks.refresh_dashboard_figures")["queue"].name == "processing"
    assert "webadmin.tasks.refresh_dashboard_figures" in app.tasks


def test_the_refresh_task_runs_the_service(make_document):
    from webadmin import tasks

    make_document()
    tasks.refresh_dashboard_figures()
    assert dashboard.totals(None).documents == 1


def test_the_home_page_shows_a_search_index_upgrade_while_one_is_pending(client, admin_user, make_document):
    from archive.models import SearchIndexState

    documents = [make_document() for _ in range(3)]
    client.force_login(admin_user)
    assert 'id="index-upgrade"' not in client.get(reverse("webadmin:home")).content.decode()
    SearchIndexState.objects.update_or_create(pk=1, defaults={"pending": True, "checked_through": documents[0].pk})
    page = client.get(reverse("webadmin:home")).content.decode()
    assert f"entries up to document {documents[0].pk} of {documents[-1].pk} are checked" in page
