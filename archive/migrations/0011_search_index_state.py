"""The search index's state (``SearchIndexState``): on MariaDB, the entries
that exist now were written without the month of their document date, so
they are marked for ``archive.search.upgrade`` to rewrite. SQLite's entries
need no month tokens (FTS5 does not use them) and nothing is marked."""

from django.db import migrations, models
from django.db.models import Max


def mark_stale(apps, schema_editor):
    entries = apps.get_model("archive", "SearchEntry").objects.using(schema_editor.connection.alias)
    state = apps.get_model("archive", "SearchIndexState").objects.using(schema_editor.connection.alias)
    highest = entries.aggregate(n=Max("document_id"))["n"] if schema_editor.connection.vendor == "mysql" else None
    state.create(pk=1, stale_through=highest or 0)


class Migration(migrations.Migration):
    dependencies = [
        ("archive", "0010_search_entry_binary_collation"),
    ]

    operations = [
        migrations.CreateModel(
            name="SearchIndexState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("stale_through", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(mark_stale, migrations.RunPython.noop),
    ]
