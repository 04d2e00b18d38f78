"""WebAdmin forms for mail sources. Secrets are write-only: never rendered
back, required again when the account they belong to changes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django import forms
from django.contrib.auth.models import Group
from django.core.validators import validate_email
from django.utils.translation import gettext, gettext_lazy, gettext_noop

from archive.models import FieldDefinition
from mailsources.models import AfterArchive, MailSource, Security, SourceKind, SourceStatus
from mailsources.services import source_set_secret

ENTRA_HELP = gettext_lazy(
    "Register an app in Microsoft Entra (App registrations → New registration). Under API "
    "permissions add the application permission Microsoft Graph → Mail.Read (Mail.ReadWrite if "
    "mails are to be moved or deleted after archiving) and grant admin consent. Create a client "
    "secret under Certificates & secrets and enter its value here. Optionally restrict the app "
    "to the archived mailboxes with an application access policy (Exchange Online PowerShell: "
    "New-ApplicationAccessPolicy -AccessRight RestrictAccess)."
)

# The status message of a new source that waits for its first successful test.
AWAITING_TEST = "Waiting for a successful “Test connection” (or enable it on the form)."

COMMON_FIELDS = [
    "name",
    "enabled",
    "interval_minutes",
    "folders",
    "owner_group",
    "from_field",
    "to_field",
    "cc_field",
    "subject_field",
    "min_age_days",
    "after_archive",
    "move_to_folder",
]


# django-stubs makes ModelForm generic; at run time Django's is not subscriptable.
if TYPE_CHECKING:
    _ModelForm = forms.ModelForm[MailSource]
else:
    _ModelForm = forms.ModelForm


class SourceForm(_ModelForm):
    kind: ClassVar[SourceKind]
    secret_label = gettext_noop("Password")  # translated where shown
    secret_name = gettext_noop("password")  # in "Enter the …"
    secret_after = "username"  # the field the secret follows on the form
    # Changing one of these re-targets the secret: it must be entered again.
    identity_fields: tuple[str, ...] = ()

    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["secret"].label = gettext(self.secret_label)
        has_secret = bool(self.instance.pk and self.instance.secret_encrypted)
        self.fields["secret"].help_text = (
            gettext("Stored encrypted. Leave empty to keep the stored one.")
            if has_secret
            else gettext("Stored encrypted; it is never shown again.")
        )
        owner_group = self.fields["owner_group"]
        assert isinstance(owner_group, forms.ModelChoiceField)
        owner_group.queryset = Group.objects.order_by("name")
        if not self.instance.pk:
            self._new_source_defaults()
        # The secret right after the account it belongs to.
        order = [name for name in self.fields if name not in ("name", "secret")]
        order.insert(order.index(self.secret_after) + 1, "secret")
        order.insert(0, "name")  # the name first, as on the source list
        self.order_fields(order)
        for name in ("from", "to", "cc", "subject"):
            field = self.fields[f"{name}_field"]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = FieldDefinition.objects.filter(internal=False)
            if not self.instance.pk and self.initial.get(f"{name}_field") is None:
                # In the form's initial, not the field's: a ModelForm's initial has the
                # new instance's values (None here), which win over the field's.
                self.initial[f"{name}_field"] = (
                    FieldDefinition.objects.filter(name=name).values_list("pk", flat=True).first()
                )

    def _new_source_defaults(self) -> None:
        groups = list(Group.objects.values_list("pk", flat=True)[:2])
        if len(groups) == 1 and self.initial.get("owner_group") is None:  # the only possible answer
            self.initial["owner_group"] = groups[0]
        # Nothing is synced before the administrator tested the connection.
        self.initial["enabled"] = False
        self.fields["enabled"].help_text = gettext(
            "A new source starts disabled: it is enabled by the first successful "
            "“Test connection”. Tick it to enable the source now."
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        secret = cleaned.get("secret") or ""
        creating = not self.instance.pk or not self.instance.secret_encrypted
        changed_identity = [f for f in self.identity_fields if f in self.changed_data]
        if not secret and (creating or (self.instance.pk and changed_identity)):
            secret_name = gettext(self.secret_name)
            if creating:
                message = gettext("Enter the %(secret)s.") % {"secret": secret_name}
            else:
                fields = " / ".join(str(self.fields[f].label) for f in changed_identity)
                message = gettext("Enter the %(secret)s because %(fields)s changed.") % {
                    "secret": secret_name,
                    "fields": fields,
                }
            self.add_error("secret", message)
        if cleaned.get("after_archive") == AfterArchive.MOVE and not cleaned.get("move_to_folder"):
            self.add_error("move_to_folder", gettext("Name the folder archived mails are moved to."))
        return cleaned

    def save(self, commit: bool = True) -> MailSource:
        source: MailSource = super().save(commit=False)
        source.kind = self.kind
        if not source.pk and not source.enabled:
            source.status, source.status_message = SourceStatus.DISABLED, AWAITING_TEST
        elif source.enabled and source.status == SourceStatus.DISABLED:  # enabled explicitly
            source.status, source.status_message = SourceStatus.IDLE, ""
        if self.cleaned_data.get("secret"):
            source_set_secret(source, self.cleaned_data["secret"])
        if commit:
            source.save()
        return source


class ImapSourceForm(SourceForm):
    kind = SourceKind.IMAP
    identity_fields = ("host", "username")

    class Meta:
        model = MailSource
        fields = ["host", "port", "security", "allow_unencrypted", "username", "ca_file", *COMMON_FIELDS]
        help_texts = {
            "port": gettext_lazy("Empty: 993 for implicit TLS, 143 for STARTTLS or none."),
            "ca_file": gettext_lazy("Path of a PEM file with the CA of an in-house server; empty: the system's CAs."),
            "allow_unencrypted": gettext_lazy("Allow security 'None': the password crosses the network in clear."),
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not cleaned.get("host"):
            self.add_error("host", gettext("Enter the IMAP server's host name."))
        if not cleaned.get("username"):
            self.add_error("username", gettext("Enter the user name."))
        if cleaned.get("security") == Security.NONE and not cleaned.get("allow_unencrypted"):
            self.add_error("security", gettext("Unencrypted IMAP needs the 'allow unencrypted' switch."))
        return cleaned


class M365SourceForm(SourceForm):
    kind = SourceKind.M365
    secret_label = gettext_noop("Client secret")
    secret_name = gettext_noop("client secret")
    secret_after = "client_id"
    identity_fields = ("tenant", "client_id")

    class Meta:
        model = MailSource
        fields = ["tenant", "client_id", "mailboxes", "page_size", *COMMON_FIELDS]
        help_texts = {"tenant": ENTRA_HELP, "page_size": gettext_lazy("How many mails one request delivers (1–1000).")}
        widgets = {"mailboxes": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["folders"].help_text = gettext(
            "Comma-separated folder paths (e.g. Inbox, Inbox/Projects); a new source archives the Inbox. "
            "Empty for all folders (search folders are skipped)."
        )
        self.fields["after_archive"].help_text = gettext(
            "Moving or deleting needs the application permission Mail.ReadWrite (Mail.Read only "
            "reads); it happens only after the archived copy was verified."
        )

    def clean_mailboxes(self) -> str:
        value = self.cleaned_data.get("mailboxes", "")
        addresses = [m.strip() for m in value.replace(",", "\n").splitlines() if m.strip()]
        if not addresses:
            raise forms.ValidationError(gettext("Enter at least one mailbox address."))
        for address in addresses:
            validate_email(address)
        return "\n".join(addresses)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for name in ("tenant", "client_id"):
            if not cleaned.get(name):
                self.add_error(name, gettext("Required."))
        return cleaned


FORMS: dict[str, type[SourceForm]] = {SourceKind.IMAP: ImapSourceForm, SourceKind.M365: M365SourceForm}
