"""The reconciliation report (issue 13 item 7): per source, mailbox and folder,
what the server holds now against the archived locations — mail on the server
but not archived, with the reason (excluded folder, too big, too young,
failed, new since the last run), and archived mail no longer on the server.

Read-only on the server: the clients' ``list_folders`` and ``folder_inventory``
(EXAMINE and FETCH of sizes, dates and Message-IDs, never a body)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from typing import IO, Any

from django.conf import settings
from django.utils import timezone

from mailsources import services
from mailsources.clients.base import SourceError
from mailsources.clients.inventory import FolderInventory, ServerMessage
from mailsources.models import ArchivedMail, CursorStatus, FolderCursor, MailLocation, MailSource, RunStatus, SyncRun


class State:
    ARCHIVED = "archived"
    NOT_ARCHIVED = "not archived"
    GONE = "archived, no longer on the server"
    DELETED = "archived, deleted by retention"


@dataclasses.dataclass
class Row:
    """One message the report names: on the server and not archived, or archived and gone."""

    state: str
    reason: str
    location: str
    message_id: str = ""
    size: int | None = None
    received_at: dt.datetime | None = None
    document: int | None = None


@dataclasses.dataclass
class FolderReport:
    source: MailSource
    mailbox: str
    folder: str
    on_server: int = 0
    archived: int = 0
    rows: list[Row] = dataclasses.field(default_factory=list)
    error: str = ""

    @property
    def not_archived(self) -> int:
        return sum(1 for r in self.rows if r.state == State.NOT_ARCHIVED)

    @property
    def gone(self) -> int:
        return sum(1 for r in self.rows if r.state == State.GONE)


@dataclasses.dataclass
class Context:
    """What the reasons are read from: the source's settings and its run history."""

    source: MailSource
    now: dt.datetime
    last_run: SyncRun | None
    cursors: dict[tuple[str, str], FolderCursor]

    def excluded(self, folder: str) -> bool:
        configured = [f.casefold() for f in self.source.folder_list]
        return bool(configured) and folder.casefold() not in configured

    @staticmethod
    def beyond_cursor(cursor: FolderCursor | None, message: ServerMessage) -> bool:
        """An IMAP UID above the folder's watermark: the sync has not reached it yet."""
        return cursor is not None and _uid_after(message.location, cursor.cursor.get("last_uid"))

    def reason(self, mailbox: str, folder: str, message: ServerMessage) -> str:
        source = self.source
        if self.excluded(folder):
            return "excluded folder (not in the source's folder list)"
        if message.size > settings.MAIL_MAX_MESSAGE_BYTES:
            return f"too big ({message.size} bytes, the limit is {settings.MAIL_MAX_MESSAGE_BYTES})"
        cutoff = self.now - dt.timedelta(days=source.min_age_days)
        if source.min_age_days and message.received_at is not None and message.received_at > cutoff:
            return f"too young (archived when {source.min_age_days} day(s) old)"
        cursor = self.cursors.get((mailbox, folder))
        if cursor is not None and cursor.status == CursorStatus.ERROR:
            return f"failed: {cursor.status_message or 'the folder failed in the last run'}"
        if self.beyond_cursor(cursor, message):
            return "new since the last run"
        run = self.last_run
        # A partly failing run names its failed folders in their cursors (above).
        if run is not None and run.status in (RunStatus.FAILED, RunStatus.RETRY):
            first = next((line for line in run.errors.splitlines() if line.strip()), run.get_status_display())
            return f"failed: the last run {run.get_status_display().lower()}: {first}"
        if not source.enabled:
            return "the source is disabled"
        if run is None or (message.received_at is not None and message.received_at > run.started):
            return "new since the last run"
        return "not archived, no reason recorded (see the run history)"


def _uid_after(location: str, last_uid: object) -> bool:
    return location.isdigit() and isinstance(last_uid, int) and int(location) > last_uid


def _context(source: MailSource, now: dt.datetime) -> Context:
    cursors = {(c.mailbox, c.folder): c for c in source.cursors.all()}
    return Context(source, now, source.runs.order_by("-started").first(), cursors)


def folder_report(context: Context, address: str, inventory: FolderInventory) -> FolderReport:
    source = context.source
    mailbox = source.mailbox_key(address)
    report = FolderReport(source, mailbox, inventory.folder, on_server=len(inventory.messages))
    locations = MailLocation.objects.filter(source=source, mailbox=mailbox, **source.location_scope(inventory.folder))
    known = {(loc.epoch, loc.location): loc for loc in locations.select_related("mail")}
    by_message_id = _archived_message_ids(source.mailbox_identity(address), inventory.messages)
    on_server = set()
    for message in inventory.messages:
        on_server.add((inventory.epoch, message.location))
        location = known.get((inventory.epoch, message.location))
        if location is not None and location.mail.document_id is None:
            # The archive's copy expired (archive.retention): the tombstone keeps it from coming back.
            report.rows.append(Row(State.DELETED, "past its retention end", message.location, message.message_id))
            continue
        document = location.mail.document_id if location else by_message_id.get(message.message_id)
        if document is not None:
            report.archived += 1
            continue
        reason = context.reason(mailbox, inventory.folder, message)
        report.rows.append(
            Row(State.NOT_ARCHIVED, reason, message.location, message.message_id, message.size, message.received_at)
        )
    for key, location in sorted(known.items()):
        if key in on_server or location.folder != inventory.folder:
            continue
        why = "moved or deleted by the archive (after archiving)" if location.acted_at else "removed on the server"
        report.rows.append(
            Row(
                State.GONE,
                why,
                location.location,
                location.mail.message_id,
                location.mail.size,
                None,
                location.mail.document_id,
            )
        )
    return report


def _archived_message_ids(mailbox_key: str, messages: Iterable[ServerMessage]) -> dict[str, int]:
    """Mail archived from this mailbox under another location (a renumbered folder): by Message-ID."""
    ids = [m.message_id for m in messages if m.message_id]
    found: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        rows = ArchivedMail.objects.filter(mailbox_key=mailbox_key, message_id__in=ids[start : start + 500])
        found.update(rows.values_list("message_id", "document_id"))
    return found


UNSUPPORTED = "this kind of source cannot list a folder's messages yet"
ClientFactory = Callable[[MailSource, str], Any]


def reconcile_source(
    source: MailSource, *, client_factory: ClientFactory = services.client_for_source, now: dt.datetime | None = None
) -> list[FolderReport]:
    """Every folder of every mailbox of ``source``; a mailbox that cannot be read is one report with its error."""
    context = _context(source, now or timezone.now())
    reports: list[FolderReport] = []
    for address in source.sync_mailboxes:
        try:
            client = client_factory(source, address)
        except SourceError as exc:
            reports.append(FolderReport(source, source.mailbox_key(address), "", error=str(exc)))
            continue
        if not hasattr(client, "folder_inventory"):
            client.close()
            reports.append(FolderReport(source, source.mailbox_key(address), "", error=UNSUPPORTED))
            continue
        try:
            for folder in client.list_folders():
                reports.append(folder_report(context, address, client.folder_inventory(folder.name)))
        except SourceError as exc:
            reports.append(FolderReport(source, source.mailbox_key(address), "", error=str(exc)))
        finally:
            client.close()
    return reports


def reconcile(source_id: int | None = None, **kwargs: Any) -> list[FolderReport]:
    sources = MailSource.objects.order_by("name")
    if source_id is not None:
        sources = sources.filter(pk=source_id)
    return [report for source in sources for report in reconcile_source(source, **kwargs)]


CSV_COLUMNS = [
    "source",
    "mailbox",
    "folder",
    "state",
    "reason",
    "location",
    "message_id",
    "size",
    "received",
    "document",
]


def write_csv(reports: list[FolderReport], out: IO[str]) -> None:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for report in reports:
        if report.error:
            writer.writerow(
                [report.source.name, report.mailbox, report.folder, "error", report.error, "", "", "", "", ""]
            )
        for row in report.rows:
            writer.writerow(
                [
                    report.source.name,
                    report.mailbox,
                    report.folder,
                    row.state,
                    row.reason,
                    row.location,
                    row.message_id,
                    "" if row.size is None else row.size,
                    row.received_at.isoformat() if row.received_at else "",
                    row.document or "",
                ]  # fmt: skip
            )
