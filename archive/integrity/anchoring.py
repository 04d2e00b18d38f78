"""Trusted timestamps of both chains' heads (``Anchor``): every
``ANCHOR_INTERVAL`` seconds (Celery beat, ``archive.integrity.tasks``) the
heads of the ledger and the audit log are timestamped by the TSA, the answer
is verified and stored. Anchoring reads the heads without locking them, so
archiving never waits for the TSA; when the TSA is unreachable the task retries
with backoff (``retry_delay``), and the next interval tries again anyway."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from django.conf import settings
from django.utils import timezone

from archive.backoff import backoff_delay

from . import chain, tsa
from .models import Anchor, Chain, ChainHead

RETRY_BASE_SECONDS = 30.0


def heads() -> dict[str, tuple[int, str]]:
    """(seq, hash) of each chain's committed head (genesis for an empty chain)."""
    found = {h.chain: (h.seq, h.hash) for h in ChainHead.objects.all()}
    return {c: found.get(c, (0, chain.GENESIS)) for c in (Chain.LEDGER, Chain.AUDIT)}


def message_for(ledger_head: tuple[int, str], audit_head: tuple[int, str]) -> bytes:
    return chain.anchor_message(ledger_head[0], ledger_head[1], audit_head[0], audit_head[1])


def anchor_heads(now: dt.datetime | None = None) -> Anchor:
    """Timestamp the current heads and store the verified token; raises
    ``tsa.TsaUnavailable`` (retry later) or ``tsa.TsaInvalid``."""
    current = heads()
    message = message_for(current[Chain.LEDGER], current[Chain.AUDIT])
    stamp = tsa.timestamp(message)
    return Anchor.objects.create(
        created=now or timezone.now(),
        ledger_seq=current[Chain.LEDGER][0],
        ledger_hash=current[Chain.LEDGER][1],
        audit_seq=current[Chain.AUDIT][0],
        audit_hash=current[Chain.AUDIT][1],
        digest=hashlib.sha256(message).hexdigest(),
        tsa_url=settings.TSA_URL,
        token=stamp.response,
        gen_time=stamp.gen_time,
    )


def retry_delay(attempt: int) -> float:
    """Seconds before the next try after ``attempt`` failed ones: doubling from
    30 s, never beyond half the interval (the next scheduled anchor comes then)."""
    return backoff_delay(attempt, base=RETRY_BASE_SECONDS, cap=max(RETRY_BASE_SECONDS, settings.ANCHOR_INTERVAL / 2))


@dataclasses.dataclass(frozen=True)
class AnchorAge:
    """What the WebAdmin home shows: the newest anchor, its age and whether it is overdue."""

    newest: Anchor | None
    age: dt.timedelta | None
    overdue: bool
    configured: bool


def anchor_age(now: dt.datetime | None = None) -> AnchorAge:
    newest = Anchor.objects.order_by("-created").first()
    configured = bool(settings.TSA_URL)
    limit = dt.timedelta(seconds=2 * settings.ANCHOR_INTERVAL)
    if newest is None:
        return AnchorAge(None, None, configured, configured)
    age = (now or timezone.now()) - newest.created
    return AnchorAge(newest, age, configured and age > limit, configured)
