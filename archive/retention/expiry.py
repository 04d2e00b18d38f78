"""Expiry: the daily list of documents past retention and not held, its
approval (one administrator, or two different ones with
``RETENTION_TWO_APPROVERS``) and its execution in batches. ``now`` is a
parameter everywhere: the tests hold the clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext

from archive.integrity import audit
from archive.models import Document

from . import deletion, holds, policies
from .models import ExpiryItem, ExpiryList, ExpiryStatus, ItemStatus

BUILD_CHUNK = 1000
DELETE_BATCH = 200


class ApprovalError(Exception):
    pass


def two_approvers() -> bool:
    return bool(getattr(settings, "RETENTION_TWO_APPROVERS", False))


def _listed_already() -> set[int]:
    """Documents waiting in an open or approved list: not listed twice."""
    return set(
        ExpiryItem.objects.filter(
            expiry_list__status__in=[ExpiryStatus.OPEN, ExpiryStatus.APPROVED], status=ItemStatus.PENDING
        ).values_list("document", flat=True)
    )


def expiry_list_build(now: dt.datetime | None = None) -> ExpiryList | None:
    """List every document past its retention end and not held (None: there is none)."""
    now = now or timezone.now()
    today = policies.today(now)
    active = policies.active_policies()
    candidates = policies.possibly_expired(active, now)
    if candidates is None:
        return None
    skip = _listed_already()
    expired: list[tuple[Document, policies.Retention, dt.date]] = []
    last = 0
    while True:
        chunk = list(Document.objects.filter(candidates, pk__gt=last).order_by("pk")[:BUILD_CHUNK])
        if not chunk:
            break
        last = chunk[-1].pk
        found = policies.retentions(chunk, active)
        for d in chunk:
            retention = found[d.pk]
            if retention.end is not None and retention.end < today and d.pk not in skip:
                expired.append((d, retention, retention.end))
    held = holds.held_numbers(d.pk for d, _, _ in expired)
    expired = [row for row in expired if row[0].pk not in held]
    if not expired:
        return None
    with transaction.atomic():
        expiry_list = ExpiryList.objects.create(created=now)
        ExpiryItem.objects.bulk_create(
            [
                ExpiryItem(
                    expiry_list=expiry_list,
                    document=d.pk,
                    title=d.title[:500],
                    policy=r.policy.name if r.policy else "",
                    retention_end=end,
                )
                for d, r, end in expired
            ]
        )
        audit.log("expiry_list_created", details={"expiry_list": expiry_list.pk, "documents": len(expired)})
    return expiry_list


def expiry_list_approve(
    expiry_list_id: int, user: Any, request: HttpRequest | None = None, now: dt.datetime | None = None
) -> ExpiryList:
    """One approval; the last one needed starts the deletion (after the commit)."""
    now = now or timezone.now()
    with transaction.atomic():
        expiry_list = ExpiryList.objects.select_for_update().get(pk=expiry_list_id)
        if expiry_list.status != ExpiryStatus.OPEN:
            raise ApprovalError(gettext("This list is not waiting for approval."))
        if not (user.is_active and user.is_staff):
            raise ApprovalError(gettext("Only administrators approve expiry lists."))
        if expiry_list.first_approver_id is None:
            expiry_list.first_approver, expiry_list.first_approved = user, now
            complete = not two_approvers()
        elif expiry_list.first_approver_id == user.pk:
            raise ApprovalError(gettext("The second approval must come from a different administrator."))
        else:
            expiry_list.second_approver, expiry_list.second_approved = user, now
            complete = True
        if complete:
            expiry_list.status = ExpiryStatus.APPROVED
        expiry_list.save()
        audit.log(
            "expiry_approved",
            request,
            user=user,
            details={"expiry_list": expiry_list.pk, "complete": complete, "approvers": expiry_list.approvers()},
        )
        if complete:
            transaction.on_commit(lambda: _queue_execution(expiry_list.pk))
    return expiry_list


def _queue_execution(expiry_list_id: int) -> None:
    from .tasks import execute_expiry_list

    execute_expiry_list.delay(expiry_list_id)


def expiry_list_reject(expiry_list_id: int, user: Any, request: HttpRequest | None = None) -> ExpiryList:
    with transaction.atomic():
        expiry_list = ExpiryList.objects.select_for_update().get(pk=expiry_list_id)
        if expiry_list.status != ExpiryStatus.OPEN:
            raise ApprovalError(gettext("This list is not waiting for approval."))
        expiry_list.status = ExpiryStatus.REJECTED
        expiry_list.finished = timezone.now()
        expiry_list.save()
        audit.log("expiry_rejected", request, user=user, details={"expiry_list": expiry_list.pk})
    return expiry_list


def expiry_list_execute(expiry_list_id: int, now: dt.datetime | None = None) -> int:
    """Delete an approved list's pending items batch by batch (idempotent: a
    second run finds nothing pending). Returns the number deleted."""
    now = now or timezone.now()
    deleted = 0
    while True:
        with transaction.atomic():
            expiry_list = ExpiryList.objects.select_for_update().get(pk=expiry_list_id)
            if expiry_list.status != ExpiryStatus.APPROVED:
                return deleted
            batch = list(expiry_list.items.filter(status=ItemStatus.PENDING)[:DELETE_BATCH])
            if not batch:
                expiry_list.status, expiry_list.finished = ExpiryStatus.DONE, now
                expiry_list.save(update_fields=["status", "finished"])
                audit.log(
                    "documents_deleted",
                    user=None,
                    details={"expiry_list": expiry_list.pk, "deleted": _count(expiry_list, ItemStatus.DELETED)},
                )
                return deleted
            deleted += deletion.documents_delete(expiry_list, batch, now)


def _count(expiry_list: ExpiryList, status: str) -> int:
    return expiry_list.items.filter(status=status).count()


def expiry_daily(now: dt.datetime | None = None) -> ExpiryList | None:
    """The scheduled job: finish approved lists a lost task left, remove due blobs, list what expired."""
    now = now or timezone.now()
    for pk in ExpiryList.objects.filter(status=ExpiryStatus.APPROVED).values_list("pk", flat=True):
        expiry_list_execute(pk, now)
    deletion.blobs_remove_due(now)
    return expiry_list_build(now)
