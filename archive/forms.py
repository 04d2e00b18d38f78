from __future__ import annotations

import datetime as dt
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from archive.models import ArchiveSettings, FieldDefinition, FieldType, parse_field_date
from archive.services import clean_field_value


class DocumentFieldsForm(forms.Form):
    """The Fields tab: one form field per non-internal field definition."""

    def __init__(
        self, *args: Any, definitions: list[FieldDefinition], initial_values: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.definitions = [d for d in definitions if not d.internal or d.name in ("title", "date")]
        for d in self.definitions:
            initial = initial_values.get(d.name, "")
            if d.type == FieldType.YESNO:
                field: forms.Field = forms.BooleanField(label=d.label, required=False, initial=bool(initial))
            elif d.type == FieldType.DATE:
                field = date_form_field(d.label, str(initial or ""))
            elif d.type == FieldType.NUMBER:
                field = forms.CharField(
                    label=d.label,
                    required=False,
                    initial=initial,
                    widget=forms.TextInput(attrs={"inputmode": "decimal"}),
                )
            else:
                field = forms.CharField(label=d.label, required=False, initial=initial, max_length=2000)
                if d.type == FieldType.SELECTION:
                    field.widget.attrs["list"] = f"choices-{d.name}"
                    field.widget.attrs["data-field"] = d.name
            self.fields[d.name] = field

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for d in self.definitions:
            if d.type == FieldType.DATE:
                stored = str(self.fields[d.name].widget.attrs.get("data-stored", ""))
                cleaned[d.name] = date_from_picker(str(cleaned.get(d.name) or ""), stored)
            try:
                cleaned[d.name] = clean_field_value(d, cleaned.get(d.name))
            except forms.ValidationError as exc:
                self.add_error(d.name, exc)
        return cleaned


def date_form_field(label: str, stored: str) -> forms.CharField:
    """A date picker for a stored ISO value: ``type=date`` for a day,
    ``datetime-local`` (to the second) for a moment, shown in the archive's
    time zone (``TIME_ZONE``) — the zone is named next to the field."""
    moment = parse_field_date(stored) if "T" in stored else None
    if moment is None:
        attrs = {"type": "date", "data-stored": stored}
        return forms.CharField(label=label, required=False, initial=stored[:10], widget=forms.DateInput(attrs=attrs))
    shown = timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M:%S")
    attrs = {"type": "datetime-local", "step": "1", "data-stored": stored, "data-shown": shown}
    return forms.CharField(
        label=label,
        required=False,
        initial=shown,
        widget=forms.DateTimeInput(attrs=attrs),
        help_text=_("Time in %(zone)s") % {"zone": timezone.get_current_timezone_name()},
    )


def date_from_picker(value: str, stored: str) -> str:
    """What a date picker sent, as the ISO value to store: the stored value
    itself when unchanged (its own offset kept), a picked local time made
    aware in the archive's time zone (``2015-11-29T09:45:18+01:00``), a day as
    ``YYYY-MM-DD``. Anything else is left to the field's validation."""
    value = value.strip()
    if not value or len(value) <= 10:
        return value
    try:
        picked = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if picked.tzinfo is not None:
        return picked.isoformat()
    old = parse_field_date(stored) if "T" in stored else None
    if old is not None and timezone.localtime(old).replace(tzinfo=None, microsecond=0) == picked:
        return stored
    return timezone.make_aware(picked, timezone.get_current_timezone()).isoformat()


class NotesForm(forms.Form):
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 12}), required=False, max_length=100_000)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(d, initial) for d in data]
        return [single(data, initial)]


def upload_limits_text() -> str:
    return _("At most %(file)s per file and %(upload)s per upload.") % {
        "file": filesizeformat(settings.MAX_UPLOAD_BYTES),
        "upload": filesizeformat(settings.MAX_UPLOAD_REQUEST_BYTES),
    }


class UploadForm(forms.Form):
    # A declared field, not BaseForm.files: the form's metaclass moves it into base_fields.
    files = MultipleFileField(label=_("Files"))  # type: ignore[assignment]
    owner_group = forms.ModelChoiceField(queryset=Group.objects.none(), label=_("Owner group"))

    def __init__(
        self, *args: Any, groups: QuerySet[Group], version_key_field: FieldDefinition | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["files"].help_text = upload_limits_text()
        _choices(self.fields["owner_group"]).queryset = groups
        first = groups.first()
        if first is not None:
            self.fields["owner_group"].initial = first.pk
        # With versioning on, the uploader may give the version key; an
        # existing document with that value gets the upload as its next version.
        self.version_key_field = version_key_field
        if version_key_field is not None:
            self.fields["version_key"] = forms.CharField(
                label=_("Version key (%(field)s)") % {"field": version_key_field.label},
                required=False,
                max_length=2000,
                help_text=_("Optional: a document with this value gets the upload as its next version."),
            )

    def clean_version_key(self) -> object:
        value = self.cleaned_data.get("version_key", "")
        if not value or self.version_key_field is None:
            return ""
        return clean_field_value(self.version_key_field, value)

    def upload_values(self) -> dict[str, object]:
        """Field values given with the upload (the version key, if any)."""
        key = self.cleaned_data.get("version_key")
        if self.version_key_field is None or key in (None, ""):
            return {}
        return {self.version_key_field.name: key}


def _choices(field: forms.Field) -> forms.ModelChoiceField[Any]:
    return cast("forms.ModelChoiceField[Any]", field)


class ArchiveSettingsForm(forms.ModelForm):  # type: ignore[type-arg]  # not subscriptable at run time
    class Meta:
        model = ArchiveSettings
        fields = [
            "primary_usage",
            "theme",
            "hide_extended_icons",
            "field_columns",
            "start_reduced_table",
            "hide_internal_in_reduced",
            "suppress_title",
            "title_width",
            "publish_field",
            "filename_field",
            "versioning",
            "version_key_field",
            "combobox_elements",
            "show_notes",
            "dns_name",
            "link_title_field",
        ]
        widgets = {"dns_name": forms.TextInput(attrs={"placeholder": "https://archive.example.com"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self.fields["publish_field"]).queryset = FieldDefinition.objects.filter(type=FieldType.YESNO)
        _choices(self.fields["filename_field"]).queryset = FieldDefinition.objects.filter(
            type__in=[FieldType.TEXT, FieldType.SELECTION], internal=False
        )
        _choices(self.fields["version_key_field"]).queryset = FieldDefinition.objects.filter(internal=False)
        self.fields["field_columns"].widget.attrs.update({"min": 1, "max": 3})
        cast(forms.IntegerField, self.fields["title_width"]).min_value = 1
        self.fields["combobox_elements"].widget.attrs["min"] = 0

    def clean_dns_name(self) -> str:
        from archive.links import validate_dns_name

        value = (self.cleaned_data.get("dns_name") or "").strip().rstrip("/")
        validate_dns_name(value)
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("versioning") and not cleaned.get("version_key_field"):
            self.add_error("version_key_field", _("Versioning needs a field for the version key."))
        return cleaned
