from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not subscriptable at run time
    """Tokens are created by their user (the secret is shown to them once);
    an administrator can see and revoke them here."""

    list_display = ["prefix", "name", "user", "scopes", "created", "last_used", "revoked"]
    list_filter = ["revoked"]
    search_fields = ["prefix", "name", "user__username"]
    readonly_fields = ["user", "name", "prefix", "scopes", "created", "last_used", "revoked"]
    exclude = ["digest"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: object) -> None:
        ApiToken.objects.filter(pk__in=[t.pk for t in queryset], revoked__isnull=True).update(  # type: ignore[attr-defined]
            revoked=timezone.now()
        )
