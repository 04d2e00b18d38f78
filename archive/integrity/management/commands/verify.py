"""``manage.py verify [--full | --sample N] [--since DATE] [--json FILE]``: the
integrity verification (archive/integrity/verify.py) with a progress line on
stderr, a summary, a JSON report and exit code 1 on any finding."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from archive.integrity import verify


def _since(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since {value!r}: use a date (YYYY-MM-DD) or an ISO time") from None
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = "Verify blobs, metadata hashes, both hash chains and every timestamp anchor."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--full", action="store_true", help="every document (the default)")
        which.add_argument("--sample", type=int, metavar="N", help="N random documents (the chains in full)")
        parser.add_argument("--since", metavar="DATE", help="what was archived or changed since DATE")
        parser.add_argument("--json", metavar="FILE", help="write the machine-readable report here ('-': stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        sample = options["sample"]
        if sample is not None and sample < 1:
            raise CommandError("--sample needs a positive number")
        since = _since(options["since"]) if options["since"] else None
        started = time.monotonic()
        record = verify.run_stored(sample=sample, since=since, progress=self._progress)
        self.stderr.write("")
        report = {
            "id": record.pk,
            "mode": record.mode,
            "status": record.status,
            "counts": record.counts,
            "findings": record.findings,
        }
        seconds = max(time.monotonic() - started, 1e-9)
        megabytes = record.counts.get("blob_bytes", 0) / 1e6
        self.stdout.write(
            f"{record.mode}: {record.counts.get('documents', 0)} documents, {megabytes:.1f} MB of blobs "
            f"({megabytes / seconds:.0f} MB/s), {record.counts.get('ledger_entries', 0)} ledger and "
            f"{record.counts.get('audit_entries', 0)} audit entries, {record.counts.get('anchors', 0)} anchors: "
            f"{len(record.findings)} finding(s)"
        )
        for finding in record.findings:
            self.stdout.write(f"  {finding['kind']}: {finding['subject']}: {finding['detail']}")
        if options["json"] == "-":
            self.stdout.write(json.dumps(report, indent=2))
        elif options["json"]:
            Path(options["json"]).write_text(json.dumps(report, indent=2) + "\n")
        if record.findings:
            raise CommandError(f"{len(record.findings)} finding(s)", returncode=1)

    _shown: tuple[str, int] = ("", -1)

    def _progress(self, stage: str, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        if (stage, percent) == self._shown:
            return  # one line per percent, not per blob
        self._shown = (stage, percent)
        unit = " bytes" if stage == "blobs" else ""
        self.stderr.write(f"\r{stage}: {done}/{total}{unit} ({percent}%)   ", ending="")
        self.stderr.flush()
