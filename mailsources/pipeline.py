"""The ingestion pipeline: one readable function from a client's batches to
archive rows (SPEC §2, rules 1–5). Shared by IMAP and Microsoft 365.

Order of events for every batch, so that no mail is ever lost or doubled:
1. the raw bytes are stored write-once and fsynced (``archive.storage``);
2. one transaction records the documents, the dedup rows, the locations and,
   last, the folder cursor — a crash before the commit repeats the batch,
   which the unique keys turn into no-ops;
3. only then, for "move"/"delete", each stored copy is re-read and its hash
   checked before the server is told to act.

For speed, with "keep" a second thread downloads and stores (step 1) the next
batch while this one is committed (step 2): network, disk and database work
overlap, and the order of events of each batch stays as above.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from archive import bulk, storage
from archive.integrity import ledger
from archive.integrity.models import LedgerEvent
from archive.mail import parse_headers
from archive.mailview import HEAD_BYTES
from archive.models import Document, DocumentKind, FieldDefinition, FieldType, FileRole
from archive.processing import processing_register
from archive.services import NewDocument, NewFile, clean_field_value, documents_create_many
from mailsources import mailbox_runner
from mailsources.clients.base import (
    FetchedMessage,
    FolderBatch,
    MailClient,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from mailsources.leases import lease_acquire, lease_release, lease_renew
from mailsources.models import (
    AfterArchive,
    ArchivedMail,
    CursorStatus,
    FolderCursor,
    MailboxStatus,
    MailLocation,
    MailSource,
    RunStatus,
    SourceStatus,
    SyncRun,
    mailbox_identity,
)

logger = logging.getLogger(__name__)

# Called after each committed batch with the list of new document ids, e.g. to
# enqueue full parsing and text extraction. Set by mailsources.tasks.
AfterCommitHook = Callable[[list[int]], None]


# --------------------------------------------------------------------------- helpers


_UNSAFE_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')


def eml_name(subject: str, sha256: str) -> str:
    base = _UNSAFE_NAME.sub("_", subject).strip(" ._")[:80]
    return f"{base or 'mail-' + sha256[:12]}.eml"


def field_mapping(source: MailSource) -> dict[str, str]:
    """header → archive field name, per the source's mapping."""
    mapping = {}
    for header, field in (
        ("from", source.from_field),
        ("to", source.to_field),
        ("cc", source.cc_field),
        ("subject", source.subject_field),
    ):
        if field is not None:
            mapping[header] = field.name
    return mapping


def value_fits(field: FieldDefinition, value: object) -> bool:
    """Whether a header value can go into its mapped field. One that cannot (a
    subject mapped to a number field) is left out: the raw mail keeps it, and
    one mail must not fail its whole batch again and again."""
    if field.type == FieldType.TEXT:
        return True
    try:
        clean_field_value(field, value)
    except ValidationError:
        return False
    return True


@dataclasses.dataclass
class BatchResult:
    new: int = 0
    duplicate: int = 0
    new_document_ids: list[int] = dataclasses.field(default_factory=list)
    # (sha256, location) of every message of the batch, for move/delete.
    archived: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def _exact_locations(queryset: QuerySet[MailLocation], locations: Iterable[str], *fields: str) -> list[tuple[Any, ...]]:
    """(location, *fields) of the ledger rows whose location is one of ``locations`` byte
    for byte: Graph ids are case-sensitive, MariaDB's default collation is not."""
    wanted = sorted(set(locations))
    rows: list[tuple[Any, ...]] = []
    for i in range(0, len(wanted), 500):
        chunk = set(wanted[i : i + 500])
        rows += [row for row in queryset.filter(location__in=chunk).values_list("location", *fields) if row[0] in chunk]
    return rows


def known_filter(source: MailSource, mailbox: str, folder: str) -> Callable[[str, Iterable[str]], set[str]]:
    scope = source.location_scope(folder)

    def known(epoch: str, locations: Iterable[str]) -> set[str]:
        ledger = MailLocation.objects.filter(source=source, mailbox=mailbox, epoch=epoch, **scope)
        return {row[0] for row in _exact_locations(ledger, locations)}

    return known


# --------------------------------------------------------------------------- ingest


def batch_store(batch: FolderBatch) -> list[storage.StoredBlob]:
    """Step 1: the batch's raw bytes, durable (fsynced), in message order. A huge mail
    the client streamed into the store as it arrived (``stored``) is there already."""
    blobs = iter(storage.put_many([m.raw for m in batch.messages if m.stored is None]))
    return [m.stored if m.stored is not None else next(blobs) for m in batch.messages]


def _conversion_source(message: FetchedMessage) -> list[NewFile]:
    """The item an import converted into this mail (``details.converted``: an Outlook
    .msg or a PST item's property records, stored by the client): a file of the
    document beside its .eml, so that the ledger, the export and retention have it."""
    details = message.details
    if not details.get("converted") or not details.get("original_sha256"):
        return []
    sha, size = str(details["original_sha256"]), int(details.get("original_size", 0))
    if details.get("format") == "msg":
        name = PurePosixPath(str(details.get("original_name") or f"{sha[:16]}.msg")).name
        content_type = "application/vnd.ms-outlook"
    else:
        name, content_type = f"outlook-item-{sha[:16]}.json", "application/json"
    blob = storage.StoredBlob(sha, size, created=False)
    return [NewFile(name=name, blob=blob, content_type=content_type, role=FileRole.SOURCE)]


def _header_bytes(message: FetchedMessage, blob: storage.StoredBlob) -> bytes:
    """What ``parse_headers`` needs: the raw mail, or the start of a streamed one."""
    if message.stored is None:
        return message.raw
    with storage.open_blob(blob.sha256) as fh:
        return fh.read(HEAD_BYTES)


def batch_ingest(
    source: MailSource,
    mailbox: str,
    folder: str,
    batch: FolderBatch,
    run: SyncRun,
    blobs: list[storage.StoredBlob] | None = None,
) -> BatchResult:
    """Store, then commit one batch (documents, dedup rows, locations, cursor).
    ``blobs``: what ``batch_store(batch)`` returned, when the caller stored it."""
    # Rule 1: raw bytes durable before anything is parsed.
    stored = list(zip(batch.messages, batch_store(batch) if blobs is None else blobs, strict=True))
    mapping = field_mapping(source)
    mapped_fields = {
        f.name: f for f in (source.from_field, source.to_field, source.cc_field, source.subject_field) if f is not None
    }
    result = BatchResult()
    identity = mailbox_identity(source.kind, mailbox)
    with transaction.atomic():
        # Mailboxes of a source commit side by side: the rows every batch updates (the
        # source, the run) are taken first, in this order, so batches queue for them rather
        # than deadlock (MariaDB: each holding a shared lock from its inserts' foreign keys).
        list(MailSource.objects.select_for_update().filter(pk=source.pk).values_list("pk"))
        list(SyncRun.objects.select_for_update().filter(pk=run.pk).values_list("pk"))
        shas = {blob.sha256 for _, blob in stored}
        # Dedup per mailbox across sources (SPEC §2 rule 2): another source on the same
        # account archived these already? Then this one adds locations, not documents.
        found = list(
            ArchivedMail.objects.filter(mailbox_key=identity, sha256__in=shas).values_list("sha256", "pk", "document")
        )
        existing = {sha: pk for sha, pk, _ in found}
        # A mail whose document retention deleted (document NULL, the tombstone) has none.
        documents_of = {sha: number for sha, _, number in found if number is not None}
        to_create: dict[str, tuple[FetchedMessage, storage.StoredBlob]] = {}
        for message, blob in stored:
            if blob.sha256 in existing or blob.sha256 in to_create:
                result.duplicate += 1
            else:
                to_create[blob.sha256] = (message, blob)
        specs, headers_list = [], []
        for message, blob in to_create.values():
            headers = parse_headers(_header_bytes(message, blob))
            headers_list.append(headers)
            values: dict[str, object] = {"title": headers.subject or "(no subject)"}
            date = headers.date or message.received_at
            if date is not None:
                values["date"] = date.isoformat()
            for header, field_name in mapping.items():
                value = getattr(headers, "from_" if header == "from" else header)
                if value_fits(mapped_fields[field_name], value):
                    values[field_name] = value
            specs.append(
                NewDocument(
                    owner_group=source.owner_group,
                    values=values,
                    kind=DocumentKind.MAIL,
                    parse_error=headers.error,
                    files=[
                        NewFile(
                            name=eml_name(headers.subject, blob.sha256),
                            blob=blob,
                            content_type="message/rfc822",
                            role=FileRole.ORIGINAL,
                        ),
                        *_conversion_source(message),
                    ],
                )
            )
        # Text extraction is scheduled by the processing stage, in batches and
        # once the attachments are files (a task per mail here would cost ~1.5 ms each).
        actor = ledger.source_actor(source.pk)
        # Both calls' entries in one append, at the block's end: the documents are locked
        # first (the mails seen before), the ledger's head last and only once.
        with ledger.one_append():
            _record_locations_added(documents_of, stored, actor, {"mailbox": mailbox, "folder": folder})
            documents = documents_create_many(specs, schedule_extraction=False, actor=actor)
        # Their processing is pending from this commit on (its sweep finds a lost task).
        processing_register(d.pk for d in documents)
        new_mails = bulk.create(
            ArchivedMail(
                source=source,
                mailbox=mailbox,
                mailbox_key=identity,
                sha256=sha,
                document=document,
                message_id=headers.message_id,
                size=blob.size,
            )
            for (sha, (_, blob)), document, headers in zip(to_create.items(), documents, headers_list, strict=True)
        )
        mail_ids = existing | {m.sha256: m.pk for m in new_mails}
        if any(m.pk is None for m in new_mails):
            mail_ids.update(
                ArchivedMail.objects.filter(mailbox_key=identity, sha256__in=list(to_create)).values_list(
                    "sha256", "pk"
                )
            )
        here = MailLocation.objects.filter(source=source, mailbox=mailbox, folder=folder, epoch=batch.epoch)
        # Graph: mails archived before from another folder of the mailbox (moved here) were
        # not downloaded again; record that they are (also) in this folder now.
        seen_before = MailLocation.objects.filter(
            source=source, mailbox=mailbox, epoch=batch.epoch, **source.location_scope(folder)
        )
        known_mail_ids = dict(_exact_locations(seen_before, batch.known_locations, "mail_id"))
        bulk.create(
            [
                MailLocation(
                    source=source,
                    mailbox=mailbox,
                    folder=folder,
                    epoch=batch.epoch,
                    location=message.location,
                    mail_id=mail_ids[blob.sha256],
                    details=message.details,
                )
                for message, blob in stored
            ]
            + [
                MailLocation(
                    source=source, mailbox=mailbox, folder=folder, epoch=batch.epoch, location=location, mail_id=mail_id
                )
                for location, mail_id in known_mail_ids.items()
            ],
            ignore_conflicts=True,
        )
        if known_mail_ids:
            # Moved away and back again: present here once more.
            back = [pk for _, pk in _exact_locations(here.filter(removed_at__isnull=False), known_mail_ids, "pk")]
            MailLocation.objects.filter(pk__in=back).update(removed_at=None)
        present = {message.location for message, _ in stored} | set(known_mail_ids)
        removed = [location for location in batch.removed if location not in present]
        if removed:
            gone = [pk for _, pk in _exact_locations(here.filter(removed_at__isnull=True), removed, "pk")]
            MailLocation.objects.filter(pk__in=gone).update(removed_at=timezone.now())
        # The cursor moves with (never before) the rows it covers.
        FolderCursor.objects.update_or_create(
            source=source,
            mailbox=mailbox,
            folder=folder,
            defaults={"cursor": batch.cursor, "status": CursorStatus.OK, "status_message": ""},
        )
        result.new = len(documents)
        result.new_document_ids = [d.pk for d in documents]
        SyncRun.objects.filter(pk=run.pk).update(
            new=F("new") + result.new,
            duplicate=F("duplicate") + result.duplicate,
            done=F("done") + len(batch.messages),
        )
        MailSource.objects.filter(pk=source.pk).update(archived_count=F("archived_count") + result.new)
    result.archived = [(blob.sha256, message.location) for message, blob in stored]
    return result


def _record_locations_added(
    documents_of: dict[str, int],
    stored: list[tuple[FetchedMessage, storage.StoredBlob]],
    actor: str,
    where: dict[str, str],
) -> None:
    """Ledger entries for mails archived before (dedup) that this batch found in
    one more place. ``documents_of``: the document of each such mail (SHA-256 →
    number)."""
    seen = {blob.sha256 for _, blob in stored if blob.sha256 in documents_of}
    if not seen or not ledger.enabled():
        return
    documents = {
        d.pk: d
        for d in Document.objects.select_for_update().filter(pk__in={documents_of[sha] for sha in seen}).order_by("pk")
    }
    # (A document deleted since it was looked up is gone: nothing to record for it.)
    ledger.record_many(
        (LedgerEvent.LOCATION_ADDED, documents[documents_of[sha]], actor, [sha], where)
        for sha in sorted(seen)
        if documents_of[sha] in documents
    )


def batch_ingest_deduplicated(
    source: MailSource,
    mailbox: str,
    folder: str,
    batch: FolderBatch,
    run: SyncRun,
    blobs: list[storage.StoredBlob] | None = None,
) -> BatchResult:
    """``batch_ingest``, committed again when another source on the same mailbox
    committed some of the batch's mails meanwhile (only one run per source holds
    the lease, two sources on one account may run at once): the next attempt
    finds them archived and adds locations."""
    for attempt in range(1, 4):
        try:
            return batch_ingest(source, mailbox, folder, batch, run, blobs)
        except IntegrityError as exc:
            if "mailbox_key" not in str(exc):
                raise
            if attempt == 3:
                raise TransientSourceError(
                    f"another source on this mailbox archived the same mails at the same time: {exc}",
                    code="dedup_race",
                ) from exc
    raise AssertionError("unreachable")


def act_after_archive(
    client: MailClient,
    source: MailSource,
    mailbox: str,
    folder: str,
    epoch: str,
    archived: list[tuple[str, str]],
) -> int:
    """Move or delete at the source, only messages whose stored copy was
    re-read and hash-verified just now. Returns how many were acted on."""
    if source.after_archive == AfterArchive.KEEP or not archived:
        return 0
    verified = [(sha, loc) for sha, loc in archived if storage.verify(sha)]
    if len(verified) != len(archived):
        logger.error(
            "source %s: %d stored copies failed verification; they stay on the server",
            source.pk,
            len(archived) - len(verified),
        )
    if not verified:
        return 0
    locations = [loc for _, loc in verified]
    ArchivedMail.objects.filter(
        mailbox_key=mailbox_identity(source.kind, mailbox),
        sha256__in={sha for sha, _ in verified},
        verified_at__isnull=True,
    ).update(verified_at=timezone.now())
    if source.after_archive == AfterArchive.MOVE:
        client.move(folder, locations, source.move_to_folder, epoch=epoch)
    else:
        client.delete(folder, locations, epoch=epoch)
    MailLocation.objects.filter(
        source=source, mailbox=mailbox, folder=folder, epoch=epoch, location__in=locations
    ).update(acted_at=timezone.now())
    return len(verified)


def mailbox_sync(
    client: MailClient,
    source: MailSource,
    mailbox: str,
    run: SyncRun,
    owner: str,
    after_commit: AfterCommitHook | None = None,
) -> list[str]:
    """Sync every configured folder of one mailbox; returns per-folder errors
    (a missing folder does not stop the others). Other errors propagate."""
    errors: list[str] = []
    if source.after_archive != AfterArchive.KEEP:
        client.check_action_supported(source.after_archive)
    folders = source.folder_list or [f.name for f in client.list_folders()]
    if source.after_archive == AfterArchive.MOVE:
        # Never archive the folder we move into (it would loop).
        folders = [f for f in folders if f != source.move_to_folder]
    for folder in folders:
        cursor_row = FolderCursor.objects.filter(source=source, mailbox=mailbox, folder=folder).first()
        cursor = cursor_row.cursor if cursor_row and cursor_row.cursor else None
        try:
            first = True
            batches = client.sync_folder(
                folder, cursor, known_filter(source, mailbox, folder), min_age_days=source.min_age_days
            )
            # Moving/deleting uses the client between batches: no second thread then.
            # Inside a transaction (tests), another thread's connection would not see its rows.
            ahead = source.after_archive == AfterArchive.KEEP and not transaction.get_connection().in_atomic_block
            stored = _stored_ahead(batches) if ahead else ((b, batch_store(b)) for b in batches)
            for batch, blobs in stored:
                if first and batch.total is not None:
                    # The folder's messages less those the ledger holds already (an
                    # incremental run fetches only the rest); in a resync's new epoch,
                    # none are known and every message is read again.
                    known = MailLocation.objects.filter(
                        source=source, mailbox=mailbox, folder=folder, epoch=batch.epoch, removed_at__isnull=True
                    ).count()
                    remaining = max(0, batch.total - known, len(batch.messages))
                    SyncRun.objects.filter(pk=run.pk).update(total=F("done") + remaining)
                    first = False
                result = batch_ingest_deduplicated(source, mailbox, folder, batch, run, blobs)
                if after_commit and result.new_document_ids:
                    transaction.on_commit(functools.partial(after_commit, result.new_document_ids))
                acted = act_after_archive(client, source, mailbox, folder, batch.epoch, result.archived)
                unverified = 0 if source.after_archive == AfterArchive.KEEP else len(result.archived) - acted
                if unverified:
                    # A stored copy that does not match its hash is an archive problem
                    # someone must see: the mail stays on the server, the run says so.
                    SyncRun.objects.filter(pk=run.pk).update(failed=F("failed") + unverified)
                    errors.append(
                        f"{mailbox} / {folder}: {unverified} archived mail(s) failed "
                        "verification (stored copy does not match its hash); they stay "
                        "on the server"
                    )
                if batch.problems:
                    SyncRun.objects.filter(pk=run.pk).update(failed=F("failed") + len(batch.problems))
                    errors += [f"{folder}: {problem}" for problem in batch.problems]
                lease_renew(source.pk, owner)
        except PermanentSourceError as exc:
            # A folder that is gone, an import's file that cannot be read: the others go on.
            if exc.code not in ("folder_not_found", "file_unreadable"):
                raise
            FolderCursor.objects.update_or_create(
                source=source,
                mailbox=mailbox,
                folder=folder,
                defaults={"status": CursorStatus.ERROR, "status_message": str(exc)},
            )
            errors.append(f"{mailbox} / {folder}: {exc}")
    return errors


def _stored_ahead(batches: Iterator[FolderBatch]) -> Iterator[tuple[FolderBatch, list[storage.StoredBlob]]]:
    """(batch, its blobs) like ``(b, batch_store(b))``, but one batch ahead: a
    second thread downloads and stores the next batch while the caller commits
    this one. A batch is handed over only once its blobs are fsynced, so each
    commit still follows the storing of what it references. The client's
    generator (and the ledger queries it makes) runs in that thread only."""

    def fetch_and_store() -> tuple[FolderBatch, list[storage.StoredBlob]] | None:
        batch = next(batches, None)
        return None if batch is None else (batch, batch_store(batch))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-fetch") as pool:
        pending = pool.submit(fetch_and_store)
        try:
            while (item := pending.result()) is not None:
                pending = pool.submit(fetch_and_store)
                yield item
        finally:
            # Stopped early (an error while committing): the fetch in flight ends
            # first (a batch stored but not committed is repeated by the next run,
            # a no-op for the unique keys); then the client's generator is closed,
            # and the thread's database connection in the thread that opened it.
            with contextlib.suppress(Exception):
                pending.result()
            close = getattr(batches, "close", None)
            if close is not None:
                close()
            pool.submit(connections.close_all).result()


# --------------------------------------------------------------------------- run

ClientFactory = Callable[[MailSource, str], MailClient]


def source_sync(
    source_id: int,
    *,
    client_factory: ClientFactory,
    owner: str | None = None,
    after_commit: AfterCommitHook | None = None,
    only_mailboxes: list[str] | None = None,
) -> SyncRun | None:
    """One run of one source. Returns None when another run holds the lease.

    Raises TransientSourceError (after recording it) so the task can retry; its
    ``mailboxes`` then names the mailboxes still to sync (``only_mailboxes`` of the
    retry). A PermanentSourceError stops the source with a visible status.
    """
    owner = owner or uuid.uuid4().hex
    if not lease_acquire(source_id, owner):
        return None
    source = MailSource.objects.select_related(
        "owner_group", "from_field", "to_field", "cc_field", "subject_field"
    ).get(pk=source_id)
    # Holding the lease, no other run of this source is alive: a run still
    # marked running was cut off (its worker killed) and its lease expired.
    SyncRun.objects.filter(source=source, status=RunStatus.RUNNING).update(
        status=RunStatus.RETRY,
        finished=timezone.now(),
        errors="interrupted: the worker stopped before the run finished; the next run continued",
    )
    run = SyncRun.objects.create(source=source)
    MailSource.objects.filter(pk=source.pk).update(status=SourceStatus.RUNNING, status_message="")
    errors: list[str] = []
    mailboxes = source.sync_mailboxes
    if only_mailboxes is not None:  # a retry of the mailboxes that had to wait
        mailboxes = [m for m in mailboxes if m in only_mailboxes] or mailboxes
    permanent: list[str] = []

    def one_mailbox(address: str) -> list[str]:
        key = source.mailbox_key(address)
        client = client_factory(source, address)
        try:
            found = mailbox_sync(client, source, key, run, owner, after_commit)
        except PermanentSourceError as exc:
            _mailbox_status(source, key, SourceStatus.ERROR, str(exc))
            raise
        except TransientSourceError as exc:
            _mailbox_status(source, key, SourceStatus.RETRYING, str(exc))
            raise
        finally:
            client.close()
        _mailbox_status(source, key, SourceStatus.OK, "")
        return found

    try:
        # Microsoft 365 mailboxes side by side; one failing or waiting does not stop the others.
        parallel = source.has_mailbox_statuses and not transaction.get_connection().in_atomic_block
        outcome = mailbox_runner.run_mailboxes(mailboxes, one_mailbox, parallel=parallel)
        errors += outcome.errors
        if outcome.crashed is not None:
            raise outcome.crashed
        if len(mailboxes) == 1 and outcome.permanent:
            raise outcome.permanent[0][1]
        permanent += [f"{address}: {exc}" for address, exc in outcome.permanent]
        waiting = outcome.waiting_error(of=len(mailboxes))
        if waiting is not None:
            errors += permanent
            if len(outcome.waiting) < len(mailboxes):  # the others are done: retry the waiting ones
                waiting.mailboxes = outcome.waiting_mailboxes
            raise waiting
    except TransientSourceError as exc:
        _finish(run, source, RunStatus.RETRY, errors + [str(exc)], SourceStatus.RETRYING, str(exc))
        lease_release(source.pk, owner)
        raise
    except SourceError as exc:
        # Permanent: stop scheduling until someone fixes the configuration.
        logger.warning("source %s stopped: %s", source.pk, exc)
        _finish(run, source, RunStatus.FAILED, errors + [str(exc)], SourceStatus.ERROR, str(exc))
        lease_release(source.pk, owner)
        return run
    except BaseException as exc:
        _finish(
            run,
            source,
            RunStatus.RETRY,
            errors + [f"internal error: {exc!r}"],
            SourceStatus.RETRYING,
            "internal error; will retry",
        )
        lease_release(source.pk, owner)
        raise
    all_errors = errors + permanent
    if permanent and len(permanent) == len(mailboxes):
        _finish(run, source, RunStatus.FAILED, all_errors, SourceStatus.ERROR, "; ".join(permanent))
    elif all_errors:
        # Not "OK": the status says which mailboxes (and how many folders) fail.
        failing = [address for address in mailboxes if any(p.startswith(f"{address}: ") for p in permanent)]
        parts = []
        if failing:
            parts.append(f"{len(failing)} of {len(mailboxes)} mailboxes failing: {', '.join(failing)}")
        if errors:
            parts.append(f"{len(errors)} folder problem(s)")
        _finish(
            run,
            source,
            RunStatus.PARTIAL,
            all_errors,
            SourceStatus.PARTIAL,
            "; ".join(parts) + " (see the run history)",
        )
    else:
        _finish(run, source, RunStatus.OK, [], SourceStatus.OK, "")
    lease_release(source.pk, owner)
    return run


def _mailbox_status(source: MailSource, mailbox: str, status: str, message: str) -> None:
    if not source.has_mailbox_statuses:
        return
    MailboxStatus.objects.update_or_create(
        source=source, mailbox=mailbox, defaults={"status": status, "message": message}
    )


def _finish(run: SyncRun, source: MailSource, status: str, errors: list[str], source_status: str, message: str) -> None:
    now = timezone.now()
    run.refresh_from_db()
    run.status = status
    run.finished = now
    run.errors = "\n".join(errors)
    if status in (RunStatus.OK, RunStatus.PARTIAL):
        # Finished: everything there was to read was read. The estimate made at the
        # start (the folders' messages less the ledger's) may have counted mails too
        # young to archive or moved in already known; the true total is what was done.
        run.total = run.done
    run.save(update_fields=["status", "finished", "errors", "total"])
    update: dict[str, object] = {"status": source_status, "status_message": message[:2000], "last_run_at": now}
    if source_status == SourceStatus.ERROR:
        update["next_run_at"] = None
    MailSource.objects.filter(pk=source.pk).update(**update)
