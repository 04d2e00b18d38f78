"""``manage.py ledger_baseline``: a first ledger entry for every document
archived before the integrity ledger existed (run once after the upgrade)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from archive.integrity import ledger


class Command(BaseCommand):
    help = "Record a baseline ledger entry for every document that has none."

    def handle(self, *args: Any, **options: Any) -> None:
        count = ledger.record_baseline()
        self.stdout.write(f"{count} document(s) recorded")
