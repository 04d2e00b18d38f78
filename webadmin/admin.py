from django.contrib import admin

from archive.models import FieldDefinition
from webadmin import login_throttle  # noqa: F401 - connects the lockout log; axes registers its own admin

admin.site.site_header = "WebAdmin"
admin.site.site_url = "/dms/"


@admin.register(FieldDefinition)
class FieldDefinitionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not subscriptable at run time
    list_display = ("label", "name", "type", "internal", "in_reduced_table", "order")
    list_editable = ("order", "in_reduced_table")
    list_filter = ("type", "internal")
    ordering = ("order", "id")
