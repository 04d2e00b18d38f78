"""Writes of policies and holds, each logged in the audit log in its transaction."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from archive.integrity import audit

from .forms import LegalHoldForm, RetentionPolicyForm
from .models import LegalHold, RetentionPolicy


@transaction.atomic
def policy_save(form: RetentionPolicyForm, request: HttpRequest) -> RetentionPolicy:
    created = form.instance.pk is None
    policy: RetentionPolicy = form.save()
    audit.log(
        "retention_policy_changed",
        request,
        details={
            "policy": policy.pk,
            "name": policy.name,
            "action": "created" if created else "changed",
            "changed": sorted(form.changed_data),
        },
    )
    return policy


@transaction.atomic
def policy_delete(policy: RetentionPolicy, request: HttpRequest) -> None:
    details = {"policy": policy.pk, "name": policy.name, "action": "deleted"}
    policy.delete()
    audit.log("retention_policy_changed", request, details=details)


@transaction.atomic
def hold_create(form: LegalHoldForm, request: HttpRequest) -> LegalHold:
    hold: LegalHold = form.save(commit=False)
    hold.created_by = request.user  # type: ignore[assignment]
    hold.save()
    audit.log(
        "legal_hold_changed",
        request,
        details={"hold": hold.pk, "name": hold.name, "action": "created", "reason": hold.reason},
    )
    return hold


@transaction.atomic
def hold_release(hold_id: int, reason: str, request: HttpRequest) -> LegalHold:
    hold = LegalHold.objects.select_for_update().get(pk=hold_id)
    if hold.released is None:
        hold.released, hold.release_reason = timezone.now(), reason
        hold.released_by = request.user  # type: ignore[assignment]
        hold.save(update_fields=["released", "released_by", "release_reason"])
        audit.log(
            "legal_hold_changed",
            request,
            details={"hold": hold.pk, "name": hold.name, "action": "released", "reason": reason},
        )
    return hold
