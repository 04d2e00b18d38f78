from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from archive.models import ArchiveSettings, FieldDefinition, FieldType
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
                field = forms.CharField(
                    label=d.label,
                    required=False,
                    initial=initial,
                    widget=forms.TextInput(attrs={"placeholder": "YYYY-MM-DD"}),
                )
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
            try:
                cleaned[d.name] = clean_field_value(d, cleaned.get(d.name))
            except forms.ValidationError as exc:
                self.add_error(d.name, exc)
        return cleaned


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
