"""Access links (SPEC §5): two lines — a title line and a URL — plus an HTML flavour."""

from __future__ import annotations

import dataclasses
import re
from html import escape
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from archive.models import ArchiveSettings, Document
from archive.selectors import field_value

# The original box's link form; customers pasted these into files and
# newsletters, so this path must keep working forever.
LEGACY_PATH = "/perl/avclient/index.pl"

_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:\d{1,5})?$")


def validate_dns_name(value: str) -> None:
    """``http(s)://host[:port]`` with nothing after it."""
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not value.lower().startswith(parts.scheme + "://"):
        raise ValidationError(_("Must start with http:// or https://"))
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValidationError(_("Only http(s)://host[:port] — no path, query, fragment or user."))
    if not _HOST.match(parts.netloc):
        raise ValidationError(_("%(host)s is not a valid host name or address") % {"host": repr(parts.netloc)})
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise ValidationError(_("Port must be between 1 and 65535"))


@dataclasses.dataclass(frozen=True)
class AccessLink:
    number: int
    title: str
    url: str

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.url}"

    @property
    def html(self) -> str:
        return f'<a href="{escape(self.url)}">{escape(self.title)}</a>'


def link_base(settings: ArchiveSettings, request_base: str) -> str:
    """The configured DNS name, else the address the browser used."""
    return (settings.dns_name or request_base).rstrip("/")


def title_line(document: Document, settings: ArchiveSettings) -> str:
    if settings.link_title_field is not None:
        value = field_value(document, settings.link_title_field)
        if value not in (None, ""):
            return str(value)
    # The original's fallback: "File number: Title content".
    return f"{document.pk}: {document.title}"


def access_link(document: Document, settings: ArchiveSettings, request_base: str) -> AccessLink:
    url = f"{link_base(settings, request_base)}{LEGACY_PATH}?target=new&go={document.pk}"
    return AccessLink(number=document.pk, title=title_line(document, settings), url=url)


def clipboard_payload(links: list[AccessLink]) -> dict[str, object]:
    return {
        "links": [dataclasses.asdict(link) for link in links],
        "text": "\n".join(link.text for link in links),
        "html": "<br>\n".join(link.html for link in links),
    }
