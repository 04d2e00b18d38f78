"""The per-source run lease: a conditional UPDATE on the source row, so that two
runs of one source never overlap on any machine, and a killed worker's lease
expires (SPEC §2, rule 5)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from mailsources.clients.base import TransientSourceError
from mailsources.models import MailSource


def lease_acquire(source_id: int, owner: str, seconds: int | None = None) -> bool:
    """Claim the source for one run with a conditional UPDATE: exactly one of
    several workers (on any machine) wins; an expired lease can be taken over."""
    now = timezone.now()
    until = now + timedelta(seconds=seconds or settings.MAIL_SOURCE_LEASE_SECONDS)
    claimed = (
        MailSource.objects.filter(pk=source_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner))
        .update(lease_owner=owner, lease_until=until)
    )
    return claimed == 1


def lease_renew(source_id: int, owner: str) -> None:
    until = timezone.now() + timedelta(seconds=settings.MAIL_SOURCE_LEASE_SECONDS)
    renewed = MailSource.objects.filter(pk=source_id, lease_owner=owner).update(lease_until=until)
    if not renewed:
        # Someone took over an expired lease: stop, the other run continues.
        raise TransientSourceError("the run lost its lease to another worker", code="lease_lost")


def lease_release(source_id: int, owner: str) -> None:
    MailSource.objects.filter(pk=source_id, lease_owner=owner).update(lease_owner="", lease_until=None)
