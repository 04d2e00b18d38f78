from django.db import migrations

from archive.defaults import ensure_defaults


def create_defaults(apps, schema_editor):
    ensure_defaults(
        apps.get_model("archive", "FieldDefinition"),
        apps.get_model("archive", "ArchiveSettings"),
        apps.get_model("auth", "Group"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("archive", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
