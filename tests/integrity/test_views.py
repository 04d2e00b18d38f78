"""What administrators see of integrity: the integrity page (latest
verification, findings, heads, anchors), the anchor's age on the WebAdmin
home, and a Django admin that shows the chains but changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from archive.integrity import anchoring, verify
from archive.integrity.models import Anchor, AuditEntry, LedgerEntry
from archive.models import Document

pytestmark = pytest.mark.django_db


def test_the_integrity_page_shows_the_latest_findings(client, admin_user, make_document, tsa_up):
    doc = make_document(values={"title": "Invoice"})
    anchoring.anchor_heads()
    verify.run_stored()
    Document.objects.filter(pk=doc.pk).update(values={**doc.values, "title": "Forged"})
    verify.run_stored()
    client.force_login(admin_user)
    html = client.get(reverse("integrity:overview")).content.decode()
    assert 'data-status="findings"' in html and 'data-kind="metadata_mismatch"' in html
    assert f"document {doc.pk}" in html
    assert 'id="anchor-status" data-state="ok"' in html
    assert f"#{LedgerEntry.objects.count()}" in html
    assert 'data-status="ok"' in html  # the earlier, clean run


def test_the_webadmin_home_shows_the_anchors_age_and_alarms_when_overdue(client, admin_user, tsa_up, settings):
    client.force_login(admin_user)
    settings.ANCHOR_INTERVAL = 3600
    anchor = anchoring.anchor_heads()
    html = client.get(reverse("webadmin:home")).content.decode()
    assert 'id="anchor-age" data-state="ok"' in html and "integrity timestamp" not in html
    Anchor.objects.filter(pk=anchor.pk).update(created=timezone.now() - dt.timedelta(hours=3))
    html = client.get(reverse("webadmin:home")).content.decode()
    assert 'id="anchor-age" data-state="overdue"' in html
    assert "The newest integrity timestamp is 3" in html


def test_without_a_tsa_the_home_says_so_without_an_alarm(client, admin_user, settings):
    settings.TSA_URL = ""
    client.force_login(admin_user)
    html = client.get(reverse("webadmin:home")).content.decode()
    assert 'data-state="off"' in html and "integrity timestamp" not in html


@pytest.mark.parametrize("model", [LedgerEntry, AuditEntry])
def test_the_django_admin_is_read_only_even_for_a_superuser(client, admin_user, make_document, model):
    from archive.integrity.audit import AuditAction, log

    doc = make_document()
    log(AuditAction.DOCUMENT_VIEW, user=admin_user, document=doc.pk)
    entry = model.objects.first()
    client.force_login(admin_user)
    name = f"admin:integrity_{model._meta.model_name}"
    assert client.get(reverse(f"{name}_changelist")).status_code == 200
    assert client.get(reverse(f"{name}_add")).status_code == 403
    assert client.post(reverse(f"{name}_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    page = client.get(reverse(f"{name}_change", args=[entry.pk]))
    assert page.status_code == 200 and b'type="submit"' not in page.content.split(b'id="content"')[1]
    client.post(reverse(f"{name}_change", args=[entry.pk]), {"actor": "mallory"})
    assert model.objects.get(pk=entry.pk).actor == entry.actor
