"""The archive: field definitions, documents, their files and the archive settings."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


class FieldType(models.TextChoices):
    TEXT = "text", _("Text")
    NUMBER = "number", _("Number")
    DATE = "date", _("Date")
    YESNO = "yesno", _("Yes/No")
    SELECTION = "selection", _("Selection")


class FieldDefinition(models.Model):
    """An administrator-defined field; a document's values are keyed by ``name``."""

    name = models.SlugField(max_length=64, unique=True)
    label = models.CharField(max_length=100)
    type = models.CharField(max_length=16, choices=FieldType.choices, default=FieldType.TEXT)
    internal = models.BooleanField(
        default=False, help_text=_("A system field (number, owner, created…), not typed by users.")
    )
    in_reduced_table = models.BooleanField(default=True, help_text=_("Shown when the table is in its reduced form."))
    order = models.PositiveIntegerField(default=100)
    choices = models.TextField(
        blank=True, help_text=_("Selection fields: one allowed value per line (empty: free text).")
    )

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return self.label

    @property
    def choice_list(self) -> list[str]:
        return [line.strip() for line in self.choices.splitlines() if line.strip()]


class DocumentKind(models.TextChoices):
    DOCUMENT = "document", _("Document")
    MAIL = "mail", _("Mail")


class ProcessingStatus(models.TextChoices):
    """Where a mail document's processing (its parts becoming files) stands;
    ``archive.processing`` moves it, its sweep re-queues what is stuck."""

    NONE = "none", _("Nothing to process")  # not a mail from a source (uploads)
    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    DONE = "done", _("Processed")
    FAILED_TRANSIENT = "failed_transient", _("Failed, will retry")
    FAILED_PERMANENT = "failed_permanent", _("Failed")


class Document(models.Model):
    """An archived document. Its primary key is the document number (``go=`` of
    access links): AUTO_INCREMENT on MariaDB and AUTOINCREMENT on SQLite never
    hand out a number twice, not even after a delete."""

    kind = models.CharField(max_length=16, choices=DocumentKind.choices, default=DocumentKind.DOCUMENT)
    owner_group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="documents")
    values = models.JSONField(default=dict, blank=True)
    # Mirrors of the "title" and "date" field values: indexed, for sorting a big table.
    title = models.CharField(max_length=500, blank=True, db_index=True)
    date = models.DateTimeField(null=True, blank=True, db_index=True)
    notes = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    modified = models.DateTimeField(auto_now=True)
    # Set when a mail could not be parsed; the raw file is still the record.
    parse_error = models.TextField(blank=True)
    # Processing of a mail (archive.processing): its state, what went wrong, how
    # many times it was claimed, when it was last claimed, queued or finished,
    # and how many claims were lost (the worker killed) without an outcome.
    processing_status = models.CharField(max_length=16, choices=ProcessingStatus.choices, default=ProcessingStatus.NONE)
    processing_error = models.TextField(blank=True)
    processing_attempts = models.PositiveSmallIntegerField(default=0)
    processing_updated = models.DateTimeField(null=True, blank=True)
    processing_lost = models.PositiveSmallIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["owner_group", "date"]),
            models.Index(fields=["processing_status", "processing_updated"], name="document_processing_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.pk}: {self.title}"

    @property
    def number(self) -> int:
        return self.pk

    def original(self) -> DocumentFile | None:
        return self.files.filter(role=FileRole.ORIGINAL).order_by("-version", "-id").first()


class FileRole(models.TextChoices):
    ORIGINAL = "original", _("Original")
    ATTACHMENT = "attachment", _("Attachment")
    # What an imported Outlook item was before it became the mail (the .msg file, or
    # libpff's property records of a PST item): kept, hashed and exported with it.
    SOURCE = "source", _("Original before conversion")


class ExtractionStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")
    NONE = "none", _("Not extractable")


class DocumentFile(models.Model):
    """A file of a document; the bytes live in the content-addressed store."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="files")
    role = models.CharField(max_length=16, choices=FileRole.choices, default=FileRole.ORIGINAL)
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveBigIntegerField()
    # Versions of the original: 0 → "1.0", 1 → "1.1", …; attachments carry their original's.
    version = models.PositiveIntegerField(default=0)
    # MIME part path for attachments derived from a mail (".eml" stays the record).
    part = models.CharField(max_length=64, blank=True)
    content_id = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    extraction_status = models.CharField(
        max_length=16, choices=ExtractionStatus.choices, default=ExtractionStatus.PENDING
    )
    extraction_error = models.TextField(blank=True)
    extraction_attempts = models.PositiveSmallIntegerField(default=0)
    text = models.TextField(blank=True)

    class Meta:
        ordering = ["role", "-version", "id"]
        indexes = [
            # The dashboard: pending and failed files counted and the oldest found by
            # index; a day's files summed without reading the others.
            models.Index(fields=["extraction_status", "created"], name="archive_file_extraction_idx"),
            models.Index(fields=["created"], name="archive_file_created_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def version_label(self) -> str:
        return f"1.{self.version}"


class SearchEntry(models.Model):
    """The full-text index row of a document: its fields, notes, file names and
    extracted file text as one normalised token stream (see ``archive/search``).
    MariaDB indexes ``text`` with an InnoDB FULLTEXT index; SQLite with an FTS5
    table kept in sync by triggers (migration 0003). Written only by
    ``archive.search.index_document``."""

    document = models.OneToOneField(Document, on_delete=models.CASCADE, primary_key=True, related_name="search_entry")
    text = models.TextField(blank=True)
    indexed = models.DateTimeField(auto_now=True)


class SearchStatistic(models.Model):
    """How common an index token is (share of documents that contain it), from
    a sample (``archive.search.statistics``): lets the MariaDB search choose
    between the full-text index and reading documents newest first. Tokens
    rarer than the sample can tell are absent."""

    token = models.CharField(max_length=100, primary_key=True)
    fraction = models.FloatField()


class SearchIndexState(models.Model):
    """Whether every index entry holds its current token stream (one row, or none).

    ``pending``: entries may lack the month of their document date
    (``archive.search.tokens.month_token``), as those written before it did.
    ``archive.search.upgrade`` checks the entries in document order, rewrites
    those that lack it, and clears ``pending`` once no entry is left above
    ``checked_through``; until then the MariaDB search does not ask the index
    for a date range's months. No row (a database made after migration 0011,
    or flushed) means nothing is pending."""

    pending = models.BooleanField(default=False)
    checked_through = models.BigIntegerField(default=0)  # the last document number checked


class PublicAccess(models.Model):
    """A visitor without login opened a published document."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="public_accesses")
    at = models.DateTimeField(auto_now_add=True)
    ip = models.GenericIPAddressField(null=True)
    user_agent = models.CharField(max_length=300, blank=True)
    path = models.CharField(max_length=300, blank=True)


class PrimaryUsage(models.TextChoices):
    DOCUMENTS = "documents", _("Documents")
    MAILS = "mails", _("Mails")
    MEDIA = "media", _("Media")


class Theme(models.TextChoices):
    BRIGHT = "bright", _("New icons with bright design")
    DARK = "dark", _("Dark design")


class ArchiveSettings(models.Model):
    """The "Archive administration" form of the original: one row per archive."""

    primary_usage = models.CharField(
        _("Primary archive usage"),
        max_length=16,
        choices=PrimaryUsage.choices,
        default=PrimaryUsage.DOCUMENTS,
    )
    theme = models.CharField(_("Layout (Theme)"), max_length=16, choices=Theme.choices, default=Theme.BRIGHT)
    hide_extended_icons = models.BooleanField(_("Hide extended icons"), default=False)
    field_columns = models.PositiveSmallIntegerField(
        _("Number of columns for fields (1,2,3)"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(3)],
    )
    start_reduced_table = models.BooleanField(_("Start with reduced table"), default=False)
    hide_internal_in_reduced = models.BooleanField(_("Hide internal fields in reduced table"), default=False)
    suppress_title = models.BooleanField(_("Suppress field 'Title' in main view"), default=False)
    title_width = models.PositiveIntegerField(
        _("Width of field 'Title' in table"),
        default=3000,
        validators=[MinValueValidator(1)],
        help_text=_("In the original's unit, 1/15 px: 3000 → 200 px."),
    )
    publish_field = models.ForeignKey(
        FieldDefinition,
        verbose_name=_("Field for publishing"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    filename_field = models.ForeignKey(
        FieldDefinition,
        verbose_name=_("Save filename in field"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    versioning = models.BooleanField(_("Versioning"), default=False)
    version_key_field = models.ForeignKey(
        FieldDefinition,
        verbose_name=_("Field for version key"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    combobox_elements = models.PositiveIntegerField(_("Elements in combobox fields (0-x)"), default=0)
    show_notes = models.BooleanField(_("Show note field"), default=True)
    dns_name = models.CharField(
        _("DNS name for API call"),
        max_length=255,
        blank=True,
        help_text=_("Base URL of access links, e.g. https://archive.example.com"),
    )
    link_title_field = models.ForeignKey(
        FieldDefinition,
        verbose_name=_("Title field for API link (Ctrl+C WebDMS)"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = _("archive settings")
        verbose_name_plural = _("archive settings")

    @property
    def title_width_px(self) -> int:
        return max(1, round(self.title_width / 15))

    @classmethod
    def load(cls) -> ArchiveSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


def parse_field_date(value: str) -> dt.datetime | None:
    """A date field's stored value (ISO date or datetime) as an aware datetime."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


class MailViewEncoder(json.JSONEncoder):
    """Non-ASCII text as UTF-8, not as ``\\u`` escapes of six bytes a character:
    a mail view's bodies stay far below the database's packet size."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ensure_ascii"] = False
        super().__init__(*args, **kwargs)


class MailView(models.Model):
    """What the View tab shows of a mail, stored by processing so a view reads
    this row instead of parsing the ``.eml`` per request: the decoded header
    fields, the body already passed through the sanitiser, the part list
    (``archive.mailview.mail_view_data``). Derived, like the attachment files:
    the raw mail stays the record; ``schema`` tells a row of an older layout
    (shown by parsing again until the mail is processed again)."""

    original = models.OneToOneField(DocumentFile, on_delete=models.CASCADE, related_name="mail_view")
    schema = models.PositiveSmallIntegerField()
    data = models.JSONField(encoder=MailViewEncoder)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"mail view of file {self.original_id}"


class ArchiveDay(models.Model):
    """Precomputed daily figures for the dashboards (``archive/dashboard.py``):
    what arrived on one UTC day for one owner group — all its documents
    (``source`` 0) or the mail of one mail source and mailbox (``source`` is
    the mail source's id; archive does not know that model). A page view sums
    these few rows instead of counting the archive."""

    date = models.DateField()
    owner_group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="+")
    source = models.PositiveIntegerField(default=0)
    mailbox = models.CharField(max_length=255, blank=True)
    documents = models.PositiveIntegerField(default=0)
    # Documents of the day that have a search index entry.
    indexed = models.PositiveIntegerField(default=0)
    # Bytes of the files (source 0) or raw mails (a source) that arrived that day.
    bytes = models.PositiveBigIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["date", "owner_group", "source", "mailbox"], name="uniq_archive_day")
        ]
        indexes = [models.Index(fields=["source", "date"], name="archive_day_source_date_idx")]

    def __str__(self) -> str:
        return f"{self.date} {self.owner_group_id}/{self.source}/{self.mailbox}: {self.documents}"


class FolderCount(models.Model):
    """Precomputed for the WebDMS folder tree (``archive/folders.py``): how many
    mails of one owner group were seen in one mailbox folder, counting the mail
    source locations up to number ``upto`` (the newer ones are counted live).
    A row without a group only carries the mark."""

    owner_group = models.ForeignKey(Group, null=True, on_delete=models.CASCADE, related_name="+")
    mailbox = models.CharField(max_length=255)
    folder = models.CharField(max_length=500)
    mails = models.PositiveIntegerField(default=0)
    upto = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.owner_group_id} {self.mailbox}/{self.folder}: {self.mails}"
