"""Retention: how long documents are kept, legal holds, the deletion lock and expiry.

The rule for a document's retention end (``policies.retention_end``): its
*base date* is the mail date (``Document.date``, the "date" field of other
documents) or, when it has none, the archive time (``Document.created``), taken
as a calendar date in ``TIME_ZONE``. The first enabled policy in order whose
scope matches decides (the default policy after all others; none at all: kept
forever). "From the end of the year" counts from 31 December of the base
date's year, "from the date" from the base date; years and months are added
first (31 January + 1 month = 28/29 February), days last. The retention end is
the last day the document must be kept: it expires on the day after.

Deleting a document goes through one service (``deletion.documents_delete``)
that only an approved expiry list reaches. ``lock`` refuses every other delete
of a Document or DocumentFile (the ORM, querysets, the Django admin, cascades)
while ``RETENTION_DELETION_LOCK`` is on, and a held document always."""
