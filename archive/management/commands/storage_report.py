"""``manage.py storage_report``: what the store holds, its orphan blobs (stored but
referenced by no document file or archived mail) and leftover temporary files.
Reports only: nothing is deleted (temporary files are swept by housekeeping)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from archive import housekeeping, storage


class Command(BaseCommand):
    help = "Report the store's size, orphan blobs and temporary files (deletes nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=100, help="orphan blobs to list (default 100; 0: all)")

    def handle(self, *args: Any, **options: Any) -> None:
        report = housekeeping.store_report()
        self.stdout.write(f"blobs: {report.blobs} ({report.blob_bytes} bytes)")
        self.stdout.write(f"orphan blobs: {len(report.orphans)} ({report.orphan_bytes} bytes)")
        limit = options["limit"] or len(report.orphans)
        for sha, size in sorted(report.orphans)[:limit]:
            self.stdout.write(f"  orphan {sha} {size} bytes {storage.blob_path(sha)}")
        if len(report.orphans) > limit:
            self.stdout.write(f"  … and {len(report.orphans) - limit} more (--limit 0 lists all)")
        self.stdout.write(f"temporary files: {report.temporary_files} ({report.temporary_bytes} bytes)")
