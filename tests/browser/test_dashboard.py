"""The dashboard in headless Chromium: the WebAdmin home draws its charts as
pictures under the pages' CSP, shows the red alarm banner with its reason,
and the WebDMS overview shows a user their own figures. Screenshots are kept
in test-artifacts/dashboard-*.png."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from archive.models import Document, DocumentFile, ExtractionStatus, Theme
from mailsources.models import ArchivedMail, MailSource, RunStatus, SourceKind, SyncRun
from tests.browser.settings_form import log_in_as
from webadmin import dashboard

pytestmark = pytest.mark.django_db(transaction=True)


def _archive(make_document, group_a, group_b) -> None:
    """Two months of documents, mail from a source, runs, and one stalled file."""
    now = timezone.now()
    source = MailSource.objects.create(
        kind=SourceKind.M365,
        name="Office <365>",
        owner_group=group_a,
        interval_minutes=15,
        mailboxes="sales@example.org",
    )
    for i in range(40):
        moment = now - dt.timedelta(days=i % 25, hours=i)
        group = group_a if i % 3 else group_b
        document = make_document(f"document {i} ".encode() * (i + 1), name=f"d{i}.txt", owner_group=group)
        Document.objects.filter(pk=document.pk).update(created=moment)
        files = DocumentFile.objects.filter(document=document)
        files.update(created=moment, extraction_status=ExtractionStatus.DONE)
        if i % 4 == 0:
            mail = ArchivedMail.objects.create(
                source=source,
                mailbox="sales@example.org" if i % 8 else "<b>boss</b>@example.org",
                sha256=uuid.uuid4().hex * 2,
                document=document,
                size=1000 * i,
            )
            ArchivedMail.objects.filter(pk=mail.pk).update(created=moment)
    stalled = DocumentFile.objects.filter(document__owner_group=group_a).order_by("id").first()
    assert stalled is not None
    DocumentFile.objects.filter(pk=stalled.pk).update(
        extraction_status=ExtractionStatus.PENDING, created=now - dt.timedelta(hours=5)
    )
    for day in range(10):
        started = now - dt.timedelta(days=day, minutes=30)
        run = SyncRun.objects.create(source=source, status=RunStatus.FAILED if day in (2, 3) else RunStatus.OK)
        SyncRun.objects.filter(pk=run.pk).update(started=started, finished=started + dt.timedelta(seconds=20 + 9 * day))
    dashboard.figures_refresh(full=True)


def _chart_boxes(page) -> list[dict]:
    return page.eval_on_selector_all(
        "svg.chart, svg.meter",
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return {id: e.id, w: r.width, h: r.height, bars: e.querySelectorAll('rect').length}; })",
    )


def test_the_webadmin_dashboard_draws_charts_and_the_alarm(
    page, live_server, admin_user, make_document, group_a, group_b, artifacts_dir
):
    _archive(make_document, group_a, group_b)
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    log_in_as(page, live_server, admin_user)
    page.goto("/webadmin/")

    banner = page.locator("#dashboard-alarm")
    assert banner.is_visible()
    assert "Search coverage stalls" in banner.inner_text()
    assert page.eval_on_selector("#dashboard-alarm", "e => getComputedStyle(e).backgroundColor") == "rgb(183, 28, 28)"
    boxes = {b["id"] or "meter": b for b in _chart_boxes(page)}
    for chart in (
        "chart-days",
        "chart-months",
        "chart-bytes",
        "chart-mailboxes",
        "chart-runs",
        "chart-durations",
        "chart-queues",
        "meter",
    ):
        assert boxes[chart]["w"] > 200 and boxes[chart]["h"] > 20, (chart, boxes.get(chart))
    assert boxes["chart-days"]["bars"] >= 20
    # Colours come from the stylesheet: a bar is filled blue, a failed run red.
    assert page.eval_on_selector("#chart-days rect.s0", "e => getComputedStyle(e).fill") == "rgb(30, 136, 229)"
    assert page.eval_on_selector("#chart-runs rect.s1", "e => getComputedStyle(e).fill") == "rgb(229, 57, 53)"
    # An address with markup is a label, not markup.
    assert page.locator("#chart-mailboxes b").count() == 0
    assert "<b>boss</b>@example.org" in page.eval_on_selector("#chart-mailboxes", "e => e.textContent")
    assert page.locator("#backlog .queue-size").count() == 3
    assert not violations, violations
    page.screenshot(path=str(artifacts_dir / "dashboard-webadmin.png"), full_page=True)

    page.click("#reindex")
    page.wait_for_load_state()
    assert "Re-index started: 1 document(s) queued" in page.text_content(".messages")


def test_the_webdms_overview_shows_the_users_documents(
    page, live_server, alice, make_document, group_a, group_b, artifacts_dir
):
    _archive(make_document, group_a, group_b)
    log_in_as(page, live_server, alice)
    page.goto("/dms/")
    page.click("#overview-link")
    page.wait_for_load_state()
    mine = Document.objects.filter(owner_group=group_a).count()
    assert page.text_content("#figure-documents") == str(mine)
    boxes = {b["id"] or "meter": b for b in _chart_boxes(page)}
    assert boxes["chart-days"]["w"] > 200 and boxes["meter"]["w"] > 100
    assert page.locator("#reindex").count() == 0
    page.screenshot(path=str(artifacts_dir / "dashboard-webdms.png"), full_page=True)


def test_the_overview_in_the_dark_theme(page, live_server, alice, make_document, group_a, group_b, artifacts_dir):
    from archive.models import ArchiveSettings

    _archive(make_document, group_a, group_b)
    settings = ArchiveSettings.load()
    settings.theme = Theme.DARK
    settings.save()
    log_in_as(page, live_server, alice)
    page.goto("/dms/overview/")
    # Chart text follows the theme's text colour, readable on the dark page.
    fill = page.eval_on_selector("#chart-days .chart-title", "e => getComputedStyle(e).fill")
    color = page.eval_on_selector("body", "e => getComputedStyle(e).color")
    assert fill == color
    page.screenshot(path=str(artifacts_dir / "dashboard-webdms-dark.png"), full_page=True)
