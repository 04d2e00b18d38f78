from django.http import HttpRequest

from archive.models import ArchiveSettings


def archive_settings(request: HttpRequest) -> dict[str, object]:
    # Read on every request so a change takes effect on the next page load on
    # every worker; it is one primary-key lookup.
    return {"archive_settings": ArchiveSettings.load()}
