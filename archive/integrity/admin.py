"""The chains, their heads and anchors in the Django admin: to look at only.
Nobody, not even a superuser, adds, changes or deletes an entry here; the
application appends entries only through ``archive.integrity.chain``. (The audit
log's admin is in ``audit_admin.py``.)"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Anchor, ChainHead, LedgerEntry, VerificationRun


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not subscriptable at run time
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["seq", "at", "actor", "event", "document", "metadata_sha256"]
    list_filter = ["event"]
    search_fields = ["=document", "actor"]


@admin.register(ChainHead)
class ChainHeadAdmin(ReadOnlyAdmin):
    list_display = ["chain", "seq", "hash"]


@admin.register(Anchor)
class AnchorAdmin(ReadOnlyAdmin):
    list_display = ["created", "gen_time", "ledger_seq", "audit_seq", "tsa_url"]
    exclude = ["token"]


@admin.register(VerificationRun)
class VerificationRunAdmin(ReadOnlyAdmin):
    list_display = ["started", "finished", "mode", "status"]
