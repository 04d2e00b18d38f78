"""Microsoft 365 mailboxes through Microsoft Graph, built on the ``O365`` package.

One :class:`GraphClient` per (tenant, client id, client secret, mailbox). It authenticates with
the client-credentials flow (application permission ``Mail.Read``; ``Mail.ReadWrite`` for the
move/delete actions), archives per folder with Graph delta queries and downloads each new
message's MIME from ``/messages/{id}/$value``. See /work/shared/GRAPH.md for the facts behind the
choices. One concern per module:

* :mod:`.o365` - the O365 adapter: configurable hosts, pinned TLS trust, tokens in memory and
  their safe renewal, a session that never sleeps on a 429.
* :mod:`.transport` - one request with the mailbox limits (:mod:`mailsources.pacing`), token
  renewal and the Retry-After policy; :mod:`.errors` - what Graph's and Entra's errors mean.
* :mod:`.folders` - folders by path; :mod:`.delta` - delta rounds, their cursors and batches;
  :mod:`.downloads` - MIME downloads running ahead of the pipeline.
* :mod:`.client` - :class:`GraphClient`, the :class:`~mailsources.clients.base.MailClient`.
"""

from mailsources.pacing import RequestGate

from .client import DEFAULT_AUTHORITY_HOST, DEFAULT_GRAPH_URL, GraphClient
from .errors import parse_retry_after
from .transport import GRAPH_RATE_LIMIT, MAX_CONCURRENT_PER_MAILBOX

__all__ = [
    "DEFAULT_AUTHORITY_HOST",
    "DEFAULT_GRAPH_URL",
    "GRAPH_RATE_LIMIT",
    "MAX_CONCURRENT_PER_MAILBOX",
    "GraphClient",
    "RequestGate",
    "parse_retry_after",
]
