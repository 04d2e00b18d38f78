"""The reconciliation report against a real Dovecot after a real sync: every
reason a mail on the server is not archived, and archived mail gone from the
server; the page, its CSV and ``manage.py reconcile``."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse

from mailsources import reconcile
from mailsources.models import RunStatus
from tests.mailsources.imap_pipeline import mail, sync

pytestmark = pytest.mark.django_db


def delete_on_server(mailbox, folder: str, uid: int) -> None:
    with mailbox.connect() as conn:
        conn.select(folder)
        conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
        conn.expunge()


@pytest.fixture
def scenario(imap_mailbox, imap_source_factory, settings):
    old = datetime.now(UTC) - timedelta(days=10)
    mailbox = imap_mailbox
    mailbox.append("INBOX", mail("archived"), internal_date=old)
    gone = mailbox.append("INBOX", mail("archived, then deleted on the server"), internal_date=old)
    young = mailbox.append("INBOX", mail("too young"), internal_date=datetime.now(UTC))
    excluded = mailbox.append("Private", mail("in a folder not archived"), internal_date=old)
    source = imap_source_factory(mailbox, folders="INBOX, Projects", min_age_days=3)
    run = sync(source)
    assert run.status == RunStatus.PARTIAL  # Projects does not exist yet: its cursor records the failure
    failed = mailbox.append("Projects", mail("in the folder that failed"), internal_date=old)
    big = mailbox.append("INBOX", mail("too big", body="x" * 6000), internal_date=old)
    new = mailbox.append("INBOX", mail("arrived after the run"), internal_date=old)
    delete_on_server(mailbox, "INBOX", gone)
    settings.MAIL_MAX_MESSAGE_BYTES = 5000
    uids = {"young": young, "excluded": excluded, "failed": failed, "big": big, "new": new, "gone": gone}
    return source, {name: str(uid) for name, uid in uids.items()}


def test_every_reason_and_every_gone_mail_is_named(scenario):
    source, uids = scenario
    reports = {r.folder: r for r in reconcile.reconcile_source(source)}
    assert set(reports) == {"INBOX", "Private", "Projects"}
    inbox = reports["INBOX"]
    assert (inbox.on_server, inbox.archived, inbox.not_archived, inbox.gone) == (4, 1, 3, 1)
    reasons = {(r.folder, row.location): (row.state, row.reason) for r in reports.values() for row in r.rows}
    assert len(reasons) == 6
    young = reasons["INBOX", uids["young"]]
    assert young == (reconcile.State.NOT_ARCHIVED, "too young (archived when 3 day(s) old)")
    assert reasons["INBOX", uids["big"]][1].startswith("too big (")
    assert reasons["INBOX", uids["new"]][1] == "new since the last run"
    assert reasons["Private", uids["excluded"]][1] == "excluded folder (not in the source's folder list)"
    state, reason = reasons["Projects", uids["failed"]]
    assert reason.startswith("failed: ") and "Projects" in reason and "not found" in reason
    assert reasons["INBOX", uids["gone"]] == (reconcile.State.GONE, "removed on the server")
    gone_row = next(row for row in inbox.rows if row.state == reconcile.State.GONE)
    assert gone_row.document is not None and gone_row.message_id


def test_a_mailbox_that_cannot_be_read_is_one_error_row(imap_mailbox, imap_source_factory):
    source = imap_source_factory(imap_mailbox, password="wrong")
    [report] = reconcile.reconcile_source(source)
    assert "Authentication failed" in report.error and not report.rows


def test_the_command_prints_the_report_and_writes_the_csv(scenario, tmp_path):
    source, uids = scenario
    out = io.StringIO()
    target = tmp_path / "reconcile.csv"
    call_command("reconcile", "--source", str(source.pk), "--csv", str(target), stdout=out)
    text = out.getvalue()
    assert "INBOX: 4 on the server, 1 archived, 3 not archived, 1 archived but gone" in text
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert sorted(r["location"] for r in rows) == sorted(uids.values())
    assert {r["folder"] for r in rows} == {"INBOX", "Private", "Projects"}


def test_the_page_and_its_csv(scenario, client, admin_user):
    source, uids = scenario
    client.force_login(admin_user)
    assert client.get(reverse("reconcile:report")).status_code == 200
    page = client.get(reverse("reconcile:report"), {"source": source.pk}).content.decode()
    assert "too young" in page and "excluded folder" in page and "removed on the server" in page
    response = client.get(reverse("reconcile:report"), {"source": source.pk, "format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == len(uids)
    assert client.get(reverse("reconcile:report"), {"source": "x1"}).status_code == 400
    assert client.get(reverse("reconcile:report"), {"source": "999999"}).status_code == 404
