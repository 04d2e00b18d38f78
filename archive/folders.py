"""The WebDMS folder tree: mailbox → folders with the number of the user's
mails in each (a mail in two folders counts in both), and the table's filter
by mailbox and folder.

Counting every location of a big archive on a page view is too slow (0.67 s
at 50,000 locations), so the counts are precomputed per owner group in
``FolderCount`` up to a location number (``upto``), and a page view adds only
the locations archived since — a small grouped query over the newest rows of
the location ledger. ``folder_counts_refresh`` recounts (the dashboard's
beat calls it when the part counted live has grown, and nightly). Until a
first refresh everything is counted live."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import defaultdict
from typing import Any, cast

from django.apps import apps
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, F, Max, OuterRef, QuerySet, Sum

from archive import selectors
from archive.models import Document, FolderCount

TREE_SECONDS = 120  # how long a user's tree is reused (until a mail arrives or moves)
# A refresh is due once this many locations are counted live on every page view.
LIVE_LOCATIONS_MAX = 5_000


@dataclasses.dataclass(frozen=True)
class FolderNode:
    mailbox: str
    folder: str
    label: str  # the last part of the path
    depth: int
    count: int


@dataclasses.dataclass(frozen=True)
class MailboxNode:
    mailbox: str
    count: int
    folders: list[FolderNode]


def _locations() -> Any:
    return apps.get_model("mailsources", "MailLocation").objects


def _counted_upto() -> int:
    return _counted()[0]


def _counted() -> tuple[int, int]:
    """The mark of the stored counts and their newest row (a refresh writes new rows)."""
    found = FolderCount.objects.aggregate(upto=Max("upto"), row=Max("pk"))
    return found["upto"] or 0, found["row"] or 0


def folder_counts_refresh() -> int:
    """Recount every (owner group, mailbox, folder) up to the newest location;
    returns the number of rows written. One transaction: a page view sees the
    old counts or the new ones, never a mix."""
    with transaction.atomic():
        upto = _locations().aggregate(m=Max("pk"))["m"] or 0
        counted = (
            _locations()
            .filter(pk__lte=upto)
            .annotate(group=F("mail__document__owner_group_id"))
            .exclude(group=None)  # a tombstone: its document was deleted by retention
            .values("group", "mailbox", "folder")
            .annotate(n=Count("mail", distinct=True))
            .values_list("group", "mailbox", "folder", "n")
        )
        rows = [
            FolderCount(owner_group_id=group, mailbox=mailbox, folder=folder, mails=n, upto=upto)
            for group, mailbox, folder, n in counted
        ]
        FolderCount.objects.all().delete()
        FolderCount.objects.bulk_create(rows, batch_size=1000)
        if not rows and upto:
            # Nothing visible is counted, but the mark must move: one empty row keeps it.
            FolderCount.objects.create(owner_group_id=None, mailbox="", folder="", mails=0, upto=upto)
    return len(rows)


def folder_counts_due() -> bool:
    """More than ``LIVE_LOCATIONS_MAX`` locations archived since the last count."""
    upto = _counted_upto()
    return bool(_locations().filter(pk__gt=upto)[LIVE_LOCATIONS_MAX : LIVE_LOCATIONS_MAX + 1].exists())


def folder_tree(user: Any) -> list[MailboxNode]:
    """The user's tree: the precomputed counts of the user's groups plus one
    grouped query over the locations archived since they were counted, kept
    per set of groups until a location or document is added, at most
    ``TREE_SECONDS``: the table pages of one user reuse it."""
    groups = (
        None
        if selectors.sees_everything(user)
        else sorted(selectors.groups_for_user(user).values_list("pk", flat=True))
    )
    if groups == []:
        return []
    locations = _locations()
    upto, counted = _counted()
    latest = (locations.aggregate(m=Max("pk"))["m"], Document.objects.aggregate(m=Max("pk"))["m"], upto, counted)
    key = "folder-tree:" + hashlib.sha256(repr((groups, latest)).encode()).hexdigest()
    cached = cache.get(key)
    if cached is not None:
        return cast("list[MailboxNode]", cached)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    base = FolderCount.objects.exclude(owner_group=None)
    if groups is not None:
        base = base.filter(owner_group_id__in=groups)
    for row in base.values("mailbox", "folder").annotate(n=Sum("mails")):
        counts[row["mailbox"], row["folder"]] += row["n"]
    live = locations.filter(pk__gt=upto)
    live = (
        live.exclude(mail__document=None) if groups is None else live.filter(mail__document__owner_group_id__in=groups)
    )
    for row in live.values("mailbox", "folder").annotate(n=Count("mail", distinct=True)):
        counts[row["mailbox"], row["folder"]] += row["n"]
    by_mailbox: dict[str, list[FolderNode]] = {}
    for (mailbox, folder), n in sorted(counts.items()):
        parts = re.split(r"[/.]", folder) if folder else [""]
        by_mailbox.setdefault(mailbox, []).append(FolderNode(mailbox, folder, parts[-1] or "(root)", len(parts) - 1, n))
    tree = [MailboxNode(m, sum(f.count for f in fs), fs) for m, fs in by_mailbox.items()]
    cache.set(key, tree, TREE_SECONDS)
    return tree


def in_folder(qs: QuerySet[Document], mailbox: str, folder: str | None) -> QuerySet[Document]:
    """The documents archived from that mailbox (and folder, when given)."""
    where = {"mailbox": mailbox} if folder is None else {"mailbox": mailbox, "folder": folder}
    return qs.filter(Exists(_locations().filter(mail__document_id=OuterRef("pk"), **where)))
