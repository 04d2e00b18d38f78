"""Archive content with ledger entries, mail locations and an anchor, and
exports built and unpacked for the export tests."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

from django.contrib.auth.models import Group

from archive.exports import builder
from archive.exports.models import Export, ExportStatus, ExportTarget
from archive.integrity import chain
from archive.integrity.models import Anchor, ChainHead, LedgerEvent
from archive.models import Document
from mailsources.models import ArchivedMail, MailLocation, MailSource
from tests.archive.mail_samples import archive_mail

VERIFIER = Path(builder.__file__).with_name("verifier") / "verify_export.py"


def record_archived(document: Document, actor: str = "alice") -> None:
    """Archiving wrote the document's ledger entry itself (archive.services), with its blobs."""
    from archive.integrity.models import LedgerEntry

    entry = LedgerEntry.objects.get(event=LedgerEvent.ARCHIVED, document=document.pk)
    assert set(entry.blobs) >= {f.sha256 for f in document.files.filter(role="original")}, entry.blobs


def mail_in_mailbox(raw: bytes, group: Group, source: MailSource, *, folder: str = "INBOX", uid: str = "1",
                    message_id: str = "") -> Document:  # fmt: skip
    document = archive_mail(raw, group, values={"title": f"mail {uid}"})
    original = document.files.get()
    mail = ArchivedMail.objects.create(
        source=source,
        mailbox=source.mailbox_key(),
        mailbox_key=source.mailbox_identity(),
        sha256=original.sha256,
        document=document,
        message_id=message_id,
        size=original.size,
    )
    MailLocation.objects.create(source=source, mailbox=mail.mailbox, folder=folder, epoch="7", location=uid, mail=mail)
    record_archived(document, actor=f"source:{source.pk}")
    return document


def imap_source(group: Group, name: str = "office", username: str = "alice") -> MailSource:
    return MailSource.objects.create(
        kind="imap", name=name, owner_group=group, host="mail.example.com", username=username
    )


def anchor_now() -> Anchor:
    """An anchor over both heads now. Its token is a stand-in carrying the digest
    (the verifier checks that; the TSA's signature is OpenSSL's business, README)."""
    head = ChainHead.objects.get(chain="ledger")
    audit = ChainHead.objects.filter(chain="audit").first()
    audit_seq, audit_hash = (audit.seq, audit.hash) if audit else (0, chain.GENESIS)
    digest = hashlib.sha256(chain.anchor_message(head.seq, head.hash, audit_seq, audit_hash)).hexdigest()
    from django.utils import timezone

    now = timezone.now()
    token = b"\x30\x82\x01\x00" + b"stand-in token " + bytes.fromhex(digest) + b" end"
    return Anchor.objects.create(
        created=now, ledger_seq=head.seq, ledger_hash=head.hash, audit_seq=audit_seq, audit_hash=audit_hash,
        digest=digest, tsa_url="http://tsa.test/", token=token, gen_time=now,
    )  # fmt: skip


def build(user, target: str = ExportTarget.ZIP, **selection) -> Export:
    export = Export.objects.create(created_by=user, target=target, **selection)
    built = builder.export_build(export.pk)
    assert built is not None and built.status == ExportStatus.DONE, built and built.error
    return built


def unpacked(export: Export, into: Path) -> Path:
    path = builder.export_file(export)
    if path.is_dir():
        return path
    with zipfile.ZipFile(path) as zf:
        zf.extractall(into)
    return into


def verify(target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The export's own copy of the verifier, isolated from this project (-I: no site, no cwd)."""
    verifier = target / "verify_export.py" if target.is_dir() else VERIFIER
    return subprocess.run(
        [sys.executable, "-I", str(verifier), str(target), *args], capture_output=True, text=True, timeout=120
    )


def relist(root: Path) -> None:
    """What a thorough forger does next: list the changed files' new hashes in
    manifest.json (the one file that cannot list itself)."""
    import json

    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["files"]:
        data = (root / entry["path"]).read_bytes()
        entry["sha256"], entry["size"] = hashlib.sha256(data).hexdigest(), len(data)
    path.write_text(json.dumps(manifest))
