"""Building an export: the selected documents' files, the manifest, the ledger
excerpt (``excerpt.py``), MBOX per mailbox, the Z3 tables, the verifier.

Written member by member into a ZIP file (streamed to a temporary file under
``EXPORT_DIR``, renamed when complete) or into a directory there; what must
come last (the manifests) is spooled to temporary files meanwhile, so memory
does not grow with the export. Documents are read in pages by number."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Max, Min, Q
from django.utils import timezone

from archive import storage
from archive.integrity import audit, chain
from archive.integrity.ledger import document_metadata, metadata_hash
from archive.models import Document, DocumentFile

from . import mbox, z3
from .excerpt import Excerpt, entry_record, json_line
from .models import Export, ExportStatus, ExportTarget
from .selection import SelectionError, export_freeze, frozen_documents
from .sink import DirectorySink, Sink, Written, ZipSink
from .version import software_version

logger = logging.getLogger(__name__)

FORMAT = "webadmin-export/1"
STALE = dt.timedelta(minutes=15)  # no progress for this long: the build's worker is gone
PAGE = 200
VERIFIER_DIR = Path(__file__).with_name("verifier")
CSV_COLUMNS = [
    "number", "kind", "archived", "title", "date", "owner_group", "file_id", "role", "version", "part",
    "name", "content_type", "size", "sha256", "path", "metadata_sha256", "locations", "values",
]  # fmt: skip
BUILD_ERRORS = (OSError, DatabaseError, SelectionError, NotImplementedError, storage.StorageError, ValueError)


def export_dir() -> Path:
    folder = Path(settings.EXPORT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def export_file(export: Export) -> Path:
    return export_dir() / export.path


def _blob_chunks(blob: IO[bytes]) -> Iterator[bytes]:
    while chunk := blob.read(storage.CHUNK):
        yield chunk


def _locations(numbers: list[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not apps.is_installed("mailsources"):
        return found
    model = apps.get_model("mailsources", "MailLocation")
    rows = model._default_manager.filter(mail__document_id__in=numbers).select_related("mail", "source").order_by("pk")
    for loc in rows:
        found[loc.mail.document_id].append(
            {
                "source": loc.source_id,
                "source_name": loc.source.name,
                "mailbox": loc.mailbox,
                "folder": loc.folder,
                "epoch": loc.epoch,
                "location": loc.location,
                "message_id": loc.mail.message_id,
                "seen_at": chain.format_time(loc.seen_at),
                "removed_at": chain.format_time(loc.removed_at) if loc.removed_at else None,
            }
        )
    return found


def _file_record(f: DocumentFile) -> dict[str, Any]:
    return {
        "id": f.pk,
        "role": f.role,
        "name": f.name,
        "version": f.version,
        "part": f.part,
        "content_type": f.content_type,
        "sha256": f.sha256,
        "size": f.size,
        "path": z3.file_path(f),
    }


def document_record(document: Document, locations: list[dict[str, Any]]) -> dict[str, Any]:
    """A document's manifest entry: its canonical metadata (as the ledger hashes it), files, locations."""
    metadata = json.loads(chain.canonical(document_metadata(document)))
    return {
        "number": document.pk,
        "kind": document.kind,
        "archived": chain.format_time(document.created),
        "title": document.title,
        "date": document.date.isoformat() if document.date else None,
        "metadata": metadata,
        "metadata_sha256": metadata_hash(document),
        "files": [_file_record(f) for f in sorted(document.files.all(), key=lambda f: f.pk)],
        "locations": locations,
    }


def csv_rows(record: dict[str, Any]) -> Iterator[list[object]]:
    locations = " | ".join(
        f"{x['source_name']}/{x['mailbox']}/{x['folder']}/{x['location']}" for x in record["locations"]
    )
    values = json.dumps(record["metadata"]["values"], ensure_ascii=False, sort_keys=True)
    for f in record["files"]:
        yield [
            record["number"], record["kind"], record["archived"], record["title"], record["date"] or "",
            record["metadata"]["owner_group"], f["id"], f["role"], f["version"], f["part"], f["name"],
            f["content_type"], f["size"], f["sha256"], f["path"], record["metadata_sha256"], locations, values,
        ]  # fmt: skip


def _spooled(fh: IO[bytes]) -> Iterator[bytes]:
    fh.seek(0)
    while chunk := fh.read(1 << 20):
        yield chunk


class Build:
    """One export's build: pages of documents, then the derived files, then the manifest."""

    def __init__(self, export: Export, sink: Sink, scratch: Path) -> None:
        self.export, self.sink = export, sink
        self.documents_spool = open(scratch / "documents.jsonl", "w+b")  # noqa: SIM115
        self.csv_spool = open(scratch / "manifest.csv", "w+", newline="", encoding="utf-8")  # noqa: SIM115
        self.entries_spool = open(scratch / "entries.jsonl", "w+b")  # noqa: SIM115
        self.csv = csv.writer(self.csv_spool)
        self.csv.writerow(CSV_COLUMNS)
        self.excerpt = Excerpt()
        self.derived: list[Written] = []
        self.missing: list[str] = []
        self.first_document = True

    def progress(self, **fields: Any) -> None:
        fields["heartbeat"] = timezone.now()
        for name, value in fields.items():
            setattr(self.export, name, value)
        Export.objects.filter(pk=self.export.pk).update(**fields)

    def run(self) -> None:
        self.progress(stage="Selecting documents")
        self.progress(total=export_freeze(self.export), stage="Writing documents")
        documents = frozen_documents(self.export)
        last = 0
        while page := list(
            documents.filter(pk__gt=last).select_related("owner_group").prefetch_related("files")[:PAGE]
        ):
            self.write_page(page)
            last = page[-1].pk
        self.progress(stage="Writing the ledger excerpt")
        self.derived += self.excerpt.write(self.sink, _spooled(self.entries_spool))
        if self.export.with_mbox:
            self.progress(stage="Writing MBOX files")
            self.derived += mbox.write_mboxes(self.sink, documents)
        if self.export.with_z3:
            self.progress(stage="Writing the Z3 tables")
            self.derived += z3.write_z3(
                self.sink, documents, supplier=self.supplier(), comment=self.comment(), validity=validity(documents)
            )
        self.progress(stage="Writing the manifest")
        self.csv_spool.flush()
        self.derived.append(self.sink.write("manifest.csv", _spooled(self.csv_spool.buffer)))  # type: ignore[arg-type]
        for name in ("verify_export.py", "README.md"):
            self.derived.append(self.sink.write(name, [(VERIFIER_DIR / name).read_bytes()]))
        self.sink.write("manifest.json", self.manifest_chunks())

    def write_page(self, page: list[Document]) -> None:
        numbers = [d.pk for d in page]
        for entry in self.excerpt.entries_for(numbers):
            self.entries_spool.write(json_line(entry_record(entry)))
        locations = _locations(numbers)
        files = size = 0
        for document in page:
            record = document_record(document, locations.get(document.pk, []))
            for f in record["files"]:
                try:
                    blob = storage.open_blob(f["sha256"])
                except storage.StorageError:
                    self.missing.append(f["path"])  # listed, absent: the verifier reports it
                else:
                    with blob:
                        self.sink.write(f["path"], _blob_chunks(blob))
                files += 1
                size += f["size"]
            self.csv.writerows(csv_rows(record))
            self.documents_spool.write((b"" if self.first_document else b",\n") + json.dumps(record).encode())
            self.first_document = False
        self.progress(
            done=self.export.done + len(page), files=self.export.files + files, bytes=self.export.bytes + size
        )

    def manifest_chunks(self) -> Iterator[bytes]:
        head = {"format": FORMAT, "export": self.header()}
        yield json.dumps(head, indent=1)[:-2].encode() + b',\n "documents": [\n'
        yield from _spooled(self.documents_spool)
        tail = json.dumps([w.as_dict() for w in self.derived], indent=1)
        yield b'\n ],\n "files": ' + tail.encode() + b"\n}\n"

    def header(self) -> dict[str, Any]:
        export = self.export
        return {
            "id": export.pk,
            "created": chain.format_time(export.created),
            "created_by": export.created_by.get_username() if export.created_by else None,
            "selection": export.selection,
            "software_version": software_version(),
            "documents": export.done,
            "files": export.files,
            "bytes": export.bytes,
            "missing_files": self.missing,
            "hash_rules": "canonical JSON: sorted keys, no spaces, UTF-8; entry_hash = sha256(prev_hash + LF + "
            "canonical(entry without hashes)); metadata_sha256 = sha256(canonical(metadata)); see README.md",
        }

    def supplier(self) -> str:
        return str(getattr(settings, "EXPORT_SUPPLIER_NAME", "") or "WebAdmin archive")

    def comment(self) -> str:
        return f"Export {self.export.pk} of {self.export.created:%Y-%m-%d}, software {software_version()}"

    def close(self) -> None:
        for spool in (self.documents_spool, self.csv_spool, self.entries_spool):
            spool.close()


def validity(documents: Any) -> tuple[dt.date, dt.date] | None:
    span = documents.aggregate(first=Min("created"), last=Max("created"))
    if span["first"] is None:
        return None
    return span["first"].date(), span["last"].date()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def claimable(now: dt.datetime) -> Q:
    """Queued, or running with a heartbeat older than STALE (its worker was killed)."""
    stale = Q(status=ExportStatus.RUNNING, heartbeat__lt=now - STALE)
    return Q(status=ExportStatus.PENDING) | stale


def _claim(export_id: int) -> Export | None:
    """→ RUNNING by a conditional update: one worker builds an export; a lost build is
    taken over (its partial output removed)."""
    now = timezone.now()
    claimed = Export.objects.filter(claimable(now), pk=export_id).update(
        status=ExportStatus.RUNNING, started=now, heartbeat=now, done=0, files=0, bytes=0, error=""
    )
    if not claimed:
        return None
    for leftover in export_dir().glob(f".partial-export-{export_id}-*"):
        _remove(leftover)
    return Export.objects.select_related("created_by").get(pk=export_id)


def export_build(export_id: int) -> Export | None:
    """Build a queued export (the task calls this); None if another worker has it."""
    export = _claim(export_id)
    if export is None:
        return None
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    name = f"export-{export.pk}-{stamp}"
    final = export_dir() / (name + (".zip" if export.target == ExportTarget.ZIP else ""))
    partial = export_dir() / f".partial-{name}"
    with tempfile.TemporaryDirectory(dir=export_dir(), prefix=".scratch-") as scratch:
        sink: Sink = ZipSink(partial) if export.target == ExportTarget.ZIP else DirectorySink(partial)
        build = Build(export, sink, Path(scratch))
        try:
            build.run()
            sink.close()
        except BUILD_ERRORS as exc:
            logger.exception("export %s failed", export.pk)
            sink.close()
            _remove(partial)
            Export.objects.filter(pk=export.pk).update(
                status=ExportStatus.FAILED, error=str(exc)[:2000], finished=timezone.now(), stage=""
            )
            audit.log(
                audit.AuditAction.EXPORT,
                user=export.created_by,
                outcome="failed",
                details={"export": export.pk, "error": str(exc)[:500]},
            )
            return Export.objects.get(pk=export.pk)
        finally:
            build.close()
    partial.rename(final)
    return _finish(export, final, build.missing)


def _finish(export: Export, final: Path, missing: list[str]) -> Export:
    now = timezone.now()
    export.status = ExportStatus.DONE
    export.path = final.name
    export.sha256 = _sha256_file(final) if final.is_file() else ""
    export.finished = now
    export.expires = now + dt.timedelta(days=settings.EXPORT_RETENTION_DAYS)
    export.stage = ""
    export.error = f"{len(missing)} file(s) missing from the store: {', '.join(missing[:10])}" if missing else ""
    export.save(update_fields=["status", "path", "sha256", "finished", "expires", "stage", "error"])
    audit.log(
        audit.AuditAction.EXPORT,
        user=export.created_by,
        details={
            "export": export.pk,
            "event": "built",
            "documents": export.done,
            "files": export.files,
            "bytes": export.bytes,
            "sha256": export.sha256,
            "path": export.path,
            "selection": export.selection,
        },
    )
    return export


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def exports_expire(now: dt.datetime | None = None) -> int:
    """Housekeeping: remove the files of exports past ``expires``; the rows stay (EXPIRED)."""
    now = now or timezone.now()
    count = 0
    for export in Export.objects.filter(status=ExportStatus.DONE, expires__lt=now):
        if export.path:
            _remove(export_file(export))
        Export.objects.filter(pk=export.pk).update(status=ExportStatus.EXPIRED)
        count += 1
    return count
