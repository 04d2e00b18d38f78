"""The forms of the import page: start an import of what lies in IMPORT_DIR, or of
one uploaded file (within the upload limits)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import Group
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from mailsources.imports import import_dir_entries
from mailsources.models import ImportFormat

UPLOAD_SUFFIXES = (".mbox", ".mbx", ".zip", ".msg", ".eml")


class _ImportFields(forms.Form):
    mailbox = forms.CharField(
        label=_("Mailbox address"),
        max_length=255,
        help_text=_(
            "The mailbox the mails belong to. The mails an IMAP or Microsoft 365 source archived "
            "from it already are not archived twice: the import adds where else they were found."
        ),
    )
    owner_group = forms.ModelChoiceField(label=_("Owner"), queryset=Group.objects.order_by("name"))
    format = forms.ChoiceField(choices=ImportFormat.choices, initial=ImportFormat.AUTO, required=False)

    def clean_format(self) -> str:
        return str(self.cleaned_data.get("format") or ImportFormat.AUTO)


class ImportStartForm(_ImportFields):
    entry = forms.ChoiceField(label=_("File or folder in the import directory"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        entries = import_dir_entries()
        entry = self.fields["entry"]
        assert isinstance(entry, forms.ChoiceField)
        entry.choices = [
            (name, f"{name}{'/' if is_dir else ''} ({filesizeformat(size)})") for name, size, is_dir in entries
        ]
        self.order_fields(["entry"])


class ImportUploadForm(_ImportFields):
    file = forms.FileField(label=_("MBOX, ZIP of .eml files, or Outlook .msg"))
    field_order = ["file"]

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        name = str(upload.name or "")
        if not name.lower().endswith(UPLOAD_SUFFIXES):
            raise forms.ValidationError(
                _(
                    "“%(name)s” is no mail archive this page takes (%(suffixes)s); "
                    "put PST files and large archives into the import directory instead."
                )
                % {"name": name, "suffixes": ", ".join(UPLOAD_SUFFIXES)}
            )
        if upload.size == 0:
            raise forms.ValidationError(_("“%(name)s” is empty.") % {"name": name})
        return upload
