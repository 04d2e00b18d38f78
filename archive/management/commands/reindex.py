"""``manage.py reindex``: rebuild the full-text index of every document (or
some), optionally extracting file text first, with a progress bar."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandParser, OutputWrapper
from django.db import connection

from archive import extraction, search
from archive.models import Document, DocumentFile, ExtractionStatus
from archive.search import statistics, upgrade
from archive.search.tokens import MIN_TOKEN_CHARS


class Progress:
    """A one-line progress bar on a terminal; a line per 10 % otherwise (logs)."""

    def __init__(self, label: str, total: int, out: OutputWrapper) -> None:
        self.label, self.total, self.out = label, total, out
        self.done = 0
        self.started = time.monotonic()
        self.shown_at = 0.0
        self.shown_tenth = -1
        self.tty = out.isatty()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        tenth = self.done * 10 // max(1, self.total)
        if self.tty and (now - self.shown_at > 0.2 or self.done >= self.total):
            self.out.write("\r" + self.line(now), ending="")
            self.shown_at = now
        elif not self.tty and tenth != self.shown_tenth:
            self.out.write(self.line(now))
            self.shown_tenth = tenth
        self.out.flush()

    def line(self, now: float) -> str:
        fraction = min(1.0, self.done / max(1, self.total))
        bar = "#" * int(30 * fraction)
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return (
            f"{self.label} [{bar:<30}] {fraction:4.0%} {self.done:,}/{self.total:,}"
            f"  {rate:,.0f}/s  ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        )

    def finish(self) -> None:
        if self.tty:
            self.out.write("")
        self.out.flush()


class Command(BaseCommand):
    help = "Rebuild the full-text search index (fields, notes, file names and extracted text)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("numbers", nargs="*", type=int, help="Only these documents (default: all).")
        parser.add_argument(
            "--extract",
            action="store_true",
            help="First extract the text of files that wait for it (here, not in a worker).",
        )
        parser.add_argument(
            "--retry-failed",
            action="store_true",
            help="With --extract: give files whose extraction failed new attempts.",
        )
        parser.add_argument(
            "--re-extract",
            action="store_true",
            help="With --extract: extract every file again (after an extractor update).",
        )
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument(
            "--optimize", action="store_true", help="Afterwards, compact the index (FTS5 optimize / OPTIMIZE TABLE)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.check_server()
        numbers: list[int] = options["numbers"]
        documents = Document.objects.all()
        if numbers:
            documents = documents.filter(pk__in=numbers)
        if options["extract"]:
            self.extract(documents, retry_failed=options["retry_failed"], again=options["re_extract"])
        total = documents.count()
        progress = Progress("Indexing  ", total, self.stderr)
        indexed = 0
        for batch in self.batches(documents, options["batch_size"]):
            indexed += search.index_documents(batch)
            progress.advance(len(batch))
        progress.finish()
        if not numbers:
            upgrade.mark_current()  # every entry holds the current token stream now
        if options["optimize"]:
            self.optimize()
        statistics.refresh()  # the planner's figures, from the new index
        self.stdout.write(self.style.SUCCESS(f"Indexed {indexed:,} document(s)."))

    @staticmethod
    def batches(documents: Any, size: int) -> Iterator[list[int]]:
        last = 0
        while True:
            batch = list(documents.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
            if not batch:
                return
            yield batch
            last = batch[-1]

    def extract(self, documents: Any, *, retry_failed: bool, again: bool) -> None:
        files = DocumentFile.objects.filter(document__in=documents)
        if again:
            files.update(extraction_status=ExtractionStatus.PENDING, extraction_attempts=0, extraction_error="")
        elif retry_failed:
            files.filter(extraction_status=ExtractionStatus.FAILED).update(
                extraction_status=ExtractionStatus.PENDING, extraction_attempts=0
            )
        waiting = list(
            files.filter(
                extraction_status__in=(ExtractionStatus.PENDING, ExtractionStatus.FAILED),
                extraction_attempts__lt=extraction.max_attempts(),
            )
            .values_list("document_id", flat=True)
            .distinct()
            .order_by("document_id")
        )
        progress = Progress("Extracting", len(waiting), self.stderr)
        outcomes: dict[str, int] = {}
        for number in waiting:
            for status, count in extraction.extract_document(number, reschedule=False).items():
                outcomes[status] = outcomes.get(status, 0) + count
            progress.advance(1)
        progress.finish()
        summary = ", ".join(f"{count:,} {status}" for status, count in sorted(outcomes.items())) or "nothing to do"
        self.stdout.write(f"Extraction: {summary}.")

    def check_server(self) -> None:
        """Short words are padded to MIN_TOKEN_CHARS for InnoDB; a server that
        indexes only longer tokens would lose them."""
        if connection.vendor != "mysql":
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@innodb_ft_min_token_size")
            (size,) = cursor.fetchone()
        if int(size) > MIN_TOKEN_CHARS:
            self.stderr.write(
                self.style.WARNING(
                    f"innodb_ft_min_token_size is {size}: words shorter than that are not found."
                    f" Set it to {MIN_TOKEN_CHARS} or less in the server configuration, then reindex."
                )
            )

    def optimize(self) -> None:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("INSERT INTO archive_searchentry_fts(archive_searchentry_fts) VALUES ('optimize')")
            elif connection.vendor == "mysql":
                # Rebuilds the table: drops the rows InnoDB keeps for deleted/updated entries.
                cursor.execute("OPTIMIZE TABLE archive_searchentry")
                cursor.fetchall()
        self.stdout.write("Index optimized.")
