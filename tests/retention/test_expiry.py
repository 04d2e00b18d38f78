"""Expiry: the daily list, its approval, the deletion and what it leaves behind
(the ledger record, the report); the clock is ``NOW`` of the tests."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from archive import storage
from archive.integrity import chain
from archive.integrity.models import AuditEntry, Chain, LedgerEntry, LedgerEvent
from archive.models import Document, DocumentFile, SearchEntry
from archive.retention import deletion, expiry, tasks
from archive.retention.models import BlobRemoval, ExpiryList, ExpiryStatus, ItemStatus
from mailsources.models import ArchivedMail, MailLocation
from tests.retention.conftest import NOW

LATER = NOW + dt.timedelta(days=1)


@pytest.fixture
def second_admin(db):
    return User.objects.create_superuser("carol", password="carol-pass-123")


def chain_verifies() -> bool:
    prev = chain.GENESIS
    for entry in LedgerEntry.objects.order_by("seq"):
        if entry.prev_hash != prev or entry.entry_hash != chain.entry_hash(
            prev, chain.entry_payload(Chain.LEDGER, entry)
        ):
            return False
        prev = entry.entry_hash
    return True


def test_the_daily_list_holds_what_is_past_retention_and_not_held(make_mail, policy, hold, source):
    policy()  # CH 10: mails of 2025 are kept until 2035-12-31, those of 2026 until 2036-12-31
    old = make_mail("2025-12-31")
    young = make_mail("2026-01-01")
    held = make_mail("2020-01-01", places=[(source, "boss@h", "INBOX")])
    hold(mailbox="boss@h")
    expiry_list = expiry.expiry_list_build(NOW)
    assert [i.document for i in expiry_list.items.all()] == [old.pk]
    item = expiry_list.items.get()
    assert (item.policy, item.retention_end, item.status) == ("CH", dt.date(2035, 12, 31), ItemStatus.PENDING)
    assert expiry_list.status == ExpiryStatus.OPEN
    # Listed once: the next day's run does not list it again while the list waits.
    assert expiry.expiry_list_build(LATER) is None
    assert Document.objects.filter(pk__in=[old.pk, young.pk, held.pk]).count() == 3


def test_nothing_expires_without_policies_or_when_they_keep_forever(make_mail, policy):
    make_mail("1990-01-01")
    assert expiry.expiry_list_build(NOW) is None
    policy("forever", "forever")
    assert expiry.expiry_list_build(NOW) is None


def test_approval_deletes_documents_files_and_search_text_and_records_them(
    make_mail, policy, admin_user, source, django_capture_on_commit_callbacks, settings
):
    settings.RETENTION_BLOB_GRACE_SECONDS = 0
    policy()
    old = make_mail("2001-02-03", places=[(source, "u@h", "INBOX")], values={"title": "Old offer"})
    sha = old.files.get().sha256
    assert SearchEntry.objects.filter(pk=old.pk).exists()
    expiry_list = expiry.expiry_list_build(NOW)
    with django_capture_on_commit_callbacks() as queued:
        expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW)
    assert len(queued) == 1  # the deletion task, after the commit
    with django_capture_on_commit_callbacks(execute=True):
        tasks.execute_expiry_list(expiry_list.pk)  # the task, called as the worker would
    assert not Document.objects.filter(pk=old.pk).exists()
    assert not DocumentFile.objects.filter(sha256=sha).exists()
    assert not SearchEntry.objects.filter(pk=old.pk).exists()
    # The dedup row and the location stay, without their document: the tombstone
    # that keeps the next sync from archiving the mail again (test_tombstone.py).
    assert ArchivedMail.objects.get().document_id is None
    assert MailLocation.objects.get().mail.document_id is None
    assert not storage.exists(sha)  # nothing else referenced it
    expiry_list.refresh_from_db()
    assert expiry_list.status == ExpiryStatus.DONE
    entry = LedgerEntry.objects.get(event=LedgerEvent.DELETED, document=old.pk)
    assert entry.blobs == [sha] and entry.metadata_sha256 == ""
    assert entry.details["hashes"] == [sha] and entry.details["policy"] == "CH"
    assert entry.details["approvers"] == ["admin"] and entry.details["retention_end"] == "2011-12-31"
    item = expiry_list.items.get()
    assert entry.details["number"] == old.pk and entry.details["time"] == item.deleted.isoformat()
    assert len(entry.details["metadata_sha256"]) == 64
    assert chain_verifies()
    assert (item.status, item.hashes, item.ledger_seq) == (ItemStatus.DELETED, [sha], entry.seq)
    assert {e.action for e in AuditEntry.objects.all()} >= {
        "expiry_list_created",
        "expiry_approved",
        "documents_deleted",
    }


def test_a_blob_another_document_references_stays(make_mail, make_document, policy, admin_user, settings):
    settings.RETENTION_BLOB_GRACE_SECONDS = 0
    policy("mails", kind="mail")
    shared = b"Subject: shared\r\n\r\nsame bytes\r\n"
    old = make_mail("2001-01-01", content=shared)
    keeper = make_document(content=shared, name="copy.eml")  # an upload: no policy, kept forever
    sha = old.files.get().sha256
    expiry_list = expiry.expiry_list_build(NOW)
    expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW)
    expiry.expiry_list_execute(expiry_list.pk, NOW)
    deletion.blobs_remove_due(NOW)
    assert not Document.objects.filter(pk=old.pk).exists()
    assert storage.exists(sha) and storage.read_bytes(sha) == shared
    assert keeper.files.get().sha256 == sha
    assert not BlobRemoval.objects.exists()


def test_blobs_wait_for_the_grace_period_and_go_only_after_the_commit(make_mail, policy, admin_user, settings):
    settings.RETENTION_BLOB_GRACE_SECONDS = 3600
    policy()
    old = make_mail("2001-01-01")
    sha = old.files.get().sha256
    expiry_list = expiry.expiry_list_build(NOW)
    expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW)
    expiry.expiry_list_execute(expiry_list.pk, NOW)  # its on-commit callback never runs: the test's transaction
    assert storage.exists(sha)
    assert deletion.blobs_remove_due(NOW + dt.timedelta(minutes=59)) == 0 and storage.exists(sha)
    assert deletion.blobs_remove_due(NOW + dt.timedelta(minutes=60)) == 1 and not storage.exists(sha)


# InnoDB's full-text index sees committed rows only: a search query needs committed documents.
@pytest.mark.django_db(transaction=True)
def test_a_document_put_on_hold_after_the_list_was_made_survives_the_approval(make_mail, policy, hold, admin_user):
    policy()
    kept = make_mail("2001-01-01", values={"title": "Contract ACME"})
    gone = make_mail("2001-01-01", values={"title": "Newsletter"})
    expiry_list = expiry.expiry_list_build(NOW)
    assert expiry_list.items.count() == 2
    hold(query="acme")
    expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW)
    assert expiry.expiry_list_execute(expiry_list.pk, NOW) == 1
    assert Document.objects.filter(pk=kept.pk).exists() and not Document.objects.filter(pk=gone.pk).exists()
    assert expiry_list.items.get(document=kept.pk).status == ItemStatus.KEPT_HELD
    assert not LedgerEntry.objects.filter(event=LedgerEvent.DELETED, document=kept.pk).exists()


def test_a_policy_lengthened_after_the_list_was_made_keeps_the_document(make_mail, policy, admin_user):
    short = policy("short", "custom", years=1, count_from="date")
    document = make_mail("2030-01-01")
    expiry_list = expiry.expiry_list_build(NOW)
    short.preset = "forever"
    short.save()
    expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW)
    expiry.expiry_list_execute(expiry_list.pk, NOW)
    assert Document.objects.filter(pk=document.pk).exists()
    assert expiry_list.items.get().status == ItemStatus.KEPT_RETENTION


def test_two_approvers_must_be_different_administrators(make_mail, policy, admin_user, second_admin, alice, settings):
    settings.RETENTION_TWO_APPROVERS = True
    policy()
    old = make_mail("2001-01-01")
    expiry_list = expiry.expiry_list_build(NOW)
    with pytest.raises(expiry.ApprovalError, match="administrators"):
        expiry.expiry_list_approve(expiry_list.pk, alice, now=NOW)
    assert expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW).status == ExpiryStatus.OPEN
    with pytest.raises(expiry.ApprovalError, match="different"):
        expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW)
    assert expiry.expiry_list_execute(expiry_list.pk, NOW) == 0  # not approved yet: nothing happens
    assert Document.objects.filter(pk=old.pk).exists()
    assert expiry.expiry_list_approve(expiry_list.pk, second_admin, now=NOW).status == ExpiryStatus.APPROVED
    assert expiry.expiry_list_execute(expiry_list.pk, NOW) == 1
    entry = LedgerEntry.objects.get(event=LedgerEvent.DELETED)
    assert entry.details["approvers"] == ["admin", "carol"] and entry.actor == "carol"


def test_a_rejected_list_deletes_nothing_and_cannot_be_approved(make_mail, policy, admin_user):
    policy()
    old = make_mail("2001-01-01")
    expiry_list = expiry.expiry_list_build(NOW)
    expiry.expiry_list_reject(expiry_list.pk, admin_user)
    with pytest.raises(expiry.ApprovalError):
        expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW)
    assert expiry.expiry_list_execute(expiry_list.pk, NOW) == 0
    assert Document.objects.filter(pk=old.pk).exists()


def test_the_daily_job_finishes_an_approved_list_whose_task_was_lost(make_mail, policy, admin_user):
    policy()
    old = make_mail("2001-01-01")
    expiry_list = expiry.expiry_list_build(NOW)
    expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW)  # its task message never arrives
    assert expiry.expiry_daily(LATER) is None
    assert not Document.objects.filter(pk=old.pk).exists()
    assert ExpiryList.objects.get(pk=expiry_list.pk).status == ExpiryStatus.DONE


def test_the_deletion_report_as_csv_and_page(client, make_mail, policy, admin_user):
    policy()
    old = make_mail("2001-01-01", values={"title": "=HYPERLINK(evil)"})
    sha = old.files.get().sha256
    expiry_list = expiry.expiry_list_build(NOW)
    expiry.expiry_list_approve(expiry_list.pk, admin_user, now=NOW)
    expiry.expiry_list_execute(expiry_list.pk, NOW)
    client.force_login(admin_user)
    response = client.get(reverse("retention:expiry_report_csv", args=[expiry_list.pk]))
    assert response["Content-Disposition"] == f'attachment; filename="deletion-report-{expiry_list.pk}.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 1
    row = rows[0]
    assert row["number"] == str(old.pk) and row["sha256"] == sha and row["outcome"] == "Deleted"
    assert row["title"] == "'=HYPERLINK(evil)" and row["approvers"] == "admin" and row["policy"] == "CH"
    seq = LedgerEntry.objects.get(event=LedgerEvent.DELETED).seq
    assert row["ledger_seq"] == str(seq)
    html = client.get(reverse("retention:expiry_report", args=[expiry_list.pk])).content.decode()
    assert f"{sha[:32]}<wbr>{sha[32:]}" in html and f"<td>{seq}</td>" in html and 'id="print"' in html
