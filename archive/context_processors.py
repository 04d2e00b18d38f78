from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest

from archive import selectors
from archive.models import ArchiveSettings


def archive_settings(request: HttpRequest) -> dict[str, object]:
    # Read on every request so a change takes effect on the next page load on
    # every worker; it is one primary-key lookup.
    return {
        "archive_settings": ArchiveSettings.load(),
        # The auditor role: the pages leave out what would change the archive.
        "is_auditor": selectors.is_auditor(getattr(request, "user", AnonymousUser())),
    }
