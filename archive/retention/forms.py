from __future__ import annotations

from typing import Any

from django import forms
from django.apps import apps
from django.utils.translation import gettext_lazy as _

from archive import selectors
from archive.search import SearchQueryError, parse_query

from .models import LegalHold, Preset, RetentionPolicy


def source_choices() -> list[tuple[str, str]]:
    sources = apps.get_model("mailsources", "MailSource").objects.order_by("name").values_list("pk", "name")
    return [("", str(_("Any source"))), *((str(pk), name) for pk, name in sources)]


class SourceChoiceMixin:
    """``source_id`` as a choice of the mail sources (the archive keeps their ids only)."""

    fields: dict[str, forms.Field]

    def _setup_source(self) -> None:
        self.fields["source_id"] = forms.TypedChoiceField(
            label=_("Mail source"), choices=source_choices(), coerce=int, empty_value=None, required=False
        )


class RetentionPolicyForm(SourceChoiceMixin, forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = RetentionPolicy
        fields = [
            "name",
            "order",
            "enabled",
            "is_default",
            "preset",
            "years",
            "months",
            "days",
            "count_from",
            "source_id",
            "mailbox",
            "folder",
            "kind",
            "field",
            "field_value",
        ]
        labels = {
            "name": _("Name"),
            "order": _("Order"),
            "enabled": _("Enabled"),
            "preset": _("Preset"),
            "years": _("Years"),
            "months": _("Months"),
            "days": _("Days"),
            "count_from": _("Count from"),
            "mailbox": _("Mailbox"),
            "folder": _("Folder"),
            "field": _("Field"),
            "field_value": _("Field value"),
        }
        help_texts = {
            "years": _("Custom duration only."),
            "count_from": _("Custom duration only; the presets count from the end of the year."),
            "field_value": _("With a field: documents whose value is exactly this."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_source()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("preset") == Preset.CUSTOM and not any(data.get(k) for k in ("years", "months", "days")):
            self.add_error("years", _("A custom duration needs years, months or days."))
        if data.get("field_value") and not data.get("field"):
            self.add_error("field", _("Choose the field whose value is given."))
        if data.get("field") and not data.get("field_value"):
            self.add_error("field_value", _("Give the value the field must have."))
        return data


class LegalHoldForm(SourceChoiceMixin, forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = LegalHold
        fields = ["name", "reason", "whole_archive", "query", "source_id", "mailbox", "date_from", "date_to"]
        widgets = {
            "reason": forms.Textarea(attrs={"rows": 3}),
            "date_from": forms.DateInput(attrs={"type": "date"}),
            "date_to": forms.DateInput(attrs={"type": "date"}),
        }
        labels = {
            "name": _("Name"),
            "reason": _("Reason"),
            "whole_archive": _("Whole archive"),
            "query": _("Search query"),
            "mailbox": _("Mailbox"),
            "date_from": _("Date from"),
            "date_to": _("Date to"),
        }
        help_texts = {
            "query": _("The table's search language, e.g. invoice from:alice@example.com"),
            "date_from": _("Mail date (archive time without one), inclusive."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_source()

    def clean_query(self) -> str:
        query: str = self.cleaned_data.get("query", "").strip()
        if query:
            try:
                parse_query(query, selectors.field_definitions())
            except SearchQueryError as exc:
                raise forms.ValidationError(str(exc)) from None
        return query

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        criteria = ("query", "source_id", "mailbox", "date_from", "date_to")
        if not data.get("whole_archive") and not any(data.get(k) not in (None, "") for k in criteria):
            raise forms.ValidationError(_("Give at least one criterion, or hold the whole archive."))
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", _("The range ends before it starts."))
        return data


class ReleaseForm(forms.Form):
    release_reason = forms.CharField(label=_("Reason for the release"), max_length=2000, widget=forms.Textarea)
