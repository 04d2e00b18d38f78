"""The reconciliation page (administrators only) and its CSV; included by
webadmin/urls.py under webadmin/reconcile/."""

from __future__ import annotations

import io

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from archive.access import audit_reader_required
from mailsources import reconcile
from mailsources.models import MailSource


@audit_reader_required
@require_GET
def report(request: HttpRequest) -> HttpResponse:
    """Without ``source``: the list to choose from; with it: that source's report
    (read from its servers now), as a page or, with ``format=csv``, a CSV file."""
    sources = MailSource.objects.order_by("name")
    chosen = request.GET.get("source", "")
    if not chosen:
        return render(request, "exports/reconcile.html", {"sources": sources})
    if not chosen.isascii() or not chosen.isdigit() or len(chosen) > 18:
        return render(
            request, "exports/reconcile.html", {"sources": sources, "error": _("Choose a source.")}, status=400
        )
    source = get_object_or_404(MailSource, pk=int(chosen))
    reports = reconcile.reconcile_source(source)
    if request.GET.get("format") == "csv":
        out = io.StringIO()
        reconcile.write_csv(reports, out)
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="reconciliation-{source.pk}.csv"'
        return response
    return render(request, "exports/reconcile.html", {"sources": sources, "source": source, "reports": reports})


app_name = "reconcile"
urlpatterns = [path("", report, name="report")]
