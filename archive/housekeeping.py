"""Housekeeping of the store and of uploads, on beat's schedule.

- Temporary files a killed process left behind are removed (every
  ``HOUSEKEEPING_SECONDS``) once older than ``TEMP_FILE_MAX_AGE_HOURS``: the
  store's staging files (``storage.sweep_temporary``) and upload spool files in
  ``FILE_UPLOAD_TEMP_DIR``.
- Orphan blobs (stored, referenced by no row) are reported daily, never deleted: the
  store is write-once, and a blob without a row is a question for a person (a
  batch stored but not yet committed has orphans for a moment, too).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.apps import apps
from django.conf import settings

from archive import storage

logger = logging.getLogger(__name__)

# The models whose ``sha256`` names a blob. Looked up by name so that this app
# imports no other: mail ingestion's dedup rows count when that app is installed.
BLOB_REFERENCES = (("archive", "DocumentFile"), ("mailsources", "ArchivedMail"))
_LOOKUP_CHUNK = 500


@dataclasses.dataclass
class SweepResult:
    store_files: int = 0
    upload_files: int = 0
    upload_bytes: int = 0


@dataclasses.dataclass
class StoreReport:
    blobs: int = 0
    blob_bytes: int = 0
    orphans: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    temporary_files: int = 0
    temporary_bytes: int = 0

    @property
    def orphan_bytes(self) -> int:
        return sum(size for _, size in self.orphans)


def max_age_seconds() -> float:
    return float(settings.TEMP_FILE_MAX_AGE_HOURS * 3600)


def _upload_dir() -> Path | None:
    folder = getattr(settings, "FILE_UPLOAD_TEMP_DIR", None)
    return Path(folder) if folder else None


def _upload_spool_files(folder: Path) -> Iterator[Path]:
    """Django names its spool files ``tmpXXXX.upload[.ext]``: only those are ours,
    even if FILE_UPLOAD_TEMP_DIR points at a shared folder."""
    for entry in folder.iterdir():
        if ".upload" in entry.name and entry.is_file() and not entry.is_symlink():
            yield entry


def temporary_files_sweep(*, now: float | None = None, older_than_seconds: float | None = None) -> SweepResult:
    """Remove the store's and the uploads' temporary files older than the threshold."""
    now = time.time() if now is None else now
    age = max_age_seconds() if older_than_seconds is None else older_than_seconds
    result = SweepResult(store_files=storage.sweep_temporary(older_than_seconds=age, now=now))
    folder = _upload_dir()
    if folder is not None and folder.is_dir():
        for path in _upload_spool_files(folder):
            try:
                stat = path.stat()
                if stat.st_mtime < now - age:
                    path.unlink()
                    result.upload_files += 1
                    result.upload_bytes += stat.st_size
            except FileNotFoundError:
                continue
    return result


def _referenced(shas: list[str]) -> set[str]:
    found: set[str] = set()
    for app_label, model_name in BLOB_REFERENCES:
        if not apps.is_installed(app_label):
            continue
        model = apps.get_model(app_label, model_name)
        found |= set(model._default_manager.filter(sha256__in=shas).values_list("sha256", flat=True))
    return found


def _chunks(items: Iterable[tuple[str, int]], size: int) -> Iterator[list[tuple[str, int]]]:
    chunk: list[tuple[str, int]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def store_report() -> StoreReport:
    """What the store holds: blobs, orphans among them, temporary files."""
    report = StoreReport()
    for chunk in _chunks(storage.iter_blobs(), _LOOKUP_CHUNK):
        report.blobs += len(chunk)
        report.blob_bytes += sum(size for _, size in chunk)
        referenced = _referenced([sha for sha, _ in chunk])
        report.orphans += [(sha, size) for sha, size in chunk if sha not in referenced]
    staging = Path(settings.STORAGE_DIR) / "tmp"
    temporary = [p for p in staging.iterdir() if p.name.startswith(".tmp-")] if staging.is_dir() else []
    folder = _upload_dir()
    if folder is not None and folder.is_dir():
        temporary += list(_upload_spool_files(folder))
    for path in temporary:
        try:
            report.temporary_bytes += path.stat().st_size
            report.temporary_files += 1
        except FileNotFoundError:
            continue
    return report


def temporary_files_sweep_logged(*, now: float | None = None) -> SweepResult:
    """The hourly job: sweep temporary files, say what went."""
    swept = temporary_files_sweep(now=now)
    if swept.store_files or swept.upload_files:
        logger.info(
            "housekeeping: removed %d temporary file(s) of the store and %d upload file(s) (%d bytes)",
            swept.store_files,
            swept.upload_files,
            swept.upload_bytes,
        )
    return swept


def orphan_blobs_report() -> StoreReport:
    """The daily job (it reads the whole store): log orphan blobs, delete nothing."""
    report = store_report()
    if report.orphans:
        shown = ", ".join(sha for sha, _ in report.orphans[:10])
        logger.warning(
            "housekeeping: %d orphan blob(s), %d bytes, referenced by no document or mail (kept; "
            "`manage.py storage_report` lists them): %s%s",
            len(report.orphans),
            report.orphan_bytes,
            shown,
            ", …" if len(report.orphans) > 10 else "",
        )
    return report
