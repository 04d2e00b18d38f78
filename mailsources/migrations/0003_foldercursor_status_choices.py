"""FolderCursor.status becomes a choice (CursorStatus). It was free text; the code
only ever wrote "ok" and "error": any other value becomes "error" when the row
carries a message, else "ok"."""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

KNOWN = ("ok", "error")


def map_free_text(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    FolderCursor = apps.get_model("mailsources", "FolderCursor")
    unknown = FolderCursor.objects.exclude(status__in=KNOWN)
    unknown.exclude(status_message="").update(status="error")
    unknown.filter(status_message="").update(status="ok")


class Migration(migrations.Migration):
    dependencies = [
        ("mailsources", "0002_binary_collation_for_ledger_keys"),
    ]

    operations = [
        migrations.RunPython(map_free_text, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="foldercursor",
            name="status",
            field=models.CharField(choices=[("ok", "OK"), ("error", "Error")], default="ok", max_length=16),
        ),
    ]
