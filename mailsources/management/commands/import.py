"""`python manage.py import PATH --mailbox ADDRESS --owner GROUP [--format ...]`: import
an existing archive (MBOX, .eml/.msg files or ZIPs, PST) through the ingestion pipeline,
with a progress bar. Run it again after an interruption: it goes on from its checkpoints."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TextIO

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailsources import pipeline
from mailsources.clients.base import MailClient
from mailsources.imports import ImportSetupError, import_client, import_source_create
from mailsources.models import ImportFormat, MailSource, RunStatus
from mailsources.tasks import _enqueue_processing


class ProgressBar:
    """``[#####.....]  45%  1.2 of 2.6 GB`` on one line of ``stream``, redrawn in place."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        share = done / total if total else 1.0
        filled = int(self.width * share)
        line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] {share:4.0%}  {_size(done)} of {_size(total)}"
        with self.lock:
            self.stream.write(line)
            self.stream.flush()

    def end(self) -> None:
        self.stream.write("\n")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


class Command(BaseCommand):
    help = "Import an existing mail archive (MBOX, .eml/.msg files or ZIPs, PST/OST) into a mailbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="a file or a directory (e.g. a Thunderbird profile's Mail folder)")
        parser.add_argument("--mailbox", required=True, help="the address of the mailbox the mails belong to")
        parser.add_argument("--owner", required=True, help="the group that owns the documents")
        parser.add_argument("--format", default=ImportFormat.AUTO, choices=ImportFormat.values)
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: object, **options: object) -> None:
        group = Group.objects.filter(name=str(options["owner"])).first()
        if group is None:
            raise CommandError(f"No group {options['owner']!r}")
        try:
            source = import_source_create(
                Path(str(options["path"])), str(options["mailbox"]), group, str(options["format"])
            )
        except ImportSetupError as exc:
            raise CommandError(str(exc)) from None
        bar = None if options["no_progress"] else ProgressBar(sys.stderr)

        def client_factory(source: MailSource, address: str) -> MailClient:
            return import_client(source, progress=bar)

        run = pipeline.source_sync(source.pk, client_factory=client_factory, after_commit=_enqueue_processing)
        if bar is not None:
            bar.end()
        if run is None:
            raise CommandError(f"{source.name} is running elsewhere right now; try again when it has finished")
        run.refresh_from_db()
        self.stdout.write(
            f"{source.name}: {run.get_status_display()} — {run.new} new, {run.duplicate} duplicate, {run.failed} failed"
        )
        for line in run.errors.splitlines():
            self.stdout.write(f"  {line}")
        if run.status == RunStatus.FAILED:
            raise CommandError(run.errors.splitlines()[-1] if run.errors else "the import failed")
