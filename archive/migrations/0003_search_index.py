"""The full-text index: one ``SearchEntry`` row per document, indexed by the
database in use — an FTS5 table on SQLite, an InnoDB FULLTEXT index on MariaDB."""

import django.db.models.deletion
from django.db import migrations, models

FTS5_TABLE = "archive_searchentry_fts"

SQLITE_FORWARD = [
    # External content: the token stream lives once, in archive_searchentry;
    # the FTS5 table holds only the inverted index. The text is normalised in
    # Python (archive/search/tokens.py), so the tokenizer only splits on spaces;
    # "_" must stay inside tokens (field tokens "from_alice", padded "ag_").
    f"""CREATE VIRTUAL TABLE {FTS5_TABLE} USING fts5(
        text, content='archive_searchentry', content_rowid='document_id',
        tokenize="unicode61 remove_diacritics 0 tokenchars '_'"
    )""",
    f"""CREATE TRIGGER archive_searchentry_ai AFTER INSERT ON archive_searchentry BEGIN
        INSERT INTO {FTS5_TABLE}(rowid, text) VALUES (new.document_id, new.text);
    END""",
    f"""CREATE TRIGGER archive_searchentry_ad AFTER DELETE ON archive_searchentry BEGIN
        INSERT INTO {FTS5_TABLE}({FTS5_TABLE}, rowid, text) VALUES ('delete', old.document_id, old.text);
    END""",
    f"""CREATE TRIGGER archive_searchentry_au AFTER UPDATE ON archive_searchentry BEGIN
        INSERT INTO {FTS5_TABLE}({FTS5_TABLE}, rowid, text) VALUES ('delete', old.document_id, old.text);
        INSERT INTO {FTS5_TABLE}(rowid, text) VALUES (new.document_id, new.text);
    END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS archive_searchentry_au",
    "DROP TRIGGER IF EXISTS archive_searchentry_ad",
    "DROP TRIGGER IF EXISTS archive_searchentry_ai",
    f"DROP TABLE IF EXISTS {FTS5_TABLE}",
]
MYSQL_FORWARD = [
    # Stopwords are fixed per index when it is created: without them "the",
    # "an", "was" … are searchable too (in phrases above all). Short words are
    # padded to 3 characters by the tokenizer (innodb_ft_min_token_size).
    "SET SESSION innodb_ft_enable_stopword = OFF",
    "ALTER TABLE archive_searchentry ADD FULLTEXT INDEX archive_searchentry_text_ft (text)",
]
MYSQL_BACKWARD = ["ALTER TABLE archive_searchentry DROP INDEX archive_searchentry_text_ft"]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("archive", "0002_default_fields"),
    ]

    operations = [
        migrations.CreateModel(
            name="SearchEntry",
            fields=[
                (
                    "document",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="search_entry",
                        serialize=False,
                        to="archive.document",
                    ),
                ),
                ("text", models.TextField(blank=True)),
                ("indexed", models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "mysql": MYSQL_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "mysql": MYSQL_BACKWARD}),
            atomic=False,  # MariaDB DDL cannot run inside a transaction
        ),
    ]
