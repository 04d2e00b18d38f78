"""The search index's state (``SearchIndexState``): on MariaDB, the entries
that exist now were written without the month of their document date, so
the state says "pending" for ``archive.search.upgrade`` to check and rewrite
them (and any that a worker of the old code writes until it is restarted).
SQLite's entries need no month tokens (FTS5 does not use them): nothing is
pending there."""

from django.db import migrations, models


def mark_pending(apps, schema_editor):
    alias = schema_editor.connection.alias
    entries = apps.get_model("archive", "SearchEntry").objects.using(alias)
    state = apps.get_model("archive", "SearchIndexState").objects.using(alias)
    pending = schema_editor.connection.vendor == "mysql" and entries.exists()
    state.create(pk=1, pending=pending, checked_through=0)


class Migration(migrations.Migration):
    dependencies = [
        ("archive", "0010_search_entry_binary_collation"),
    ]

    operations = [
        migrations.CreateModel(
            name="SearchIndexState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("pending", models.BooleanField(default=False)),
                ("checked_through", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(mark_pending, migrations.RunPython.noop),
    ]
