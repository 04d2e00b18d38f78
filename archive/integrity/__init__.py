"""Provable integrity: the append-only, hash-chained integrity ledger (every
change of archive content), the audit log (every access and administrative
act), their trusted timestamps (RFC 3161 anchors) and their verification.

Both logs are *chains*: each entry carries the hash of the previous one, and an
entry is appended only through ``archive.integrity.chain.append`` in the same
transaction as the change it records. Nothing in the application updates or
deletes an entry."""
