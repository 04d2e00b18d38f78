"""IMAP mail client on top of IMAPClient (``client.py``).

Knows nothing of Django: the pipeline hands in plain values and gets back raw
message bytes in bounded batches (see ``base.py``).

Cursor (one per folder, JSON-able, handed back unchanged on the next run)::

    {"v": 1,
     "uidvalidity": 1795752011,   # the epoch the UIDs below belong to
     "last_uid": 1234,            # every message with UID <= last_uid is archived
     "uidnext": 1240,             # only in a run's final cursor: UIDNEXT seen at its start
     "highestmodseq": 9876,       # only in a run's final cursor, when CONDSTORE is offered
     "held_since": 1700000000,    # only in a final cursor: oldest INTERNALDATE (epoch seconds)
                                  # of a mail held back by min_age_days, else None
     "resyncing": true}           # present in the cursors of an unfinished resync

``last_uid`` is a *contiguous* watermark: a mail held back by the minimum age
stops it, mails above are still archived and ``known`` (the ledger) keeps them
from being downloaded twice. ``uidnext``/``highestmodseq`` are only written once
a run has listed the whole folder, so a crash in between can never make the
next run skip mails (``folder_sync.py``).
"""

from .client import SECURITY_NONE, SECURITY_STARTTLS, SECURITY_TLS, ImapClient

__all__ = ["SECURITY_NONE", "SECURITY_STARTTLS", "SECURITY_TLS", "ImapClient"]
