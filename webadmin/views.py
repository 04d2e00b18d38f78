from __future__ import annotations

from django.contrib import messages
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from archive import dashboard as archive_dashboard
from archive.access import staff_required
from archive.forms import ArchiveSettingsForm
from archive.integrity import audit
from archive.integrity.audit import AuditAction
from archive.models import ArchiveSettings
from webadmin import dashboard

# Visitors log in; a signed-in user who is not staff gets the 403 page (a
# redirect to the login page would send them straight back: a loop).
administrators_only = staff_required


@administrators_only
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "webadmin/home.html", dashboard.admin_dashboard())


@administrators_only
@require_POST
def dashboard_reindex(request: HttpRequest) -> HttpResponse:
    queued = archive_dashboard.coverage_requeue()
    messages.success(
        request,
        _("Re-index started: %(queued)s document(s) queued for text extraction.")
        % {"queued": number_format(queued, force_grouping=True)},
    )
    return redirect("webadmin:home")


# What each setting does in the WebDMS, shown under it (SPEC §4).
SETTING_EFFECTS = {
    "primary_usage": gettext_lazy(
        "Default table columns and viewer: documents (title, date, owner), "
        "mails (From, Subject, Date; .eml files in the mail view), "
        "media (file name and a preview image)."
    ),
    "theme": gettext_lazy("The look of every WebDMS page."),
    "hide_extended_icons": gettext_lazy("The toolbar shows only view, search, copy link and upload."),
    "field_columns": gettext_lazy("Columns of the Fields tab on wide screens (narrow screens: one)."),
    "start_reduced_table": gettext_lazy(
        "The table opens with the reduced columns (marked in the field definitions); users can show all columns."
    ),
    "hide_internal_in_reduced": gettext_lazy("Number, owner, created and modified stay out of the reduced table."),
    "suppress_title": gettext_lazy("The Title column is left out of the table."),
    "publish_field": gettext_lazy(
        "A Yes/No field: documents with it set open through their access link "
        "without login, read-only. Unset it to withdraw a document."
    ),
    "filename_field": gettext_lazy("Uploads store the original file name in this field."),
    "versioning": gettext_lazy("An upload whose version key matches a document becomes its next version."),
    "version_key_field": gettext_lazy(
        "With the file name field, re-uploading a file of the same name "
        "adds a version; with another field, the upload form asks for the key."
    ),
    "combobox_elements": gettext_lazy(
        "Selection fields suggest this many of the most used values while typing (0: no suggestions)."
    ),
    "show_notes": gettext_lazy("Documents show the Notes tab (notes are kept either way)."),
}


@administrators_only
@require_http_methods(["GET", "POST"])
def archive_settings(request: HttpRequest) -> HttpResponse:
    instance = ArchiveSettings.load()
    form = ArchiveSettingsForm(request.POST or None, instance=instance)
    for name, effect in SETTING_EFFECTS.items():
        if name in form.fields:
            field = form.fields[name]
            field.help_text = f"{field.help_text} {effect}".strip() if field.help_text else effect
    if request.method == "POST":
        if form.is_valid():
            changes = audit.form_changes(form)
            with transaction.atomic():  # the change and its audit entry, or neither
                form.save()
                if changes:
                    audit.log(
                        AuditAction.SETTINGS_CHANGED, request, details={"settings": "archive", "changed": changes}
                    )
            messages.success(request, _("Archive settings saved."))
            return redirect("webadmin:archive_settings")
        messages.error(request, _("Not saved: please correct the marked settings."))
    return render(request, "webadmin/archive_settings.html", {"form": form})


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
