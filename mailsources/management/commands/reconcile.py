"""manage.py reconcile [--source ID] [--csv FILE]: the reconciliation report."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from mailsources import reconcile


class Command(BaseCommand):
    help = "Compare what the mail servers hold now with the archived locations (read-only on the servers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", type=int, help="Only this mail source (its id).")
        parser.add_argument("--csv", metavar="FILE", help="Also write every listed message to this CSV file.")

    def handle(self, *args: Any, **options: Any) -> None:
        reports = reconcile.reconcile(options["source"])
        for r in reports:
            where = f"{r.source.name} / {r.mailbox} / {r.folder or '—'}"
            if r.error:
                self.stdout.write(f"{where}: ERROR {r.error}")
                continue
            self.stdout.write(
                f"{where}: {r.on_server} on the server, {r.archived} archived, "
                f"{r.not_archived} not archived, {r.gone} archived but gone"
            )
            for row in r.rows:
                self.stdout.write(f"  {row.state}: {row.location} {row.message_id} — {row.reason}")
        if options["csv"]:
            with open(options["csv"], "w", newline="", encoding="utf-8") as out:
                reconcile.write_csv(reports, out)
            self.stdout.write(f"CSV written to {options['csv']}")
        if not reports:
            self.stdout.write("No mail sources.")
