"""Exports (what was selected, how far the build is, where the result lies) and
the kept generations of the procedure documentation."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ExportStatus(models.TextChoices):
    PENDING = "pending", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Ready")
    FAILED = "failed", _("Failed")
    EXPIRED = "expired", _("Expired (removed)")


class ExportTarget(models.TextChoices):
    ZIP = "zip", _("ZIP file to download")
    DIRECTORY = "directory", _("Directory on the server (large exports)")


class Export(models.Model):
    """One export: the selection (a search query in the table's language, a
    source, a mailbox, a date range, a legal hold — all optional, combined with
    AND), the build's state and progress, and the result under ``EXPORT_DIR``
    (``path`` relative to it). Built by ``archive.exports.builder.export_build``
    on the "processing" queue; a row in PENDING is the work a sweep finds."""

    created = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    name = models.CharField(max_length=100, blank=True)
    query = models.CharField(max_length=2000, blank=True)
    source_id = models.PositiveIntegerField(null=True, blank=True)  # a mailsources.MailSource (not imported)
    mailbox = models.CharField(max_length=255, blank=True)
    date_from = models.DateField(null=True, blank=True)
    date_to = models.DateField(null=True, blank=True)
    legal_hold_id = models.PositiveIntegerField(null=True, blank=True)
    target = models.CharField(max_length=16, choices=ExportTarget.choices, default=ExportTarget.ZIP)
    with_mbox = models.BooleanField(_("MBOX per mailbox"), default=True)
    with_z3 = models.BooleanField(_("GoBD Z3 tables (index.xml)"), default=True)

    status = models.CharField(max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    error = models.TextField(blank=True)
    stage = models.CharField(max_length=100, blank=True)  # what the build writes now
    total = models.PositiveIntegerField(null=True, blank=True)  # documents selected
    done = models.PositiveIntegerField(default=0)  # documents written
    files = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    path = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)  # of the ZIP file
    started = models.DateTimeField(null=True, blank=True)
    # Moved by every step of a build: a RUNNING export whose heartbeat stopped lost its
    # worker, and the sweep (or the redelivered task) builds it again.
    heartbeat = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.get_status_display()})"

    @property
    def selection(self) -> dict[str, object]:
        return {
            "query": self.query,
            "source": self.source_id,
            "mailbox": self.mailbox,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "legal_hold": self.legal_hold_id,
        }


class ExportItem(models.Model):
    """One document of an export, fixed when the build starts: every part of the
    export (files, manifest, MBOX, Z3 tables) holds the same documents, however
    the archive changes meanwhile; and the row says later what was exported."""

    export = models.ForeignKey(Export, on_delete=models.CASCADE, related_name="items")
    document = models.PositiveBigIntegerField()  # the number, not a key: it outlives a deleted document

    class Meta:
        constraints = [models.UniqueConstraint(fields=["export", "document"], name="uniq_export_item")]


class ProcedureDocument(models.Model):
    """One generation of the procedure documentation (technical part): the
    rendered HTML kept as a file under ``EXPORT_DIR`` with its SHA-256."""

    created = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    software_version = models.CharField(max_length=50)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"procedure documentation {self.created:%Y-%m-%d %H:%M}"
