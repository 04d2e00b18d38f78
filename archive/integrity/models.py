"""The two chains (ledger, audit log), their heads and their timestamp anchors."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Chain(models.TextChoices):
    LEDGER = "ledger", _("Integrity ledger")
    AUDIT = "audit", _("Audit log")


class ChainHead(models.Model):
    """The newest entry of one chain: its sequence number and hash. Appending
    locks this row (``SELECT … FOR UPDATE``), so entries of concurrent
    transactions get consecutive numbers in commit order and each links to the
    entry committed before it. One row per chain, created by its first append."""

    chain = models.CharField(max_length=16, choices=Chain.choices, primary_key=True)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"{self.chain} #{self.seq}"


class ChainEntry(models.Model):
    """What both chains' entries have: a gapless sequence number, the time, the
    actor, the hash of the previous entry and the entry's own hash over its
    canonical form (``archive.integrity.chain.canonical``).

    Indexes: every one costs each append, so each chain has only those its
    queries use (checked with EXPLAIN on MariaDB): ``seq`` (unique) for the
    verifier's walk, the anchors and ranges; the ledger ``(document, seq)`` for
    a document's history and its latest entry; the audit log ``at``, ``action``
    and ``document`` for its filters (who is a substring match: no index helps)."""

    seq = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField()
    # Who: a user name, or "system", or "source:<id>" for a mail source's run.
    actor = models.CharField(max_length=150)
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64)

    class Meta:
        abstract = True
        ordering = ["seq"]


class LedgerEvent(models.TextChoices):
    ARCHIVED = "archived", _("Archived")  # a mail or an uploaded file became a document
    LOCATION_ADDED = "location_added", _("Location added")  # the same mail seen in another folder/mailbox
    FILES_DERIVED = "files_derived", _("Files derived")  # processing stored a mail's attachment files
    VERSION_ADDED = "version_added", _("Version added")
    FIELDS_CHANGED = "fields_changed", _("Fields changed")
    NOTES_CHANGED = "notes_changed", _("Notes changed")
    OWNER_CHANGED = "owner_changed", _("Owner changed")
    MERGED = "merged", _("Merged into another document")
    DELETED = "deleted", _("Deleted")


class LedgerEntry(ChainEntry):
    """One change of archive content. ``document`` is the document number, not a
    foreign key: the entry outlives a deleted document. ``blobs`` lists the
    SHA-256 of every blob the change involved; ``metadata_sha256`` is the hash of
    the document's canonical metadata after the change (empty after a delete);
    ``details`` holds what changed (field: old → new, the policy of a deletion…)."""

    event = models.CharField(max_length=32, choices=LedgerEvent.choices)
    document = models.PositiveBigIntegerField()
    blobs = models.JSONField(default=list)
    metadata_sha256 = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict)

    class Meta(ChainEntry.Meta):
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        indexes = [models.Index(fields=["document", "seq"], name="integrity_ledger_document_seq")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event} {self.document}"


class AuditEntry(ChainEntry):
    """One access or administrative act (``archive.integrity.audit.AuditAction``).
    ``document`` is the document number concerned, if any; ``details`` the rest
    (search query and hit count, the setting changed, the failed user name…)."""

    at = models.DateTimeField(db_index=True)  # the filters' since / until
    action = models.CharField(max_length=48, db_index=True)
    user_id = models.PositiveIntegerField(null=True, blank=True)
    document = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    outcome = models.CharField(max_length=16, default="ok")  # ok / denied / failed
    details = models.JSONField(default=dict)

    class Meta(ChainEntry.Meta):
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        # The auditor role (group "Auditors"): every document read-only, the audit log, the integrity reports.
        permissions = [("audit", "Audit: read every document, the audit log and the integrity reports")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.actor}"


class Anchor(models.Model):
    """An RFC 3161 timestamp over the heads of both chains at one moment: the
    token the TSA returned for ``digest`` (SHA-256 of
    ``archive.integrity.chain.anchor_message``), verified on receipt."""

    created = models.DateTimeField(db_index=True)
    ledger_seq = models.PositiveBigIntegerField()
    ledger_hash = models.CharField(max_length=64)
    audit_seq = models.PositiveBigIntegerField()
    audit_hash = models.CharField(max_length=64)
    digest = models.CharField(max_length=64)
    tsa_url = models.CharField(max_length=500)
    # The TSA's whole DER TimeStampResp (status and TimeStampToken, a CMS SignedData):
    # what rfc3161-client re-verifies.
    token = models.BinaryField()
    gen_time = models.DateTimeField()  # the TSA's time from the token

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"anchor {self.created:%Y-%m-%d %H:%M} ledger #{self.ledger_seq} audit #{self.audit_seq}"


class VerificationStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    OK = "ok", _("No findings")
    FINDINGS = "findings", _("Findings")
    FAILED = "failed", _("Could not complete")


class VerificationRun(models.Model):
    """One run of ``archive.integrity.verify`` (scheduled or ``manage.py verify``):
    what it covered, what it checked and every finding (``{"kind", "subject",
    "detail"}``), for the integrity page of WebAdmin."""

    started = models.DateTimeField(db_index=True)
    finished = models.DateTimeField(null=True, blank=True)
    mode = models.CharField(max_length=16)  # full / sample / since
    status = models.CharField(max_length=16, choices=VerificationStatus.choices, default=VerificationStatus.RUNNING)
    counts = models.JSONField(default=dict)  # blobs, bytes, documents, entries per chain, anchors
    findings = models.JSONField(default=list)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started"]

    def __str__(self) -> str:
        return f"verification {self.started:%Y-%m-%d %H:%M} {self.mode}: {self.status}"
