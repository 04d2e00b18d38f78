"""The WebAdmin import page: what lies in IMPORT_DIR, the imports set up so far, and
starting one (of an entry there, or of an uploaded file). Administrators only."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from archive.access import staff_required
from archive.errors import BROKER_ERRORS
from archive.uploads import limits_message, upload_refusal
from mailsources import services, tasks
from mailsources.imports import ImportSetupError, import_source_create, import_sources
from mailsources.imports_forms import ImportStartForm, ImportUploadForm
from mailsources.models import MailSource

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _page(request: HttpRequest, start: ImportStartForm, upload: ImportUploadForm, status: int = 200) -> HttpResponse:
    context = {
        "start_form": start,
        "upload_form": upload,
        "import_dir": settings.IMPORT_DIR,
        "imports": import_sources(),
    }
    return render(request, "mailsources/import.html", context, status=status)


def _started(request: HttpRequest, source: MailSource) -> HttpResponse:
    services.source_request_sync(source)
    try:
        tasks.sync_enqueue(source.pk)
    except BROKER_ERRORS as exc:
        messages.error(
            request, _("The import is set up, but the task queue is unavailable: %(error)s") % {"error": exc}
        )
    else:
        messages.success(request, _("Import “%(name)s” queued; its progress shows here.") % {"name": source.name})
    return redirect("mailsources:detail", source.pk)


@staff_required
@require_http_methods(["GET", "POST"])
def import_page(request: HttpRequest) -> HttpResponse:
    start = ImportStartForm(request.POST or None, prefix="start")
    upload = ImportUploadForm(prefix="upload")
    if request.method == "POST" and start.is_valid():
        path = Path(settings.IMPORT_DIR) / start.cleaned_data["entry"]
        try:
            source = import_source_create(
                path,
                start.cleaned_data["mailbox"],
                start.cleaned_data["owner_group"],
                start.cleaned_data["format"],
                inside=Path(settings.IMPORT_DIR),
            )
        except ImportSetupError as exc:
            start.add_error(None, str(exc))
        else:
            return _started(request, source)
    return _page(request, start, upload, status=400 if request.method == "POST" else 200)


def _save_upload(upload: UploadedFile) -> Path:
    """The upload under IMPORT_DIR/uploads, under a name of its own (the import reads it there)."""
    folder = Path(settings.IMPORT_DIR) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    name = _UNSAFE.sub("_", Path(str(upload.name)).name).strip("._") or "upload"
    path = folder / f"{timezone.now():%Y%m%d-%H%M%S-%f}-{name}"
    with open(path, "xb") as target:
        for chunk in upload.chunks():
            target.write(chunk)
    return path


@staff_required
@require_POST
def import_upload(request: HttpRequest) -> HttpResponse:
    start = ImportStartForm(prefix="start")
    refusal = upload_refusal(request)
    upload = ImportUploadForm(request.POST, request.FILES, prefix="upload")
    if refusal:
        upload.add_error(None, limits_message())
        return _page(request, start, upload, status=413)
    if not upload.is_valid():
        return _page(request, start, upload, status=400)
    path = _save_upload(upload.cleaned_data["file"])
    try:
        source = import_source_create(
            path, upload.cleaned_data["mailbox"], upload.cleaned_data["owner_group"], upload.cleaned_data["format"]
        )
    except ImportSetupError as exc:
        path.unlink(missing_ok=True)
        upload.add_error(None, str(exc))
        return _page(request, start, upload, status=400)
    return _started(request, source)
