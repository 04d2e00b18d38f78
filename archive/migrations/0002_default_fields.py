from django.db import migrations

# (name, label, type, internal, in_reduced_table, order)
DEFAULT_FIELDS = [
    ("number", "Number", "number", True, True, 10),
    ("title", "Title", "text", False, True, 20),
    ("date", "Date", "date", False, True, 30),
    ("filename", "File name", "text", False, False, 40),
    ("from", "From", "text", False, True, 50),
    ("to", "To", "text", False, False, 60),
    ("cc", "CC", "text", False, False, 70),
    ("subject", "Subject", "text", False, True, 80),
    ("owner", "Owner", "text", True, True, 900),
    ("created", "Created", "date", True, False, 910),
    ("modified", "Modified", "date", True, False, 920),
]


def create_defaults(apps, schema_editor):
    FieldDefinition = apps.get_model("archive", "FieldDefinition")
    ArchiveSettings = apps.get_model("archive", "ArchiveSettings")
    Group = apps.get_model("auth", "Group")
    for name, label, type_, internal, reduced, order in DEFAULT_FIELDS:
        FieldDefinition.objects.get_or_create(
            name=name,
            defaults={"label": label, "type": type_, "internal": internal,
                      "in_reduced_table": reduced, "order": order},
        )
    filename = FieldDefinition.objects.get(name="filename")
    ArchiveSettings.objects.get_or_create(pk=1, defaults={"filename_field": filename})
    Group.objects.get_or_create(name="Archive")


class Migration(migrations.Migration):
    dependencies = [
        ("archive", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
