"""Imports of existing archives as mail sources: set one up (from the command line,
the server directory page or a browser upload), resolve the mailbox it belongs to,
and read how far it has come."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext

from archive.models import FieldDefinition
from mailsources.clients.imports import ImportClient, ProgressHook, ZipLimits, discover
from mailsources.models import FolderCursor, ImportFormat, MailSource, SourceKind, mailbox_identity

# A finished import has nothing left to read; a run now and then only resumes one that
# was cut off (every cursor says where it stands).
IMPORT_INTERVAL_MINUTES = 24 * 60


class ImportSetupError(ValueError):
    """A path or mailbox an import cannot be set up with; ``str()`` says why."""


def import_mailbox_resolve(address: str) -> str:
    """The mailbox identity (``ArchivedMail.mailbox_key``) of ``address``: the one of the
    IMAP or Microsoft 365 source that archives that mailbox, so the import adds
    locations to its mails rather than second documents; else the address itself."""
    address = address.strip()
    if not address or any(c.isspace() for c in address):
        raise ImportSetupError(gettext("enter the mailbox address the mails belong to (e.g. alice@example.com)"))
    wanted = address.lower()
    for source in MailSource.objects.filter(kind=SourceKind.IMAP).order_by("pk"):
        key = source.mailbox_key()
        if wanted in (source.username.lower(), key.lower()):
            return source.mailbox_identity()
    for source in MailSource.objects.filter(kind=SourceKind.M365).order_by("pk"):
        if wanted in (m.lower() for m in source.mailbox_list):
            return mailbox_identity(SourceKind.M365, wanted)
    return mailbox_identity(SourceKind.M365, wanted)


def import_path_check(path: Path, *, inside: Path | None = None) -> Path:
    resolved = path.expanduser().resolve()
    if inside is not None and not resolved.is_relative_to(inside.resolve()):
        raise ImportSetupError(gettext("%(path)s is not inside the import directory") % {"path": path})
    if not resolved.exists():
        raise ImportSetupError(gettext("%(path)s does not exist") % {"path": path})
    return resolved


@transaction.atomic
def import_source_create(
    path: Path, address: str, owner_group: Group, fmt: str = ImportFormat.AUTO, *, inside: Path | None = None
) -> MailSource:
    """The import source for ``path`` into the mailbox ``address``; the one set up
    before when there is one (running it again resumes it). ``inside``: the directory
    the path must be in once links are resolved (the web pages: IMPORT_DIR)."""
    if fmt not in ImportFormat.values:
        raise ImportSetupError(f"unknown format {fmt!r} (one of {', '.join(ImportFormat.values)})")
    resolved = import_path_check(path, inside=inside)
    identity = import_mailbox_resolve(address)
    existing = MailSource.objects.filter(
        kind=SourceKind.IMPORT, import_path=str(resolved), mailboxes=identity, import_format=fmt
    ).first()
    if existing is not None:
        return existing
    base = f"Import {resolved.name} → {address.strip()}"[:90]
    name = base
    number = 1
    while MailSource.objects.filter(name=name).exists():
        number += 1
        name = f"{base} ({number})"
    # The mapping an administrator would pick: the archive's fields of those names.
    fields = {f.name: f for f in FieldDefinition.objects.filter(name__in=["from", "to", "cc", "subject"])}
    return MailSource.objects.create(
        from_field=fields.get("from"),
        to_field=fields.get("to"),
        cc_field=fields.get("cc"),
        subject_field=fields.get("subject"),
        kind=SourceKind.IMPORT,
        name=name,
        import_path=str(resolved),
        import_format=fmt,
        mailboxes=identity,
        folders="",
        owner_group=owner_group,
        interval_minutes=IMPORT_INTERVAL_MINUTES,
    )


def import_client(source: MailSource, progress: ProgressHook | None = None) -> ImportClient:
    limits = ZipLimits(
        member_bytes=settings.IMPORT_ZIP_MAX_MEMBER_BYTES,
        total_bytes=settings.IMPORT_ZIP_MAX_TOTAL_BYTES,
        ratio=settings.IMPORT_ZIP_MAX_RATIO,
    )
    return ImportClient(Path(source.import_path), source.import_format, zip_limits=limits, progress=progress)


@dataclasses.dataclass(frozen=True)
class ImportFileProgress:
    name: str
    done: bool
    bytes_done: int
    error: str


def import_progress(source: MailSource) -> list[ImportFileProgress]:
    """Per file (unit) read so far: its checkpoint, from the committed cursors."""
    rows = FolderCursor.objects.filter(source=source).order_by("folder")
    return [
        ImportFileProgress(
            name=row.folder,
            done=bool(row.cursor.get("done")),
            bytes_done=int(row.cursor.get("bytes_done", 0) or 0),
            error=row.status_message,
        )
        for row in rows
    ]


def import_bytes_text(source: MailSource) -> str:
    """ "1.2 GB of 3.4 GB read" from the committed checkpoints and the files' sizes."""
    from django.template.defaultfilters import filesizeformat

    try:
        units = discover(Path(source.import_path), source.import_format)
    except OSError:
        return gettext("the import path is not readable")
    sizes = {unit.name: unit.size for unit in units}
    done = sum(
        sizes.get(row.name, 0) if row.done else min(row.bytes_done, sizes.get(row.name, 0))
        for row in import_progress(source)
    )
    return gettext("%(done)s of %(total)s read") % {
        "done": filesizeformat(done),
        "total": filesizeformat(sum(sizes.values())),
    }


def import_dir_entries() -> list[tuple[str, int, bool]]:
    """(name, size in bytes, is a directory) of what lies in IMPORT_DIR, for the page."""
    root = Path(settings.IMPORT_DIR)
    if not root.is_dir():
        return []
    entries = []
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        entries.append((path.name, size, path.is_dir()))
    return entries


def import_sources() -> list[MailSource]:
    return list(MailSource.objects.filter(Q(kind=SourceKind.IMPORT)).order_by("-created"))
