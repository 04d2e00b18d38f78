"""`python manage.py mailtest SOURCE`: the successor of the original's mailtest.py."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailsources.clients.base import SourceError
from mailsources.models import MailSource
from mailsources.secrets import SecretUnavailable
from mailsources.services import source_test_connection


class Command(BaseCommand):
    help = "Log in to a mail source, list its folders and show the newest mail's subject."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="the source's name or number")

    def handle(self, *args: object, **options: object) -> None:
        ref = str(options["source"])
        source = MailSource.objects.filter(name=ref).first()
        if source is None and ref.isdigit():
            source = MailSource.objects.filter(pk=int(ref)).first()
        if source is None:
            names = ", ".join(MailSource.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No mail source {ref!r} (sources: {names})")
        try:
            reports = source_test_connection(source)
        except (SourceError, SecretUnavailable) as exc:
            raise CommandError(str(exc)) from None
        for report in reports:
            for line in report.lines:
                self.stdout.write(line)
