"""Verification finds each kind of tampering, precisely: blobs, metadata,
both chains and the timestamp anchors (against the real test TSA)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.utils import timezone

from archive import storage
from archive.integrity import anchoring, verify
from archive.integrity.audit import AuditAction, log
from archive.integrity.models import Anchor, LedgerEntry, VerificationRun, VerificationStatus
from archive.models import Document, DocumentFile
from tests.fakes.tsa import FakeTsa

pytestmark = pytest.mark.django_db


@pytest.fixture
def archive(make_document, alice, tsa_up):
    """Three documents with some history, an audit entry and an anchor: verifies clean."""
    docs = [make_document(f"content {i}\n".encode(), name=f"f{i}.txt", values={"title": f"Doc {i}"}) for i in range(3)]
    from archive import services

    services.document_set_notes(docs[1], "checked", actor="alice")
    log(AuditAction.DOCUMENT_VIEW, user=alice, document=docs[0].pk)
    anchoring.anchor_heads()
    assert verify.run().findings == []
    return docs


def kinds(report: verify.Report) -> list[tuple[str, str]]:
    return [(f.kind, f.subject) for f in report.findings]


def _writable(sha: str):
    path = storage.blob_path(sha)
    os.chmod(path, 0o644)
    return path


def test_a_flipped_byte_in_a_blob(archive):
    sha = archive[0].files.get().sha256
    path = _writable(sha)
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    path.write_bytes(bytes(data))
    assert kinds(verify.run()) == [("blob_corrupt", f"blob {sha}")]


def test_a_deleted_blob(archive):
    sha = archive[1].files.get().sha256
    storage.blob_path(sha).unlink()
    assert kinds(verify.run()) == [("blob_missing", f"blob {sha}")]


def test_a_blob_replaced_by_another_valid_blob_and_its_row_changed_to_match(archive):
    other = storage.put_bytes(b"a forged but well-stored file\n")
    DocumentFile.objects.filter(document=archive[2]).update(sha256=other.sha256, size=other.size)
    assert kinds(verify.run()) == [("metadata_mismatch", f"document {archive[2].pk}")]


def test_a_field_value_edited_directly_in_sql(archive):
    doc = archive[0]
    Document.objects.filter(pk=doc.pk).update(values={**doc.values, "title": "Forged"})
    report = verify.run()
    assert kinds(report) == [("metadata_mismatch", f"document {doc.pk}")]
    assert "archived" in report.findings[0].detail


def test_a_document_deleted_without_its_entry(archive, settings):
    settings.RETENTION_DELETION_LOCK = False  # deleted behind the application's back
    Document.objects.filter(pk=archive[1].pk).delete()
    assert kinds(verify.run()) == [("document_missing", f"document {archive[1].pk}")]


def test_a_ledger_entry_deleted(archive):
    LedgerEntry.objects.filter(seq=2).delete()
    assert kinds(verify.run()) == [("entry_missing", "ledger #3")]


def test_the_last_ledger_entry_deleted(archive):
    last = LedgerEntry.objects.order_by("-seq").first()
    LedgerEntry.objects.filter(pk=last.pk).delete()
    found = kinds(verify.run())
    assert ("head_mismatch", "ledger head") in found
    # The anchor covered the deleted entry, and the document's latest entry is gone with it.
    assert {k for k, _ in found} == {"head_mismatch", "anchor_mismatch", "metadata_mismatch"}


def test_a_ledger_entry_altered(archive):
    LedgerEntry.objects.filter(seq=2).update(actor="mallory")
    assert kinds(verify.run()) == [("entry_altered", "ledger #2")]


def test_ledger_entries_reordered(archive):
    a, b = LedgerEntry.objects.get(seq=2), LedgerEntry.objects.get(seq=3)
    LedgerEntry.objects.filter(pk=a.pk).update(seq=1000)
    LedgerEntry.objects.filter(pk=b.pk).update(seq=2)
    LedgerEntry.objects.filter(pk=a.pk).update(seq=3)
    found = kinds(verify.run())
    assert found[0] == ("entry_reordered", "ledger #2")
    assert ("entry_altered", "ledger #3") in found


def test_an_audit_entry_altered(archive):
    from archive.integrity.models import AuditEntry

    AuditEntry.objects.filter(seq=1).update(action="search")
    assert kinds(verify.run()) == [("entry_altered", "audit #1")]


def test_a_forged_timestamp_token(archive, tmp_path):
    anchor = Anchor.objects.get()
    message = anchoring.message_for((anchor.ledger_seq, anchor.ledger_hash), (anchor.audit_seq, anchor.audit_hash))
    stranger = FakeTsa(tmp_path / "forger", name="Test TSA").start()  # same name, other key
    try:
        from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

        query = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256).build()
        Anchor.objects.filter(pk=anchor.pk).update(token=stranger.reply(query.as_bytes()))
    finally:
        stranger.stop()
    report = verify.run()
    assert kinds(report) == [("anchor_invalid", f"anchor {anchor.pk} ({verify.chain.format_time(anchor.created)})")]


def test_a_token_moved_to_other_heads(archive, make_document):
    make_document(b"later\n", name="later.txt")
    second = anchoring.anchor_heads()
    first = Anchor.objects.exclude(pk=second.pk).get()
    Anchor.objects.filter(pk=first.pk).update(token=second.token)
    assert [k for k, _ in kinds(verify.run())] == ["anchor_invalid"]


def test_the_command_reports_json_and_fails_on_a_finding(archive, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    call_command("verify", "--full", "--json", str(tmp_path / "ok.json"), stdout=out, stderr=err)
    report = json.loads((tmp_path / "ok.json").read_text())
    assert report["status"] == "ok" and report["findings"] == []
    assert report["counts"]["documents"] == 3 and report["counts"]["anchors"] == 1
    assert "blobs:" in err.getvalue() and "100%" in err.getvalue()
    assert "0 finding(s)" in out.getvalue()

    LedgerEntry.objects.filter(seq=1).update(details={"forged": True})
    with pytest.raises(CommandError) as failed:
        call_command("verify", "--sample", "2", "--json", str(tmp_path / "bad.json"), stdout=io.StringIO(), stderr=err)
    assert failed.value.returncode == 1
    report = json.loads((tmp_path / "bad.json").read_text())
    assert report["mode"] == "sample" and report["counts"]["documents"] == 2
    assert report["findings"] == [
        {"kind": "entry_altered", "subject": "ledger #1", "detail": report["findings"][0]["detail"]}
    ]
    assert VerificationRun.objects.filter(status=VerificationStatus.FINDINGS).count() == 1


def test_since_checks_only_what_changed(archive, make_document):
    cutoff = timezone.now()
    later = make_document(b"after the cutoff\n", name="late.txt")
    report = verify.run(since=cutoff)
    assert report.counts["documents"] == 1 and report.counts["anchors"] == 0
    assert report.counts["ledger_entries"] == LedgerEntry.objects.filter(document=later.pk).count()
    with pytest.raises(CommandError, match="--since"):
        call_command("verify", "--since", "yesterday")


def test_the_scheduled_verification_is_full_when_due_and_sampled_otherwise(archive, settings):
    settings.VERIFY_FULL_INTERVAL_DAYS = 30
    settings.VERIFY_SAMPLE_SIZE = 2
    first = verify.scheduled()
    assert (first.mode, first.status, first.counts["documents"]) == ("full", VerificationStatus.OK, 3)
    second = verify.scheduled()
    assert (second.mode, second.counts["documents"]) == ("sample", 2)
    assert verify.full_due(now=first.started + dt.timedelta(days=30))
    assert not verify.full_due(now=first.started + dt.timedelta(days=29))


def test_a_renamed_owner_group_is_recorded_not_a_finding(archive, group_a):
    """The group's name is in every document's metadata: a rename appends an
    entry per document (in the rename's transaction), so verify stays clean."""
    assert {d.owner_group_id for d in archive} == {group_a.pk}
    before = LedgerEntry.objects.count()
    group_a.name = "Accounting (renamed)"
    group_a.save()
    renamed = LedgerEntry.objects.filter(seq__gt=before).order_by("seq")
    assert [(e.event, e.document) for e in renamed] == [("owner_changed", d.pk) for d in archive]
    assert renamed[0].details["renamed"] == {"old": "Sales", "new": "Accounting (renamed)"}
    assert verify.run().findings == []
    group_a.save()  # saved again without a change: nothing more
    assert LedgerEntry.objects.count() == before + 3


def test_a_group_renamed_behind_the_ledgers_back_is_a_finding(archive, group_a):
    Group.objects.filter(pk=group_a.pk).update(name="renamed in SQL")  # no signal: as by hand in the database
    assert sorted(kinds(verify.run())) == sorted(("metadata_mismatch", f"document {d.pk}") for d in archive)
