"""The audit log page (``/webadmin/audit/``) for administrators and auditors:
filtered, paged, and exported as CSV or JSON (streamed, the filter applied,
the export itself logged before its first byte)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from archive.access import audit_reader_required
from archive.paging import CappedPaginator
from archive.selectors import MAX_DOCUMENT_NUMBER

from . import audit, chain
from .audit import AuditAction, Outcome
from .models import AuditEntry

PAGE_SIZE = 100
EXPORT_CHUNK = 2000  # rows per database round trip of an export
EXPORT_COLUMNS = ("seq", "at", "actor", "action", "user_id", "document", "ip", "outcome", "details")
HASH_COLUMNS = ("prev_hash", "entry_hash")
# A CSV cell a spreadsheet would run as a formula: shown as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class AuditFilterForm(forms.Form):
    q = forms.CharField(
        required=False, max_length=200, label=_("Search"), help_text=_("In the details (query, file, user…)")
    )
    who = forms.CharField(required=False, max_length=150, label=_("Who"))
    action = forms.ChoiceField(required=False, choices=[("", _("any"))], label=_("Action"))
    outcome = forms.ChoiceField(required=False, choices=[("", _("any")), *Outcome.CHOICES], label=_("Outcome"))
    document = forms.IntegerField(required=False, min_value=1, max_value=MAX_DOCUMENT_NUMBER, label=_("Document"))
    since = forms.DateField(required=False, label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        action = self.fields["action"]
        assert isinstance(action, forms.ChoiceField)
        action.choices = [("", _("any")), *AuditAction.choices()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError(_("“From” is after “To”."))
        return data

    def used(self) -> dict[str, str]:
        """The filter as given (for the export's own audit entry)."""
        return {k: str(v) for k, v in self.cleaned_data.items() if v not in (None, "")}


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def entries_filtered(form: AuditFilterForm) -> QuerySet[AuditEntry]:
    """The entries a valid filter selects."""
    data = form.cleaned_data
    qs = AuditEntry.objects.all()
    if data.get("who"):
        qs = qs.filter(actor__icontains=data["who"])
    if data.get("action"):
        qs = qs.filter(action=data["action"])
    if data.get("outcome"):
        qs = qs.filter(outcome=data["outcome"])
    if data.get("document"):
        qs = qs.filter(document=data["document"])
    if data.get("since"):
        qs = qs.filter(at__gte=_day_start(data["since"]))
    if data.get("until"):
        qs = qs.filter(at__lt=_day_start(data["until"] + dt.timedelta(days=1)))
    if data.get("q"):
        text = data["q"]
        qs = qs.annotate(_details=Cast("details", TextField())).filter(
            Q(_details__icontains=text) | Q(actor__icontains=text) | Q(ip__icontains=text)
        )
    return qs


def _bound_form(request: HttpRequest) -> tuple[AuditFilterForm, QuerySet[AuditEntry] | None]:
    """The filter of the query string and what it selects; None for an invalid filter."""
    form = AuditFilterForm(request.GET)  # every field is optional: no filter selects everything
    return form, entries_filtered(form) if form.is_valid() else None


@audit_reader_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    form, entries = _bound_form(request)
    status = 200
    if entries is None:
        entries, status = AuditEntry.objects.none(), 400
    page_param = request.GET.get("page", 1)
    page = CappedPaginator(entries.order_by("-seq"), PAGE_SIZE, page=page_param).get_page(page_param)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "integrity/audit_log.html",
        {"form": form, "page": page, "entries": list(page.object_list), "query": query.urlencode()},
        status=status,
    )


def _export(request: HttpRequest, fmt: str) -> HttpResponse | StreamingHttpResponse:
    form, entries = _bound_form(request)
    if entries is None:
        errors = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in form.errors.items())
        return HttpResponse(f"Bad filter: {errors}\n", status=400, content_type="text/plain; charset=utf-8")
    audit.log_export(request, "audit_log", format=fmt, filter=form.used())
    rows = entries.order_by("seq").iterator(chunk_size=EXPORT_CHUNK)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    if fmt == "csv":
        response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(_json_chunks(rows), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response


@audit_reader_required
@require_GET
def audit_export_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return _export(request, "csv")


@audit_reader_required
@require_GET
def audit_export_json(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return _export(request, "json")


def entry_record(entry: AuditEntry) -> dict[str, Any]:
    """One entry as exported: the hashed fields (as the chain hashes them) and both hashes."""
    record = chain.entry_payload("audit", entry)
    record["at"] = chain.format_time(entry.at)
    record["prev_hash"], record["entry_hash"] = entry.prev_hash, entry.entry_hash
    return record


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_lines(entries: Iterator[AuditEntry]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow((*EXPORT_COLUMNS, *HASH_COLUMNS))
    for entry in entries:
        record = entry_record(entry)
        yield writer.writerow([_cell(record[c]) for c in (*EXPORT_COLUMNS, *HASH_COLUMNS)])


def _json_chunks(entries: Iterator[AuditEntry]) -> Iterator[str]:
    """A JSON array, one entry per line, written as it is read."""
    yield "[\n"
    separator = ""
    for entry in entries:
        yield separator + json.dumps(entry_record(entry), ensure_ascii=False, sort_keys=True)
        separator = ",\n"
    yield "\n]\n"
