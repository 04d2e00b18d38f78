"""Mail sources (IMAP accounts, Microsoft 365 tenants), their cursors, the
location ledger and the run history."""

from __future__ import annotations

import hashlib

from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from archive.models import Document, FieldDefinition


class SourceKind(models.TextChoices):
    IMAP = "imap", _("IMAP")
    M365 = "m365", "Microsoft 365"
    # An existing archive (MBOX, .eml, .msg, PST) read from a file or directory.
    IMPORT = "import", _("Import")


class ImportFormat(models.TextChoices):
    AUTO = "auto", _("Detect from the files")
    MBOX = "mbox", _("MBOX (mboxo, mboxrd, mboxcl/cl2)")
    # "mbox" tells mboxo from mboxrd by a line quoted twice (">>From "), which only an
    # mboxrd writer makes unless a mail had one: these two say it instead.
    MBOXO = "mboxo", _("MBOX, mboxo/mboxcl (quoted From lines kept as they are)")
    MBOXRD = "mboxrd", _("MBOX, mboxrd (quoted From lines unquoted)")
    EML = "eml", _(".eml files (a directory or a ZIP)")
    MSG = "msg", _("Outlook .msg files")
    PST = "pst", _("Outlook PST/OST")


class Security(models.TextChoices):
    TLS = "tls", _("Implicit TLS (IMAPS, port 993)")
    STARTTLS = "starttls", _("STARTTLS (port 143)")
    NONE = "none", _("None (unencrypted)")


class AfterArchive(models.TextChoices):
    KEEP = "keep", _("Keep on the server")
    MOVE = "move", _("Move to a folder")
    DELETE = "delete", _("Delete from the server")


class SourceStatus(models.TextChoices):
    IDLE = "idle", _("Idle")
    RUNNING = "running", _("Running")
    OK = "ok", _("OK")
    # Ran, but some mailboxes or folders failed (the page names them).
    PARTIAL = "partial", _("Partly failing")
    RETRYING = "retrying", _("Retrying")
    ERROR = "error", _("Stopped: error")
    DISABLED = "disabled", _("Disabled")


class MailSource(models.Model):
    kind = models.CharField(max_length=8, choices=SourceKind.choices)
    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    interval_minutes = models.PositiveIntegerField(
        _("Interval (minutes)"), default=15, validators=[MinValueValidator(1)]
    )
    # "" = all folders; else a comma-separated list ("INBOX, Archive/2024").
    folders = models.CharField(
        max_length=2000,
        blank=True,
        default="",
        help_text=_("Comma-separated folder names (e.g. INBOX, Archive/2024); empty for all folders."),
    )
    owner_group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="+")
    from_field = models.ForeignKey(FieldDefinition, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    to_field = models.ForeignKey(FieldDefinition, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cc_field = models.ForeignKey(FieldDefinition, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    subject_field = models.ForeignKey(
        FieldDefinition, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    min_age_days = models.PositiveIntegerField(_("Minimum age (days)"), default=0)
    after_archive = models.CharField(max_length=8, choices=AfterArchive.choices, default=AfterArchive.KEEP)
    move_to_folder = models.CharField(max_length=255, blank=True)

    # IMAP
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(65535)])
    security = models.CharField(max_length=8, choices=Security.choices, default=Security.TLS)
    allow_unencrypted = models.BooleanField(default=False)
    username = models.CharField(max_length=255, blank=True)
    ca_file = models.CharField(_("Custom CA file"), max_length=500, blank=True)

    # Microsoft 365
    tenant = models.CharField(max_length=255, blank=True)
    client_id = models.CharField(_("Client ID"), max_length=255, blank=True)
    mailboxes = models.TextField(blank=True, help_text=_("One mailbox address per line."))
    page_size = models.PositiveIntegerField(
        _("Number of mails (Office 365)"),
        default=25,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
    )

    # Import: the file or directory read, and its format. ``mailboxes`` then holds the
    # identity of the mailbox the mails belong to (``mailbox_identity``), resolved once.
    import_path = models.CharField(max_length=1000, blank=True)
    import_format = models.CharField(max_length=8, choices=ImportFormat.choices, default=ImportFormat.AUTO)

    # The IMAP password or the client secret, Fernet-encrypted with a key
    # derived from SOURCE_SECRET_KEY (never stored in the database).
    secret_encrypted = models.BinaryField(blank=True, default=b"", editable=False)

    # Scheduling and lease: a run holds the lease; a killed worker's expires.
    status = models.CharField(max_length=16, choices=SourceStatus.choices, default=SourceStatus.IDLE)
    status_message = models.TextField(blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # When a run was put on the "sync" queue ("Sync now", the dispatcher); cleared
    # when a worker starts it. Set: the page says "queued since …".
    queued_at = models.DateTimeField(null=True, blank=True)
    archived_count = models.PositiveBigIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def folder_list(self) -> list[str]:
        return [f.strip() for f in self.folders.split(",") if f.strip()]

    @property
    def mailbox_list(self) -> list[str]:
        return [m.strip() for m in self.mailboxes.replace(",", "\n").splitlines() if m.strip()]

    # What differs between the kinds, asked by the shared pipeline.

    @property
    def sync_mailboxes(self) -> list[str]:
        """The mailbox addresses a run syncs, each with a client of its own: a
        Microsoft 365 source lists them; an IMAP account is its one mailbox ("")."""
        return self.mailbox_list if self.kind == SourceKind.M365 else [""]

    @property
    def has_mailbox_statuses(self) -> bool:
        """Whether each mailbox keeps a status of its own (``MailboxStatus``):
        one of several Microsoft 365 mailboxes may fail while the others run."""
        return self.kind == SourceKind.M365

    def mailbox_key(self, address: str = "") -> str:
        """The mailbox as the dedup and location rows name it."""
        if self.kind == SourceKind.IMAP:
            return f"{self.username}@{self.host}"
        if self.kind == SourceKind.IMPORT:
            return self.mailboxes.strip()
        return address.lower()

    def mailbox_identity(self, address: str = "") -> str:
        """The mailbox as the server knows it, the same for every source on it: the
        dedup key of ``ArchivedMail`` (one document per distinct raw message per
        mailbox, SPEC §2 rule 2)."""
        return mailbox_identity(self.kind, self.mailbox_key(address))

    def location_scope(self, folder: str) -> dict[str, str]:
        """Where a location is unique, as a ``MailLocation`` filter: an IMAP UID
        within its folder, a Graph immutable id within the whole mailbox (it
        survives moves between folders)."""
        return {} if self.kind == SourceKind.M365 else {"folder": folder}


def mailbox_identity(kind: str, mailbox_key: str) -> str:
    """``MailSource.mailbox_identity`` from a kind and a ``mailbox_key`` ("user@host"
    for IMAP, the address for Microsoft 365): host names and addresses compare
    case-insensitively, an IMAP username as the server spells it (servers may
    tell "Alice" from "alice"). Over 255 characters: its SHA-256."""
    if kind == SourceKind.IMPORT and mailbox_key.startswith(("imap:", "m365:")):
        return mailbox_key  # resolved when the import was set up (mailsources.imports)
    if kind == SourceKind.IMAP:
        user, _, host = mailbox_key.rpartition("@")
        identity = f"imap:{user}@{host.strip().rstrip('.').lower()}"
    else:
        identity = f"m365:{mailbox_key.strip().lower()}"
    if len(identity) > 255:
        identity = f"{kind}:sha256:{hashlib.sha256(identity.encode()).hexdigest()}"
    return identity


class ArchivedMail(models.Model):
    """One distinct raw message per mailbox: the dedup key of mail ingestion. A
    second source on the same mailbox (``mailbox_key``) finds the rows of the
    first and adds locations, not documents."""

    # The source that archived it first.
    source = models.ForeignKey(MailSource, on_delete=models.PROTECT, related_name="mails")
    mailbox = models.CharField(max_length=255)  # IMAP username@host or the M365 address, as that source names it
    mailbox_key = models.CharField(max_length=255)  # MailSource.mailbox_identity
    sha256 = models.CharField(max_length=64)
    # NULL once retention deleted the document (archive.retention.deletion): the row and
    # its locations stay as the tombstone that keeps the mail, still on the server, from
    # being archived again by the next sync.
    document = models.ForeignKey(Document, null=True, on_delete=models.SET_NULL, related_name="+")
    message_id = models.CharField(max_length=500, blank=True)
    size = models.PositiveBigIntegerField()
    created = models.DateTimeField(auto_now_add=True)
    # Set once the stored copy was re-read and its hash checked (before move/delete).
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mailbox_key", "sha256"], name="uniq_mail_per_mailbox_key")]


class MailLocation(models.Model):
    """Every place a message was seen: (source, mailbox, folder, epoch, location).
    epoch is the IMAP UIDVALIDITY ("" for Graph immutable ids)."""

    source = models.ForeignKey(MailSource, on_delete=models.CASCADE, related_name="locations")
    mailbox = models.CharField(max_length=255)
    folder = models.CharField(max_length=500)
    epoch = models.CharField(max_length=32)
    location = models.CharField(max_length=255)
    mail = models.ForeignKey(ArchivedMail, on_delete=models.PROTECT, related_name="locations")
    seen_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True)  # gone at the source; we keep our copy
    acted_at = models.DateTimeField(null=True, blank=True)  # moved/deleted at the source by us
    # What the client knows of this copy beyond its place (an import: the MBOX variant and
    # whether ">From " was unquoted, a truncated last message, the original of a converted
    # Outlook item and its hash).
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "mailbox", "folder", "epoch", "location"], name="uniq_mail_location"
            )
        ]


class CursorStatus(models.TextChoices):
    OK = "ok", _("OK")
    ERROR = "error", _("Error")


class FolderCursor(models.Model):
    """Where incremental sync of one folder stands (client-specific JSON)."""

    source = models.ForeignKey(MailSource, on_delete=models.CASCADE, related_name="cursors")
    mailbox = models.CharField(max_length=255)
    folder = models.CharField(max_length=500)
    cursor = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=CursorStatus.choices, default=CursorStatus.OK)
    status_message = models.TextField(blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "mailbox", "folder"], name="uniq_folder_cursor")]


class MailboxStatus(models.Model):
    """Per-mailbox status of a Microsoft 365 source (one failing does not stop the others)."""

    source = models.ForeignKey(MailSource, on_delete=models.CASCADE, related_name="mailbox_statuses")
    mailbox = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=SourceStatus.choices, default=SourceStatus.IDLE)
    message = models.TextField(blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "mailbox"], name="uniq_mailbox_status")]


class RunStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    OK = "ok", _("Finished")
    PARTIAL = "partial", _("Finished with errors")
    RETRY = "retry", _("Interrupted, will retry")
    FAILED = "failed", _("Failed")


class SyncRun(models.Model):
    source = models.ForeignKey(MailSource, on_delete=models.CASCADE, related_name="runs")
    started = models.DateTimeField(auto_now_add=True, db_index=True)
    finished = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    new = models.PositiveIntegerField(default=0)
    duplicate = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(null=True, blank=True)
    errors = models.TextField(blank=True)

    class Meta:
        ordering = ["-started"]
