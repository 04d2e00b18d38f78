"""``manage.py mail_views_build``: store the View tab's data (``MailView``) of
mails processed before it was stored, or stored in an older layout, so they
are shown without parsing their ``.eml`` per request. Until then they are
shown by parsing, as before; new mails get theirs from processing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from archive import mailview, processing, storage
from archive.models import DocumentFile, DocumentKind, FileRole, MailView


class Command(BaseCommand):
    help = "Store the mail view of processed mails that have none (or an outdated one)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="rebuild every mail's view, current ones too")

    def handle(self, *args: Any, **options: Any) -> None:
        current = MailView.objects.filter(schema=mailview.MAIL_VIEW_SCHEMA).values("original_id")
        originals = DocumentFile.objects.filter(role=FileRole.ORIGINAL, document__kind=DocumentKind.MAIL)
        if not options["all"]:
            originals = originals.exclude(pk__in=current)
        built = skipped = 0
        for original in originals.order_by("pk").iterator(chunk_size=200):
            try:
                ok = processing.mail_view_build(original)
            except storage.StorageError:
                ok = False
            built, skipped = built + ok, skipped + (not ok)
        self.stdout.write(f"{built} mail views stored, {skipped} mails left to be parsed when shown")
