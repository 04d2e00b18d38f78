"""Retention policies, legal holds, expiry lists and the blobs waiting for removal.

Mail sources are referred to by id (``source_id``), not by a foreign key:
the archive does not know the mailsources app (see ``ArchiveDay.source``)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from archive.models import DocumentKind, FieldDefinition


class Preset(models.TextChoices):
    CH_10 = "ch10", _("CH: 10 years from the end of the year (OR 958f, GeBüV)")
    DE_6 = "de6", _("DE: 6 years from the end of the year (business letters)")
    DE_8 = "de8", _("DE: 8 years from the end of the year (booking records, BEG IV)")
    DE_10 = "de10", _("DE: 10 years from the end of the year (books, annual accounts)")
    CUSTOM = "custom", _("Custom duration")
    FOREVER = "forever", _("Keep forever")


class CountFrom(models.TextChoices):
    END_OF_YEAR = "end_of_year", _("From the end of the calendar year")
    DATE = "date", _("From the document's date")


# Years counted from the end of the year, per preset.
PRESET_YEARS = {Preset.CH_10: 10, Preset.DE_6: 6, Preset.DE_8: 8, Preset.DE_10: 10}


# The order policies are tried in: by ``order``, the default policy last.
POLICY_ORDER = ("is_default", "order", "id")


class RetentionPolicy(models.Model):
    """How long the documents in its scope are kept. Scope fields left empty
    match everything; all that are set must match. The first enabled policy by
    ``order`` decides; the default policy (at most one) comes after all others."""

    name = models.CharField(max_length=100, unique=True)
    order = models.PositiveIntegerField(default=100, help_text=_("Lower first; the first matching policy decides."))
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(
        _("Default policy"), default=False, help_text=_("Applies to documents no other policy matches (scope ignored).")
    )
    preset = models.CharField(max_length=16, choices=Preset.choices, default=Preset.CH_10)
    years = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(500)])
    months = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(6000)])
    days = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(200_000)])
    count_from = models.CharField(max_length=16, choices=CountFrom.choices, default=CountFrom.END_OF_YEAR)
    # Scope.
    source_id = models.PositiveIntegerField(_("Mail source"), null=True, blank=True)
    mailbox = models.CharField(max_length=255, blank=True, help_text=_("As the source names it (case-insensitive)."))
    folder = models.CharField(max_length=500, blank=True, help_text=_("Exact folder name, e.g. INBOX."))
    kind = models.CharField(_("Document kind"), max_length=16, choices=DocumentKind.choices, blank=True)
    field = models.ForeignKey(FieldDefinition, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    field_value = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = list(POLICY_ORDER)
        verbose_name_plural = _("retention policies")
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="uniq_default_policy")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def scoped_by_location(self) -> bool:
        return self.source_id is not None or bool(self.mailbox) or bool(self.folder)


class LegalHold(models.Model):
    """Documents that must not be deleted while the hold is active: those
    matching every criterion that is set (the whole archive when
    ``whole_archive``). Released holds are kept, with who released them."""

    name = models.CharField(max_length=100)
    reason = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    whole_archive = models.BooleanField(default=False)
    query = models.CharField(_("Search query"), max_length=500, blank=True)
    source_id = models.PositiveIntegerField(_("Mail source"), null=True, blank=True)
    mailbox = models.CharField(max_length=255, blank=True)
    date_from = models.DateField(null=True, blank=True)
    date_to = models.DateField(null=True, blank=True)
    released = models.DateTimeField(null=True, blank=True, db_index=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    release_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def active(self) -> bool:
        return self.released is None


class ExpiryStatus(models.TextChoices):
    OPEN = "open", _("Waiting for approval")
    APPROVED = "approved", _("Approved, deleting")
    DONE = "done", _("Done")
    REJECTED = "rejected", _("Rejected")


class ExpiryList(models.Model):
    """The documents past their retention end and not held on one day. Nothing
    is deleted before an administrator approves it (two different ones with
    ``RETENTION_TWO_APPROVERS``); each item is checked again when deleted."""

    created = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=16, choices=ExpiryStatus.choices, default=ExpiryStatus.OPEN)
    first_approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    first_approved = models.DateTimeField(null=True, blank=True)
    second_approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    second_approved = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"expiry list {self.pk} of {self.created:%Y-%m-%d}"

    def approvers(self) -> list[str]:
        return [u.get_username() for u in (self.first_approver, self.second_approver) if u is not None]


class ItemStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELETED = "deleted", _("Deleted")
    KEPT_HELD = "kept_held", _("Kept: on legal hold")
    KEPT_RETENTION = "kept_retention", _("Kept: retention not over")
    GONE = "gone", _("Already gone")


class ExpiryItem(models.Model):
    """One document of an expiry list. ``document`` is the number, not a
    foreign key: the item is the deletion report's line after the delete."""

    expiry_list = models.ForeignKey(ExpiryList, on_delete=models.CASCADE, related_name="items")
    document = models.PositiveBigIntegerField()
    title = models.CharField(max_length=500, blank=True)
    policy = models.CharField(max_length=100)
    retention_end = models.DateField()
    status = models.CharField(max_length=16, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    hashes = models.JSONField(default=list)  # SHA-256 of the document's files, filled when deleted
    ledger_seq = models.PositiveBigIntegerField(null=True, blank=True)
    deleted = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["document"]
        constraints = [models.UniqueConstraint(fields=["expiry_list", "document"], name="uniq_expiry_item")]
        indexes = [models.Index(fields=["expiry_list", "status"], name="expiry_item_status_idx")]

    def __str__(self) -> str:
        return f"{self.document} ({self.status})"


class BlobRemoval(models.Model):
    """A blob that deleted documents referenced: removed from the store once
    nothing references it and ``due`` has passed (a grace period, so that an
    upload of the same bytes still in its transaction keeps it). A row, not a
    message: the sweep finds what a lost task left."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    due = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.sha256
