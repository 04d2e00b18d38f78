"""The export and procedure documentation pages: administrators only, a
requested export is logged and queued, its progress is served, the ZIP is
streamed, expired exports vanish; each procedure documentation generation is
kept, hashed and logged, and served self-contained."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from archive.exports import builder, procedure
from archive.exports.models import Export, ExportStatus, ProcedureDocument
from archive.integrity.models import AuditEntry
from tests.exports.helpers import record_archived

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_user, client):
    client.force_login(admin_user)
    return client


def test_normal_users_get_403_on_every_export_page(client, alice):
    client.force_login(alice)
    for name in ("exports:list", "exports:procedure"):
        assert client.get(reverse(name)).status_code == 403
    assert client.post(reverse("exports:list"), {"target": "zip"}).status_code == 403
    assert client.post(reverse("exports:procedure_generate")).status_code == 403
    assert client.get(reverse("reconcile:report")).status_code == 403


# Transactional: MariaDB's full-text index sees committed rows only.
@pytest.mark.django_db(transaction=True)
def test_an_export_is_requested_logged_built_and_downloaded(staff, make_document, admin_user):
    doc = make_document(content=b"contract", name="contract.txt", values={"title": "Contract"})
    record_archived(doc)
    response = staff.post(reverse("exports:list"), {"query": "Contract", "target": "zip", "with_mbox": "on"})
    export = Export.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("exports:detail", args=[export.pk])
    assert export.status == ExportStatus.PENDING and export.total == 1 and export.created_by == admin_user
    requested = AuditEntry.objects.get(action="export")
    assert requested.details["event"] == "requested" and requested.actor == "admin"
    progress = staff.get(reverse("exports:progress", args=[export.pk])).json()
    assert progress["status"] == "pending" and not progress["downloadable"]
    assert staff.get(reverse("exports:download", args=[export.pk])).status_code == 404

    builder.export_build(export.pk)  # what the task does
    progress = staff.get(reverse("exports:progress", args=[export.pk])).json()
    assert progress["status"] == "done" and progress["downloadable"] and progress["done"] == 1
    download = staff.get(reverse("exports:download", args=[export.pk]))
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    body = b"".join(download.streaming_content)
    export.refresh_from_db()
    assert hashlib.sha256(body).hexdigest() == export.sha256
    events = list(AuditEntry.objects.filter(action="export").values_list("details__event", flat=True))
    assert events == ["requested", "built", "downloaded"]
    page = staff.get(reverse("exports:detail", args=[export.pk])).content.decode()
    assert export.sha256 in page


def test_a_bad_query_is_a_form_error_and_nothing_is_queued(staff):
    response = staff.post(reverse("exports:list"), {"query": "date:2024-13-45", "target": "zip"})
    assert response.status_code == 200 and b"Search query" in response.content
    assert not Export.objects.exists()


def test_an_inverted_date_range_is_refused(staff):
    response = staff.post(
        reverse("exports:list"), {"date_from": "2024-05-01", "date_to": "2024-04-01", "target": "zip"}
    )
    assert b"lies before its start" in response.content and not Export.objects.exists()


def test_expired_exports_are_removed_by_housekeeping(make_document, admin_user, settings):
    record_archived(make_document())
    export = Export.objects.create(created_by=admin_user)
    export = builder.export_build(export.pk)
    path = builder.export_file(export)
    assert path.is_file()
    assert builder.exports_expire(now=timezone.now()) == 0
    later = timezone.now() + dt.timedelta(days=settings.EXPORT_RETENTION_DAYS, seconds=1)
    assert builder.exports_expire(now=later) == 1
    export.refresh_from_db()
    assert export.status == ExportStatus.EXPIRED and not path.exists()


def test_each_procedure_documentation_generation_is_kept_hashed_and_logged(staff, admin_user, bob):
    first = staff.post(reverse("exports:procedure_generate"))
    second = staff.post(reverse("exports:procedure_generate"))
    documents = list(ProcedureDocument.objects.order_by("pk"))
    assert len(documents) == 2 and first.status_code == second.status_code == 302
    for document in documents:
        content = procedure.procedure_file(document).read_bytes()
        assert hashlib.sha256(content).hexdigest() == document.sha256
    assert AuditEntry.objects.filter(action=procedure.PROCEDURE_ACTION).count() == 2
    page = staff.get(reverse("exports:procedure_view", args=[documents[0].pk]))
    text = page.content.decode()
    assert "Procedure documentation" in text and "Legal" in text and "bob" in text  # groups and their users
    assert "Retention policies and legal holds" in text and "are not installed" not in text
    style = re.search(r"<style>(.*?)</style>", text, re.S).group(1).encode()
    digest = base64.b64encode(hashlib.sha256(style).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in page["Content-Security-Policy"]
    assert "script" not in page["Content-Security-Policy"] and "<script" not in text
    listing = staff.get(reverse("exports:procedure")).content.decode()
    assert documents[1].sha256 in listing


def test_the_procedure_documentation_names_the_sources_and_their_schedule(staff, group_a):
    from mailsources.models import MailSource

    MailSource.objects.create(kind="imap", name="Office mail", owner_group=group_a, host="mx.example.com",
                              username="office", interval_minutes=30, min_age_days=2)  # fmt: skip
    document = procedure.procedure_generate(user=None)
    text = Path(procedure.procedure_file(document)).read_text()
    assert "Office mail" in text and "every 30 min" in text and "2 days" in text
    assert "archive.exports.tasks.exports_expire" in text  # the scheduled jobs
    assert document.created_by is None


def test_a_build_whose_worker_was_killed_is_taken_over_and_a_live_one_is_not(make_document, admin_user, settings):
    from archive.exports import services

    record_archived(make_document())
    now = timezone.now()
    export = Export.objects.create(created_by=admin_user, status=ExportStatus.RUNNING, started=now, heartbeat=now)
    leftover = Path(settings.EXPORT_DIR) / f".partial-export-{export.pk}-20240101-000000"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a zip")
    assert builder.export_build(export.pk) is None  # alive: another worker has it
    assert services.exports_requeue(now=now) == 0
    later = now + builder.STALE + dt.timedelta(seconds=1)
    Export.objects.filter(pk=export.pk).update(heartbeat=now - builder.STALE - dt.timedelta(seconds=1))
    assert services.exports_requeue(now=later) == 1  # queued again (the broker here is the filesystem one)
    built = builder.export_build(export.pk)
    assert built is not None and built.status == ExportStatus.DONE and not leftover.exists()
