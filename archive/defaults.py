"""The fields and settings a new archive starts with (used by a data migration
and by tests that flush the database)."""

from typing import Any

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
DEFAULT_GROUP = "Archive"


# Any: a migration passes historical model classes, which have no static type.
def ensure_defaults(field_model: Any, settings_model: Any, group_model: Any) -> None:
    """Idempotent; takes model classes so a migration can pass historical ones."""
    for name, label, type_, internal, reduced, order in DEFAULT_FIELDS:
        field_model.objects.get_or_create(
            name=name,
            defaults={"label": label, "type": type_, "internal": internal, "in_reduced_table": reduced, "order": order},
        )
    filename = field_model.objects.get(name="filename")
    settings_model.objects.get_or_create(pk=1, defaults={"filename_field": filename})
    group_model.objects.get_or_create(name=DEFAULT_GROUP)
