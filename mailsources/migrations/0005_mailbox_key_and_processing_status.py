"""Dedup per mailbox across sources, and the processing state of archived mail.

1. ``ArchivedMail.mailbox_key``: the mailbox as the server knows it (the same for
   every source on one IMAP account or Microsoft 365 mailbox), compared byte for
   byte on MariaDB like the other ledger keys (0002). It replaces the source in
   the unique key: (mailbox_key, sha256).
2. Existing duplicates (a second source on the same account archived its mails
   again) are merged: the oldest document stays; every location of the others
   moves to it, and so do their files it lacks (and their notes; to be extracted
   and indexed again); only then are the duplicate rows deleted. Blobs are content-addressed: nothing leaves the store.
3. ``Document.processing_status`` of archived mail, from what processing left:
   attachments stored → done; a "No space left on device" (or quota) failure →
   pending again, its error cleared (it was an outage, not the mail); the mail
   over the size limit or whose parsing failed → failed permanently, with that
   error; anything else → pending, so the sweep processes it (a mail without
   attachments cannot be told from one whose processing was lost).
4. The new source status "partial".
"""

import datetime as dt
import hashlib

from django.db import migrations, models, transaction
from django.db.models import Count, F
from django.db.models.functions import Greatest

BINARY_KEY = (
    "ALTER TABLE mailsources_archivedmail "
    "MODIFY mailbox_key varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
)


def mailbox_identity(kind, mailbox_key):
    # A copy of mailsources.models.mailbox_identity as of this migration.
    if kind == "imap":
        user, _, host = mailbox_key.rpartition("@")
        identity = f"imap:{user}@{host.strip().rstrip('.').lower()}"
    else:
        identity = f"m365:{mailbox_key.strip().lower()}"
    if len(identity) > 255:
        identity = f"{kind}:sha256:{hashlib.sha256(identity.encode()).hexdigest()}"
    return identity


def binary_key(apps, schema_editor):
    if schema_editor.connection.vendor == "mysql":
        schema_editor.execute(BINARY_KEY)


def fill_mailbox_keys(apps, schema_editor):
    MailSource = apps.get_model("mailsources", "MailSource")
    ArchivedMail = apps.get_model("mailsources", "ArchivedMail")
    for kind in ("imap", "m365"):
        sources = list(MailSource.objects.filter(kind=kind).values_list("pk", flat=True))
        rows = ArchivedMail.objects.filter(source_id__in=sources)
        for mailbox in set(rows.values_list("mailbox", flat=True).distinct()):
            rows.filter(mailbox=mailbox).update(mailbox_key=mailbox_identity(kind, mailbox))


def merge_duplicates(apps, schema_editor):
    MailSource = apps.get_model("mailsources", "MailSource")
    ArchivedMail = apps.get_model("mailsources", "ArchivedMail")
    MailLocation = apps.get_model("mailsources", "MailLocation")
    Document = apps.get_model("archive", "Document")
    DocumentFile = apps.get_model("archive", "DocumentFile")
    alias = schema_editor.connection.alias
    groups = list(
        ArchivedMail.objects.values("mailbox_key", "sha256").annotate(n=Count("id")).filter(n__gt=1).order_by()
    )
    for group in groups:
        with transaction.atomic(using=alias):
            rows = list(
                ArchivedMail.objects.select_for_update()
                .filter(mailbox_key=group["mailbox_key"], sha256=group["sha256"])
                .order_by("document_id", "pk")
            )
            # MariaDB compares the key byte for byte since binary_key; SQLite always did.
            rows = [r for r in rows if r.mailbox_key == group["mailbox_key"] and r.sha256 == group["sha256"]]
            if len(rows) < 2:
                continue
            keep, others = rows[0], rows[1:]
            kept = Document.objects.get(pk=keep.document_id)
            for other in others:
                # Every location first: a location is never lost.
                MailLocation.objects.filter(mail_id=other.pk).update(mail_id=keep.pk)
                if other.verified_at and not keep.verified_at:
                    keep.verified_at = other.verified_at
                    keep.save(update_fields=["verified_at"])
                duplicate_document = other.document_id
                other.delete()
                if duplicate_document == keep.document_id:
                    continue
                if ArchivedMail.objects.filter(document_id=duplicate_document).exists():
                    continue  # still the record of another mail: not a duplicate document
                duplicate = Document.objects.get(pk=duplicate_document)
                # Files the kept document lacks (by role, content and MIME part) move to it.
                # Extracted again (pending): the extraction sweep then re-indexes the kept
                # document with their text and the notes.
                have = set(DocumentFile.objects.filter(document_id=kept.pk).values_list("role", "sha256", "part"))
                changed = False
                for file in DocumentFile.objects.filter(document_id=duplicate.pk).order_by("pk"):
                    if (file.role, file.sha256, file.part) not in have:
                        DocumentFile.objects.filter(pk=file.pk).update(
                            document_id=kept.pk, extraction_status="pending", extraction_attempts=0
                        )
                        have.add((file.role, file.sha256, file.part))
                        changed = True
                if duplicate.notes.strip() and duplicate.notes.strip() not in kept.notes:
                    kept.notes = "\n\n".join(filter(None, [kept.notes.strip(), duplicate.notes.strip()]))
                    Document.objects.filter(pk=kept.pk).update(notes=kept.notes)
                    if not changed:
                        DocumentFile.objects.filter(document_id=kept.pk, role="original").update(
                            extraction_status="pending", extraction_attempts=0
                        )
                # Counted as archived by the source that made the duplicate: it was not new.
                MailSource.objects.filter(pk=other.source_id).update(
                    archived_count=Greatest(F("archived_count") - 1, 0)
                )
                duplicate.delete()  # its remaining files (copies of the kept ones), its index row


def processing_status(apps, schema_editor):
    ArchivedMail = apps.get_model("mailsources", "ArchivedMail")
    Document = apps.get_model("archive", "Document")
    DocumentFile = apps.get_model("archive", "DocumentFile")
    mail = Document.objects.filter(pk__in=ArchivedMail.objects.values("document_id"), processing_status="none")
    with_parts = DocumentFile.objects.filter(role="attachment").values("document_id")
    now = dt.datetime.now(dt.UTC)
    mail.filter(pk__in=with_parts).update(processing_status="done", processing_updated=now)
    for outage in ("[Errno 28]", "[Errno 122]"):  # ENOSPC, EDQUOT
        mail.filter(parse_error__startswith="processing failed: ", parse_error__contains=outage).update(
            processing_status="pending", parse_error="", processing_updated=now - dt.timedelta(days=1)
        )
    for prefix in ("not parsed: ", "processing failed: "):
        mail.filter(parse_error__startswith=prefix).update(
            processing_status="failed_permanent", processing_error=F("parse_error"), processing_updated=now
        )
    # Long enough ago that the first sweep queues them.
    mail.update(processing_status="pending", processing_updated=now - dt.timedelta(days=1))


class Migration(migrations.Migration):
    atomic = False  # MariaDB cannot run DDL inside a transaction; each merge is atomic itself
    dependencies = [
        ("archive", "0006_document_processing_status"),
        ("mailsources", "0004_mailsource_queued_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="archivedmail",
            name="mailbox_key",
            field=models.CharField(default="", max_length=255),
            preserve_default=False,
        ),
        migrations.RunPython(binary_key, migrations.RunPython.noop),
        migrations.RunPython(fill_mailbox_keys, migrations.RunPython.noop),
        migrations.RunPython(merge_duplicates, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="archivedmail", name="uniq_mail_per_mailbox"),
        migrations.AddConstraint(
            model_name="archivedmail",
            constraint=models.UniqueConstraint(fields=("mailbox_key", "sha256"), name="uniq_mail_per_mailbox_key"),
        ),
        migrations.RunPython(processing_status, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="mailsource",
            name="status",
            field=models.CharField(
                choices=[
                    ("idle", "Idle"),
                    ("running", "Running"),
                    ("ok", "OK"),
                    ("partial", "Partly failing"),
                    ("retrying", "Retrying"),
                    ("error", "Stopped: error"),
                    ("disabled", "Disabled"),
                ],
                default="idle",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="mailboxstatus",
            name="status",
            field=models.CharField(
                choices=[
                    ("idle", "Idle"),
                    ("running", "Running"),
                    ("ok", "OK"),
                    ("partial", "Partly failing"),
                    ("retrying", "Retrying"),
                    ("error", "Stopped: error"),
                    ("disabled", "Disabled"),
                ],
                default="idle",
                max_length=16,
            ),
        ),
    ]
