"""MariaDB: the search entry's text compared byte for byte (``utf8mb4_bin``).

The text is only ever tokens that ``archive.search.tokens`` folded already
(lower case, no accents), and the queries are folded the same way, so the
collation's own case and accent folding adds nothing — but InnoDB's FULLTEXT
parser applies it to every token it indexes: with ``utf8mb4_unicode_ci`` an
entry of ~4,300 tokens cost MariaDB ~26 ms of CPU to index, with
``utf8mb4_bin`` ~14 ms (the bench's mails, bench/README.md). The FULLTEXT
index is dropped and built again around the change, with stopwords off as
migration 0003 built it. SQLite (FTS5) is not concerned."""

from django.db import migrations

FORWARD = [
    "SET SESSION innodb_ft_enable_stopword = OFF",
    "ALTER TABLE archive_searchentry DROP INDEX archive_searchentry_text_ft",
    "ALTER TABLE archive_searchentry MODIFY `text` LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL",
    "ALTER TABLE archive_searchentry ADD FULLTEXT INDEX archive_searchentry_text_ft (`text`)",
]
BACKWARD = [
    "SET SESSION innodb_ft_enable_stopword = OFF",
    "ALTER TABLE archive_searchentry DROP INDEX archive_searchentry_text_ft",
    "ALTER TABLE archive_searchentry MODIFY `text` LONGTEXT NOT NULL",  # the table's default collation
    "ALTER TABLE archive_searchentry ADD FULLTEXT INDEX archive_searchentry_text_ft (`text`)",
]


def _mysql(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "mysql":
            for sql in statements:
                schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    atomic = False  # DDL on MariaDB commits by itself

    dependencies = [
        ("archive", "0009_file_role_source"),
    ]

    operations = [migrations.RunPython(_mysql(FORWARD), _mysql(BACKWARD))]
