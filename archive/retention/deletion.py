"""The one deletion service: deletes the documents of an approved expiry list
that are still past their retention end and not held, after the ledger entry
that records each (in the same transaction), and their blobs once nothing
references them (after the commit, past a grace period)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from archive import storage
from archive.integrity import ledger
from archive.integrity.models import LedgerEvent
from archive.models import Document, DocumentFile

from . import holds, lock, policies
from .models import BlobRemoval, ExpiryItem, ExpiryList, ExpiryStatus, ItemStatus


class NotApproved(Exception):
    pass


def _grace() -> dt.timedelta:
    return dt.timedelta(seconds=int(getattr(settings, "RETENTION_BLOB_GRACE_SECONDS", 3600)))


@transaction.atomic
def documents_delete(expiry_list: ExpiryList, items: Sequence[ExpiryItem], now: dt.datetime) -> int:
    """Delete what of ``items`` may go; mark every item with its outcome. Returns the number deleted."""
    if expiry_list.status != ExpiryStatus.APPROVED:
        raise NotApproved(f"expiry list {expiry_list.pk} is not approved")
    by_number = {item.document: item for item in items}
    documents = list(
        Document.objects.select_for_update()
        .filter(pk__in=list(by_number))
        .select_related("owner_group")
        .prefetch_related("files")
    )
    for number in set(by_number) - {d.pk for d in documents}:
        by_number[number].status = ItemStatus.GONE
    found = policies.retentions(documents)
    today = policies.today(now)
    still_expired = [d for d in documents if found[d.pk].expired(today)]
    for document in documents:
        if not found[document.pk].expired(today):
            by_number[document.pk].status = ItemStatus.KEPT_RETENTION
    held = holds.held_numbers([d.pk for d in still_expired])
    doomed = [d for d in still_expired if d.pk not in held]
    for number in held:
        by_number[number].status = ItemStatus.KEPT_HELD
    if doomed:
        _delete(expiry_list, doomed, found, by_number, now)
    ExpiryItem.objects.bulk_update(items, ["status", "hashes", "ledger_seq", "deleted"])
    return len(doomed)


def _delete(
    expiry_list: ExpiryList,
    documents: list[Document],
    found: dict[int, policies.Retention],
    by_number: dict[int, ExpiryItem],
    now: dt.datetime,
) -> None:
    approvers = expiry_list.approvers()
    changes = []
    for document in documents:
        blobs = sorted({f.sha256 for f in document.files.all()})
        retention = found[document.pk]
        details = {
            "number": document.pk,
            "hashes": blobs,
            "metadata_sha256": ledger.metadata_hash(document),
            "policy": retention.policy.name if retention.policy else "",
            "retention_end": retention.end.isoformat() if retention.end else None,
            "approvers": approvers,
            "expiry_list": expiry_list.pk,
            "time": now.isoformat(),
        }
        changes.append((LedgerEvent.DELETED, document, approvers[-1], blobs, details))
        item = by_number[document.pk]
        item.status, item.hashes, item.deleted = ItemStatus.DELETED, blobs, now
    entries = ledger.record_many(changes)
    for document, entry in zip(documents, entries, strict=False):  # none with the ledger off (bench only)
        by_number[document.pk].ledger_seq = entry.seq
    numbers = [d.pk for d in documents]
    # mailsources' dedup rows and locations stay, their document set to NULL: they are the
    # tombstone that keeps a mail still on the server from being archived again.
    stale = {sha for d in documents for sha in by_number[d.pk].hashes}
    with lock.authorised(numbers):
        # Files, search entry, mail views and public-access rows go with the documents (CASCADE).
        Document.objects.filter(pk__in=numbers).delete()
    BlobRemoval.objects.bulk_create(
        [BlobRemoval(sha256=sha, due=now + _grace()) for sha in sorted(stale)], ignore_conflicts=True
    )
    transaction.on_commit(lambda: blobs_remove_due(now))


def blobs_remove_due(now: dt.datetime | None = None) -> int:
    """Remove the blobs whose grace period is over and that no file references
    (those still referenced stay, and their row goes). Returns how many were removed."""
    now = now or timezone.now()
    removed = 0
    for removal in BlobRemoval.objects.filter(due__lte=now).order_by("due"):
        with transaction.atomic():
            if not DocumentFile.objects.filter(sha256=removal.sha256).exists():
                removed += storage.remove(removal.sha256)
            removal.delete()
    return removed
