"""A local fake of Microsoft Entra ID (v2.0) and Microsoft Graph mail.

Written from Microsoft's documentation (see /work/shared/GRAPH.md, checklist C1-C9) so the
product's Graph client can be tested through its real code paths: the client is only
*configured* to talk to this server (authority host, Graph base URL, CA bundle).

* HTTPS on 127.0.0.1 with a throwaway CA made by ``trustme`` (``fake.ca_pem`` is its PEM path;
  msal insists on https for the authority and the token endpoint).
* Entra: OpenID discovery, instance metadata, the client-credentials token endpoint with
  Entra's real error bodies (AADSTS7000215, 7000222, 700016, 90002, ...), JWT-shaped tokens with
  a configurable lifetime, server-side expiry and revocation.
* Graph mail: ``/v1.0/users/{u}/mailFolders`` (+ ``childFolders``, well-known names, hidden and
  search folders), message listing with ``$top/$skip/$select/$filter/$orderby`` and
  ``@odata.nextLink``, single messages, ``$value`` MIME, attachments, per-folder ``delta`` rounds
  with ``@removed`` entries and ``$skiptoken``/``$deltatoken``, ``410`` resets, immutable vs
  regular ids (``Prefer: IdType="ImmutableId"``), move/copy/delete.
* Faults: an error catalogue injectable per path/mailbox/method N times, with ``Retry-After`` as
  integer, fraction, HTTP-date or absent; per-request latency and slow bodies.
* Throttling per app + mailbox: at most ``max_concurrent`` requests in flight (the next one gets
  ``429 ApplicationThrottled``) and a sliding window of ``window_requests`` per
  ``window_seconds`` (scale it down for tests), all counted in :meth:`GraphFake.stats`.

Use::

    with GraphFake() as fake:
        tenant = fake.add_tenant(domains=["contoso.com"])
        client_id, secret = fake.add_app(tenant)
        fake.add_mailbox("alice@contoso.com", tenant=tenant)
        fake.add_message("alice@contoso.com", "inbox", make_mime(subject="Hi"))
        ... GraphClient(..., authority_host=fake.base_url, graph_url=fake.base_url,
                        ca_bundle=fake.ca_pem)

State lives in memory behind one lock; 10,000 messages are cheap (no per-request scans other
than sorting a folder's listing).
"""

from .clock import ManualClock
from .fake import GraphFake
from .mime import iter_mime_batch, make_mime
from .model import ErrorRule, FakeStats, RequestRecord
from .server import free_port

__all__ = [
    "ErrorRule",
    "FakeStats",
    "GraphFake",
    "ManualClock",
    "RequestRecord",
    "free_port",
    "iter_mime_batch",
    "make_mime",
]
