"""On MariaDB, compare folder names, mailbox addresses and message locations
byte for byte, and index locations for lookup.

MariaDB's default utf8mb4 collation is case-insensitive: two IMAP folders whose
names differ only in case ("Archive", "archive"), or two Graph ids that differ
only in case, would share ledger rows — and a mail could be taken for one
already archived. SQLite compares bytes already. The unique key over
(source, mailbox, folder, epoch, location) is too long for a B-tree, so MariaDB
keeps it as a hash that lookups cannot use: the prefix index serves them.
"""

from django.db import migrations

BINARY = "utf8mb4_bin"

FORWARD = [
    f"""ALTER TABLE mailsources_maillocation
        MODIFY mailbox varchar(255) CHARACTER SET utf8mb4 COLLATE {BINARY} NOT NULL,
        MODIFY folder varchar(500) CHARACTER SET utf8mb4 COLLATE {BINARY} NOT NULL,
        MODIFY epoch varchar(32) CHARACTER SET utf8mb4 COLLATE {BINARY} NOT NULL,
        MODIFY location varchar(255) CHARACTER SET utf8mb4 COLLATE {BINARY} NOT NULL,
        ADD INDEX maillocation_lookup (source_id, location(100))""",
    f"""ALTER TABLE mailsources_foldercursor
        MODIFY mailbox varchar(255) CHARACTER SET utf8mb4 COLLATE {BINARY} NOT NULL,
        MODIFY folder varchar(500) CHARACTER SET utf8mb4 COLLATE {BINARY} NOT NULL""",
    f"""ALTER TABLE mailsources_archivedmail
        MODIFY mailbox varchar(255) CHARACTER SET utf8mb4 COLLATE {BINARY} NOT NULL""",
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "mysql":
        return
    for statement in FORWARD:
        schema_editor.execute(statement)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "mysql":
        schema_editor.execute("ALTER TABLE mailsources_maillocation DROP INDEX maillocation_lookup")


class Migration(migrations.Migration):
    atomic = False  # MariaDB cannot run DDL inside a transaction
    dependencies = [("mailsources", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
