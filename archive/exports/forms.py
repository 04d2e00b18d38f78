from __future__ import annotations

from typing import Any

from django import forms
from django.apps import apps
from django.utils.translation import gettext_lazy as _

from archive.search import MAX_QUERY_CHARS

from .models import ExportTarget


def _source_choices() -> list[tuple[str, str]]:
    choices = [("", str(_("All sources")))]
    if apps.is_installed("mailsources"):
        model = apps.get_model("mailsources", "MailSource")
        choices += [(str(pk), name) for pk, name in model._default_manager.order_by("name").values_list("pk", "name")]
    return choices


def _hold_choices() -> list[tuple[str, str]]:
    from archive.retention.models import LegalHold

    holds = LegalHold.objects.order_by("released", "-created").values_list("pk", "name", "released")
    return [("", str(_("No legal hold")))] + [
        (str(pk), name + (" " + str(_("(released)")) if released else "")) for pk, name, released in holds
    ]


class ExportForm(forms.Form):
    """What to export; every criterion is optional, those given are combined (AND)."""

    name = forms.CharField(label=_("Name"), max_length=100, required=False, help_text=_("For your list of exports."))
    query = forms.CharField(
        label=_("Search query"),
        max_length=MAX_QUERY_CHARS,
        required=False,
        help_text=_("The table's search language, e.g. invoice from:alice date:2024-01-01..2024-12-31."),
    )
    source_id = forms.TypedChoiceField(label=_("Mail source"), required=False, coerce=int, empty_value=None)
    mailbox = forms.CharField(
        label=_("Mailbox"),
        max_length=255,
        required=False,
        help_text=_("user@host (IMAP) or the address (Microsoft 365)."),
    )
    legal_hold_id = forms.TypedChoiceField(label=_("Legal hold"), required=False, coerce=int, empty_value=None)
    date_from = forms.DateField(label=_("Date from"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("Date to"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    target = forms.ChoiceField(label=_("Target"), choices=ExportTarget.choices, initial=ExportTarget.ZIP)
    with_mbox = forms.BooleanField(label=_("MBOX per mailbox"), required=False, initial=True)
    with_z3 = forms.BooleanField(label=_("GoBD Z3 tables (index.xml)"), required=False, initial=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["source_id"].choices = _source_choices()  # type: ignore[attr-defined]
        self.fields["legal_hold_id"].choices = _hold_choices()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The end of the date range lies before its start."))
        return data
