"""Which columns the WebDMS table shows, from the archive settings."""

from __future__ import annotations

from archive.models import ArchiveSettings, FieldDefinition, PrimaryUsage

# The default columns of the reduced table for each primary usage.
USAGE_COLUMNS: dict[str, tuple[str, ...]] = {
    PrimaryUsage.DOCUMENTS: ("number", "title", "date", "owner"),
    PrimaryUsage.MAILS: ("number", "from", "subject", "date"),
    PrimaryUsage.MEDIA: ("number", "filename", "title", "date"),
}


def table_columns(
    settings: ArchiveSettings, definitions: list[FieldDefinition], *, reduced: bool
) -> list[FieldDefinition]:
    columns = list(definitions)
    if reduced:
        columns = [f for f in columns if f.in_reduced_table]
        if settings.hide_internal_in_reduced:
            columns = [f for f in columns if not f.internal]
    if settings.suppress_title:
        columns = [f for f in columns if f.name != "title"]
    return columns
