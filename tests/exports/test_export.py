"""An export proves itself: its standalone verifier (run as its own process,
``python -I``, standard library only) passes on an untouched export and names
each kind of tampering — a changed byte, a removed file, an altered manifest
row, an altered ledger entry, a rewritten hash list."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from archive.exports.models import ExportStatus, ExportTarget
from archive.integrity import ledger
from archive.integrity.models import LedgerEvent
from archive.models import Document
from tests.archive.mail_samples import text_mail
from tests.exports.helpers import (
    anchor_now,
    build,
    imap_source,
    mail_in_mailbox,
    record_archived,
    relist,
    unpacked,
    verify,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def archive(group_a, make_document):
    """Two mails of one mailbox, an upload with two versions of fields, an anchor over all, one later entry."""
    source = imap_source(group_a)
    mails = [mail_in_mailbox(text_mail(f"Body {i}\nFrom the start\n", f"Mail {i}"), group_a, source, uid=str(i))
             for i in (1, 2)]  # fmt: skip
    upload = make_document(content=b"%PDF-1.4 invoice\n", name="invoice.pdf", values={"title": "Invoice"})
    record_archived(upload)
    upload.values = {**upload.values, "title": "Invoice 2024"}
    upload.save()
    ledger.record(LedgerEvent.FIELDS_CHANGED, upload, "alice", details={"title": ["Invoice", "Invoice 2024"]})
    anchor_now()
    # Not timestamped yet: a note, not a finding.
    mails[1].notes = "checked"
    mails[1].save()
    ledger.record(LedgerEvent.NOTES_CHANGED, mails[1], "alice")
    return {"source": source, "mails": mails, "upload": upload}


@pytest.fixture
def exported(archive, admin_user, tmp_path) -> Path:
    return unpacked(build(admin_user), tmp_path / "export")


def findings(result) -> set[str]:
    return {
        line.split(":", 1)[0].removeprefix("FINDING ")
        for line in result.stdout.splitlines()
        if line.startswith("FINDING")
    }


def test_an_untouched_export_verifies_as_a_zip_and_unpacked(archive, admin_user, tmp_path):
    export = build(admin_user)
    from archive.exports.builder import export_file

    as_zip = verify(export_file(export))
    assert as_zip.returncode == 0, as_zip.stdout + as_zip.stderr
    unpacked_result = verify(unpacked(export, tmp_path / "x"), "--json")
    report = json.loads(unpacked_result.stdout)
    assert unpacked_result.returncode == 0 and report["ok"], report
    assert report["checked"]["documents"] == 3
    assert report["checked"]["ledger_entries"] == 5
    assert report["checked"]["anchors"] == 1
    assert report["notes"] == ["1 ledger entries are newer than the newest anchor (not timestamped yet)"]
    assert export.done == 3 and export.files == 3 and export.sha256


def test_the_export_holds_the_original_bytes_and_the_manifest_says_where(archive, exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    by_number = {d["number"]: d for d in manifest["documents"]}
    for document in [*archive["mails"], archive["upload"]]:
        entry = by_number[document.pk]
        original = document.files.get()
        assert (exported / entry["files"][0]["path"]).read_bytes() == Path(
            __import__("archive.storage", fromlist=["blob_path"]).blob_path(original.sha256)
        ).read_bytes()
        assert entry["metadata_sha256"] == ledger.metadata_hash(document)
    location = by_number[archive["mails"][0].pk]["locations"][0]
    assert (location["mailbox"], location["folder"], location["epoch"], location["location"]) == (
        "alice@mail.example.com", "INBOX", "7", "1")  # fmt: skip
    rows = list(csv.DictReader((exported / "manifest.csv").open(encoding="utf-8")))
    assert [int(r["number"]) for r in rows] == sorted(by_number)
    assert "office/alice@mail.example.com/INBOX/1" in rows[0]["locations"]


def test_a_changed_byte_is_found(exported):
    victim = next((exported / "documents").rglob("*.eml"))
    data = bytearray(victim.read_bytes())
    data[10] ^= 0x01
    victim.write_bytes(bytes(data))
    result = verify(exported)
    assert result.returncode == 1
    assert findings(result) == {"file_changed"}
    assert victim.relative_to(exported).as_posix() in result.stdout


def test_a_removed_file_is_found(exported):
    victim = next((exported / "documents").rglob("*.pdf"))
    victim.unlink()
    result = verify(exported)
    assert result.returncode == 1 and findings(result) == {"file_missing"}


def test_an_added_file_is_found(exported):
    (exported / "documents" / "smuggled.txt").write_text("not archived")
    result = verify(exported)
    assert result.returncode == 1 and findings(result) == {"file_unlisted"}


def test_an_altered_csv_manifest_row_is_found(exported):
    path = exported / "manifest.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("invoice.pdf", "invoice-other.pdf", 1), encoding="utf-8")
    result = verify(exported)
    assert result.returncode == 1
    assert findings(result) == {"file_changed", "csv_mismatch"}


def test_an_altered_json_manifest_row_is_found_against_the_ledger(archive, exported):
    path = exported / "manifest.json"
    manifest = json.loads(path.read_text())
    upload = next(d for d in manifest["documents"] if d["number"] == archive["upload"].pk)
    upload["metadata"]["values"]["title"] = "Invoice 2023"
    path.write_text(json.dumps(manifest))
    assert findings(verify(exported)) == {"metadata_altered"}
    # Rehashed to match: the ledger still says otherwise.
    import hashlib

    from archive.integrity.chain import canonical

    upload["metadata_sha256"] = hashlib.sha256(canonical(upload["metadata"])).hexdigest()
    path.write_text(json.dumps(manifest))
    result = verify(exported)
    assert findings(result) == {"metadata_not_in_ledger", "csv_mismatch"}, result.stdout


def test_an_altered_ledger_entry_is_found(exported):
    path = exported / "ledger" / "entries.jsonl"
    lines = path.read_text().splitlines()
    entry = json.loads(lines[0])
    entry["actor"] = "mallory"
    lines[0] = json.dumps(entry)
    path.write_text("\n".join(lines) + "\n")
    result = verify(exported)
    assert "ledger_entry_altered" in findings(result)
    assert f"ledger #{entry['seq']}" in result.stdout


def test_a_rehashed_entry_breaks_the_hash_list_and_a_rewritten_list_breaks_the_anchor(exported):
    from archive.integrity.chain import entry_hash

    path = exported / "ledger" / "entries.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    first = min(entries, key=lambda e: e["seq"])
    first["actor"] = "mallory"
    payload = {k: first[k] for k in ("seq", "at", "actor", "event", "document", "blobs", "metadata_sha256", "details")}
    first["entry_hash"] = entry_hash(first["prev_hash"], payload)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert findings(verify(exported)) == {"ledger_entry_altered", "file_changed"}
    relist(exported)
    assert findings(verify(exported)) == {"ledger_entry_altered"}
    # The list rewritten to match: the next link breaks.
    chain_csv = exported / "ledger" / "chain.csv"
    rows = chain_csv.read_text().splitlines()
    rows = [f"{first['seq']},{first['prev_hash']},{first['entry_hash']}" if r.startswith(f"{first['seq']},") else r
            for r in rows]  # fmt: skip
    chain_csv.write_text("\n".join(rows) + "\n")
    relist(exported)
    assert findings(verify(exported)) == {"chain_broken"}


def test_a_directory_export_verifies_in_place(archive, admin_user, settings):
    export = build(admin_user, target=ExportTarget.DIRECTORY)
    root = Path(settings.EXPORT_DIR) / export.path
    assert root.is_dir() and (root / "README.md").is_file()
    result = verify(root)
    assert result.returncode == 0, result.stdout


def test_a_document_without_ledger_entries_is_a_finding(group_a, make_document, admin_user, tmp_path, settings):
    settings.INTEGRITY_LEDGER = False  # archived before the ledger existed
    make_document(content=b"before the ledger", name="old.txt")
    settings.INTEGRITY_LEDGER = True
    result = verify(unpacked(build(admin_user), tmp_path / "x"))
    assert result.returncode == 1 and findings(result) == {"ledger_missing"}


def test_a_missing_blob_fails_no_export_and_the_verifier_names_it(archive, admin_user, tmp_path):
    from archive import storage

    storage.blob_path(archive["upload"].files.get().sha256).unlink()
    export = build(admin_user)
    assert export.status == ExportStatus.DONE and "1 file(s) missing from the store" in export.error
    result = verify(unpacked(export, tmp_path / "x"))
    assert findings(result) == {"file_missing"}


# Transactional: MariaDB's full-text index sees committed rows only.
@pytest.mark.django_db(transaction=True)
def test_only_the_selected_documents_are_exported(archive, admin_user, tmp_path, group_a):
    other = imap_source(group_a, name="other", username="bob")
    foreign = mail_in_mailbox(text_mail("Other mailbox", "Other"), group_a, other, uid="9")
    by_source = build(admin_user, source_id=archive["source"].pk)
    assert by_source.total == 2
    by_mailbox = build(admin_user, mailbox="BOB@mail.example.com")
    assert by_mailbox.total == 1
    manifest = json.loads((unpacked(by_mailbox, tmp_path / "m") / "manifest.json").read_text())
    assert [d["number"] for d in manifest["documents"]] == [foreign.pk]
    assert build(admin_user, query="Invoice").total == 1


def test_a_date_range_selects_by_the_document_date(group_a, make_document, admin_user):
    import datetime as dt

    for day in (1, 15, 28):
        doc = make_document(content=f"day {day}".encode(), name=f"d{day}.txt")
        Document.objects.filter(pk=doc.pk).update(date=dt.datetime(2024, 2, day, 12, tzinfo=dt.UTC))
    assert build(admin_user, date_from=dt.date(2024, 2, 15), date_to=dt.date(2024, 2, 28)).total == 2
    assert build(admin_user, date_to=dt.date(2024, 2, 14)).total == 1


def test_a_legal_hold_selects_what_it_holds_and_a_missing_hold_fails_the_export(make_document, admin_user):
    import datetime as dt

    from archive.exports.builder import export_build
    from archive.exports.models import Export
    from archive.retention.models import LegalHold

    inside = [make_document(content=f"held {n}".encode(), name=f"h{n}.txt") for n in range(2)]
    outside = make_document(content=b"not held", name="free.txt")
    Document.objects.filter(pk__in=[d.pk for d in inside]).update(date=dt.datetime(2023, 5, 2, tzinfo=dt.UTC))
    Document.objects.filter(pk=outside.pk).update(date=dt.datetime(2025, 1, 9, tzinfo=dt.UTC))
    hold = LegalHold.objects.create(
        name="Case 7",
        reason="litigation",
        created_by=admin_user,
        date_from=dt.date(2023, 1, 1),
        date_to=dt.date(2023, 12, 31),
    )
    assert build(admin_user, legal_hold_id=hold.pk).total == 2

    missing = Export.objects.create(created_by=admin_user, legal_hold_id=hold.pk + 100)
    failed = export_build(missing.pk)
    assert failed.status == ExportStatus.FAILED and "legal hold" in failed.error
    assert not list(Path(failed.path or "/nonexistent").glob("*"))
