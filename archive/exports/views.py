"""WebAdmin pages: exports (request, progress, download) and the procedure
documentation (generate, list, open). Administrators and auditors (who may
start an export: it is their copy of what they may read)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from archive.access import audit_copy_required
from archive.integrity import audit

from . import procedure, services
from .builder import export_file
from .forms import ExportForm
from .models import Export, ExportStatus, ExportTarget, ProcedureDocument
from .selection import SelectionError

exports_access = audit_copy_required


def progress_text(export: Export) -> str:
    total = "?" if export.total is None else str(export.total)
    text = f"{export.done} / {total} documents, {export.files} files — {export.get_status_display()}"
    if export.stage and export.status == ExportStatus.RUNNING:
        text += f": {export.stage}"
    return text


@exports_access
@require_http_methods(["GET", "POST"])
def export_list(request: HttpRequest) -> HttpResponse:
    form = ExportForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                export = services.export_create(request, form.cleaned_data)
            except SelectionError as exc:
                form.add_error("query", str(exc))
            else:
                messages.success(request, _("Export queued: %(total)s document(s) selected.") % {"total": export.total})
                return redirect("exports:detail", export.pk)
        messages.error(request, _("Not started: please correct the marked entries."))
    exports = Export.objects.select_related("created_by")[:50]
    context = {"form": form, "exports": exports, "retention_days": settings.EXPORT_RETENTION_DAYS}
    return render(request, "exports/list.html", context)


@exports_access
@require_GET
def export_detail(request: HttpRequest, pk: int) -> HttpResponse:
    export = get_object_or_404(Export, pk=pk)
    return render(request, "exports/detail.html", {"export": export, "progress": progress_text(export)})


@exports_access
@require_GET
def export_progress(request: HttpRequest, pk: int) -> JsonResponse:
    export = get_object_or_404(Export, pk=pk)
    return JsonResponse(
        {
            "status": export.status,
            "progress": progress_text(export),
            "done": export.done,
            "total": export.total,
            "error": export.error,
            "downloadable": export.status == ExportStatus.DONE and export.target == ExportTarget.ZIP,
        }
    )


@exports_access
@require_GET
def export_download(request: HttpRequest, pk: int) -> HttpResponseBase:
    export = get_object_or_404(Export, pk=pk, status=ExportStatus.DONE, target=ExportTarget.ZIP)
    path = export_file(export)
    if not path.is_file():
        raise Http404("The export file is gone")
    audit.log(audit.AuditAction.EXPORT, request, details={"export": export.pk, "event": "downloaded"})
    response = FileResponse(open(path, "rb"), as_attachment=True, filename=path.name, content_type="application/zip")
    response["X-Content-Type-Options"] = "nosniff"
    return response


@exports_access
@require_http_methods(["GET"])
def procedure_list(request: HttpRequest) -> HttpResponse:
    generations = ProcedureDocument.objects.select_related("created_by")[:100]
    return render(request, "exports/procedure_list.html", {"generations": generations})


@exports_access
@require_POST
def procedure_generate(request: HttpRequest) -> HttpResponse:
    document = procedure.procedure_generate(request)
    messages.success(
        request,
        _("Procedure documentation generated (%(when)s).")
        % {"when": date_format(localtime(document.created), "SHORT_DATETIME_FORMAT")},
    )
    return redirect("exports:procedure_view", document.pk)


@exports_access
@require_GET
def procedure_view(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_object_or_404(ProcedureDocument, pk=pk)
    try:
        content = procedure.procedure_file(document).read_bytes()
    except FileNotFoundError:
        raise Http404("The stored file is gone") from None
    response = HttpResponse(content, content_type="text/html; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    # A stored page is self-contained (its one style block allowed by hash, no script):
    # it opens the same from the file years later.
    response["Content-Security-Policy"] = procedure.page_csp(content)
    return response
