"""Exports with proof (issue 13): the original bytes of selected documents, a
manifest, the matching ledger excerpt and timestamp tokens and a standalone
verifier (``verifier/verify_export.py``); MBOX per mailbox; the GoBD Z3 tables
(``z3.py``); the generated procedure documentation (``procedure.py``)."""
