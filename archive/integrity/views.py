"""The integrity page of WebAdmin (administrators): the latest verification and
its findings, the chains' heads and the newest timestamp anchors."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from archive.access import audit_reader_required

from . import anchoring
from .models import Anchor, Chain, VerificationRun

RECENT = 10


@audit_reader_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    runs = list(VerificationRun.objects.order_by("-started")[:RECENT])
    heads = anchoring.heads()
    return render(
        request,
        "integrity/overview.html",
        {
            "latest": runs[0] if runs else None,
            "runs": runs,
            "ledger_head": heads[Chain.LEDGER],
            "audit_head": heads[Chain.AUDIT],
            "anchor": anchoring.anchor_age(),
            "anchors": Anchor.objects.defer("token").order_by("-created")[:RECENT],
        },
    )
