"""WebAdmin pages for retention (administrators only): policies, legal holds,
expiry lists with their approval and the deletion report."""

from __future__ import annotations

import csv
from collections.abc import Sequence

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from archive.access import audit_reader_required, staff_required

from . import expiry, holds, lock, services
from .forms import LegalHoldForm, ReleaseForm, RetentionPolicyForm, source_choices
from .models import POLICY_ORDER, ExpiryList, ExpiryStatus, ItemStatus, LegalHold, RetentionPolicy


def _name_sources(objects: Sequence[RetentionPolicy | LegalHold]) -> None:
    """``source_name`` on each (the archive keeps mail source ids only)."""
    names = {value: label for value, label in source_choices()}
    for obj in objects:
        obj.source_name = names.get(str(obj.source_id), f"#{obj.source_id}")  # type: ignore[union-attr]


@audit_reader_required
@require_GET
def policy_list(request: HttpRequest) -> HttpResponse:
    policies = list(RetentionPolicy.objects.select_related("field").order_by(*POLICY_ORDER))
    _name_sources(policies)
    context = {
        "policies": policies,
        "lock_enabled": lock.lock_enabled(),
        "two_approvers": expiry.two_approvers(),
    }
    return render(request, "retention/policies.html", context)


@staff_required
@require_http_methods(["GET", "POST"])
def policy_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    instance = get_object_or_404(RetentionPolicy, pk=pk) if pk is not None else None
    form = RetentionPolicyForm(request.POST or None, instance=instance)
    if request.method == "POST":
        if form.is_valid():
            policy = services.policy_save(form, request)
            messages.success(request, _("Retention policy “%(name)s” saved.") % {"name": policy.name})
            return redirect("retention:policies")
        messages.error(request, _("Not saved: please correct the marked fields."))
    return render(request, "retention/policy_form.html", {"form": form, "policy": instance})


@staff_required
@require_POST
def policy_delete(request: HttpRequest, pk: int) -> HttpResponse:
    policy = get_object_or_404(RetentionPolicy, pk=pk)
    services.policy_delete(policy, request)
    messages.success(request, _("Retention policy “%(name)s” deleted.") % {"name": policy.name})
    return redirect("retention:policies")


@audit_reader_required
@require_GET
def hold_list(request: HttpRequest) -> HttpResponse:
    listed = list(LegalHold.objects.select_related("created_by", "released_by")[:200])
    _name_sources(listed)
    active = [hold for hold in listed if hold.active]
    counts = dict(zip(active, holds.hold_counts(active), strict=True))
    rows = [(hold, counts.get(hold)) for hold in listed]
    context = {"rows": rows, "release_form": ReleaseForm()}
    return render(request, "retention/holds.html", context)


@staff_required
@require_http_methods(["GET", "POST"])
def hold_create(request: HttpRequest) -> HttpResponse:
    form = LegalHoldForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            hold = services.hold_create(form, request)
            messages.success(request, _("Legal hold “%(name)s” is active.") % {"name": hold.name})
            return redirect("retention:holds")
        messages.error(request, _("Not saved: please correct the marked fields."))
    return render(request, "retention/hold_form.html", {"form": form})


@staff_required
@require_POST
def hold_release(request: HttpRequest, pk: int) -> HttpResponse:
    hold = get_object_or_404(LegalHold, pk=pk)
    form = ReleaseForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Not released: give the reason for the release."))
        return redirect("retention:holds")
    services.hold_release(hold.pk, form.cleaned_data["release_reason"], request)
    messages.success(request, _("Legal hold “%(name)s” released.") % {"name": hold.name})
    return redirect("retention:holds")


@audit_reader_required
@require_GET
def expiry_lists(request: HttpRequest) -> HttpResponse:
    lists = ExpiryList.objects.select_related("first_approver", "second_approver")[:100]
    return render(request, "retention/expiry_lists.html", {"lists": lists})


@staff_required
@require_POST
def expiry_build(request: HttpRequest) -> HttpResponse:
    built = expiry.expiry_list_build()
    if built is None:
        messages.info(request, _("No document is past its retention end (or all are held or listed already)."))
        return redirect("retention:expiry_lists")
    messages.success(
        request,
        _("Expiry list %(number)s made: %(count)s document(s).")
        % {"number": built.pk, "count": number_format(built.items.count(), force_grouping=True)},
    )
    return redirect("retention:expiry_detail", pk=built.pk)


@audit_reader_required
@require_GET
def expiry_detail(request: HttpRequest, pk: int) -> HttpResponse:
    expiry_list = get_object_or_404(ExpiryList.objects.select_related("first_approver", "second_approver"), pk=pk)
    context = {
        "expiry_list": expiry_list,
        "items": expiry_list.items.all()[:1000],
        "total": expiry_list.items.count(),
        "pending": expiry_list.items.filter(status=ItemStatus.PENDING).count(),
        "two_approvers": expiry.two_approvers(),
        "open": expiry_list.status == ExpiryStatus.OPEN,
    }
    return render(request, "retention/expiry_detail.html", context)


@staff_required
@require_POST
def expiry_decide(request: HttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(ExpiryList, pk=pk)
    try:
        if request.POST.get("decision") == "reject":
            expiry.expiry_list_reject(pk, request.user, request)
            messages.success(request, _("Expiry list rejected: nothing is deleted."))
        else:
            decided = expiry.expiry_list_approve(pk, request.user, request)
            if decided.status == ExpiryStatus.APPROVED:
                messages.success(request, _("Approved: the documents are being deleted."))
            else:
                messages.success(request, _("First approval recorded: a second administrator must approve."))
    except expiry.ApprovalError as exc:
        messages.error(request, str(exc))
    return redirect("retention:expiry_detail", pk=pk)


@audit_reader_required
@require_GET
def expiry_report(request: HttpRequest, pk: int) -> HttpResponse:
    expiry_list = get_object_or_404(ExpiryList.objects.select_related("first_approver", "second_approver"), pk=pk)
    context = {"expiry_list": expiry_list, "items": expiry_list.items.exclude(status=ItemStatus.PENDING)}
    return render(request, "retention/report.html", context)


REPORT_COLUMNS = ["number", "title", "policy", "retention_end", "outcome", "sha256", "ledger_seq", "deleted"]


@audit_reader_required
@require_GET
def expiry_report_csv(request: HttpRequest, pk: int) -> HttpResponse:
    expiry_list = get_object_or_404(ExpiryList, pk=pk)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="deletion-report-{expiry_list.pk}.csv"'
    writer = csv.writer(response)
    writer.writerow(["expiry_list", "approvers", *REPORT_COLUMNS])
    approvers = " ".join(expiry_list.approvers())
    for item in expiry_list.items.exclude(status=ItemStatus.PENDING).iterator():
        writer.writerow(
            [
                expiry_list.pk,
                approvers,
                item.document,
                _csv_safe(item.title),
                item.policy,
                item.retention_end.isoformat(),
                item.get_status_display(),
                " ".join(item.hashes),
                item.ledger_seq or "",
                item.deleted.isoformat() if item.deleted else "",
            ]
        )
    return response


def _csv_safe(text: str) -> str:
    """No formula injection when the report is opened in a spreadsheet."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
