from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from archive.forms import ArchiveSettingsForm
from archive.models import ArchiveSettings


def administrators_only(view):  # type: ignore[no-untyped-def]
    return staff_member_required(view, login_url="login")


@administrators_only
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "webadmin/home.html")


@administrators_only
@require_http_methods(["GET", "POST"])
def archive_settings(request: HttpRequest) -> HttpResponse:
    instance = ArchiveSettings.load()
    form = ArchiveSettingsForm(request.POST or None, instance=instance)
    if request.method == "POST":
        if form.is_valid():
            form.save()
            messages.success(request, "Archive settings saved.")
            return redirect("webadmin:archive_settings")
        messages.error(request, "Not saved: please correct the marked settings.")
    return render(request, "webadmin/archive_settings.html", {"form": form})


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
