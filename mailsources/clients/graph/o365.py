"""The ``O365`` package, adapted: it stays the client's dependency for authentication and the
connection, and these subclasses work around what it hard-codes (see /work/shared/GRAPH.md).

* ``O365`` hard-codes Microsoft's hosts, so :class:`GraphProtocol` / :class:`GraphConnection`
  make the Graph base URL and the Entra authority configurable (sovereign clouds, the tests'
  local fake) and switch msal's instance discovery off for non-Microsoft authority hosts.
* Tokens live in memory (:class:`MemoryTokenBackend`, never ``./o365_token.txt``). O365 2.1.10
  + msal >= 1.32 crash renewing an expired client-credentials token (msal drops the expired token
  from its cache, O365 then asks msal for a token with ``scopes=None``): the backend always knows
  the Graph scope, and the connection asks msal (cache hit or token request) whenever its own
  clock says the token is due, so a worker that lives for days keeps working.
* O365's session retries 429/5xx inside ``requests`` honouring ``Retry-After`` up to 6 hours (a
  blocked worker) and crashes on fractional values; it is replaced by a session that retries
  connects only (statuses are the transport's job).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from msal import ConfidentialClientApplication
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msal.token_cache import TokenCache
from O365 import Account
from O365.connection import Connection, MSGraphProtocol
from O365.utils import BaseTokenBackend
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# National clouds use their own Graph host as token audience; anything else (a test fake, a
# proxy) still asks Entra for a token for Microsoft's global Graph.
_NATIONAL_GRAPH_HOSTS = {
    "graph.microsoft.com",
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
}
# msal treats a token with less than this left as expired (and asks Entra for a new one).
_MSAL_EXPIRY_MARGIN = 300.0


def graph_scope(graph_url: str) -> str:
    host = (urlsplit(graph_url).hostname or "").lower()
    if host in _NATIONAL_GRAPH_HOSTS:
        return f"https://{host}/.default"
    return "https://graph.microsoft.com/.default"


class PinnedSession(requests.Session):
    """A session whose CA bundle and timeout the environment cannot override.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` win over ``Session.verify``; a
    per-request ``verify`` wins over them, so a configured ``ca_bundle`` is passed every time.
    """

    def __init__(self, ca_bundle: str | None, timeout: Any) -> None:
        super().__init__()
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        if ca_bundle:
            self.verify = ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout  # msal and O365 default to waiting forever
        if self._ca_bundle and kwargs.get("verify") in (None, True):
            kwargs["verify"] = self._ca_bundle
        return super().request(method, url, *args, **kwargs)


def connect_only_adapter(pool_maxsize: int) -> HTTPAdapter:
    # Retry only connections that never reached the server (safe for POST too); statuses and
    # Retry-After are the transport's job, so a 429 never blocks inside requests.
    retry = Retry(
        total=2,
        connect=2,
        read=0,
        status=0,
        other=0,
        redirect=2,
        backoff_factor=0.2,
        status_forcelist=(),
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    return HTTPAdapter(max_retries=retry, pool_connections=2, pool_maxsize=pool_maxsize)


class MemoryTokenBackend(BaseTokenBackend):  # type: ignore[misc]  # O365 is untyped
    """msal's token cache in memory, with the Graph scope always known (the renewal fix)."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self._scope = scope

    def __repr__(self) -> str:
        return "MemoryTokenBackend"

    def load_token(self) -> bool:
        return True

    def save_token(self, force: bool = False) -> bool:
        return True

    def get_token_scopes(self, *, username: str | None = None, remove_reserved: bool = False) -> list[str] | None:
        # msal >= 1.32 deletes an expired access token while searching the cache, so O365's
        # refresh_token() found no scopes and called acquire_token_for_client(scopes=None)
        # (AssertionError) on the first request after 60-90 minutes.
        return super().get_token_scopes(username=username, remove_reserved=remove_reserved) or [self._scope]

    def drop_access_tokens(self) -> None:
        for entry in list(self.search(TokenCache.CredentialType.ACCESS_TOKEN)):
            self.remove_at(entry)


class TokenError(Exception):
    """msal answered a token request with an error dict."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(str(result.get("error")))
        self.result = result


class GraphProtocol(MSGraphProtocol):  # type: ignore[misc]  # O365 is untyped
    """MSGraphProtocol with a configurable base URL (it hard-codes graph.microsoft.com)."""

    def __init__(self, graph_url: str) -> None:
        super().__init__(api_version="v1.0", default_resource="", timezone="UTC")
        self.protocol_url = graph_url.rstrip("/") + "/"
        self.service_url = f"{self.protocol_url}{self.api_version}/"


class GraphConnection(Connection):  # type: ignore[misc]  # O365 is untyped
    """O365's Connection with a configurable authority, pinned TLS trust and safe token renewal.

    ``clock`` (monotonic seconds) decides when the token is due for renewal; tests advance it
    instead of waiting for a token to expire.
    """

    # Set by O365's Connection; declared here because O365 is untyped.
    _msal_client: ConfidentialClientApplication | None
    session: requests.Session | None

    def __init__(
        self,
        credentials: tuple[str, str],
        *,
        authority_host: str,
        ca_bundle: str | None,
        scope: str,
        pool_maxsize: int,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(credentials, **kwargs)
        self._msal_authority = f"{authority_host.rstrip('/')}/{self.tenant_id}"
        self._ca_bundle = ca_bundle
        self._scope = scope
        self._pool_maxsize = pool_maxsize
        self._clock = clock
        self._token_lock = threading.Lock()
        self._bearer: str | None = None
        self._bearer_fresh_until = 0.0  # until then the token needs no msal call
        self._bearer_expires_at = 0.0  # from then msal itself would no longer use it

    @property
    def msal_client(self) -> ConfidentialClientApplication:
        if self._msal_client is None:
            host = (urlsplit(self._msal_authority).hostname or "").lower()
            extra: dict[str, Any] = {}
            if host not in WELL_KNOWN_AUTHORITY_HOSTS:
                # msal would otherwise validate the host at login.microsoftonline.com.
                extra["instance_discovery"] = False
            self._msal_client = ConfidentialClientApplication(
                client_id=self.auth[0],
                client_credential=self.auth[1],
                authority=self._msal_authority,
                token_cache=self.token_backend,
                http_client=PinnedSession(self._ca_bundle, self.timeout),
                **extra,
            )
        return self._msal_client

    def get_session(self, load_token: bool = False) -> requests.Session:
        session = PinnedSession(self._ca_bundle, self.timeout)
        session.proxies = self.proxy
        adapter = connect_only_adapter(self._pool_maxsize)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        if self._bearer:
            session.headers["Authorization"] = f"Bearer {self._bearer}"
        return session

    def ensure_token(self, *, rejected: str | None = None) -> str:
        """Return a valid bearer token: msal answers from its cache and only asks Entra when less
        than 5 minutes remain, or when Graph ``rejected`` the current token (revoked, clock
        skew) - once, however many threads saw that token fail."""
        with self._token_lock:
            now = self._clock()
            if rejected is None and self._bearer and now < self._bearer_fresh_until:
                # What msal would answer from its cache, without its per-call cost (every request).
                return self._bearer
            backend = self.token_backend
            rejected_now = rejected is not None and rejected == self._bearer
            expired = self._bearer is not None and now >= self._bearer_expires_at
            if (rejected_now or expired) and isinstance(backend, MemoryTokenBackend):
                # Expired by this clock: msal (which reads the wall clock) would renew it too.
                backend.drop_access_tokens()
            self._bearer_fresh_until = 0.0
            result = self.msal_client.acquire_token_for_client(scopes=[self._scope])
            if not result or "access_token" not in result:
                raise TokenError(result or {})
            self._use_bearer(result["access_token"])
            self._plan_renewal(result)
            assert self._bearer is not None
            return self._bearer

    def _use_bearer(self, token: str) -> None:
        if self.session is None:
            self.session = self.get_session()
        if token != self._bearer:
            self._bearer = token
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _plan_renewal(self, result: dict[str, Any]) -> None:
        # msal renews 5 minutes before expiry (earlier when Entra says refresh_in): ask it again then.
        now = self._clock()
        expires_for = float(result.get("expires_in") or 0) - _MSAL_EXPIRY_MARGIN
        fresh_for = expires_for
        if result.get("refresh_in"):
            fresh_for = min(fresh_for, float(result["refresh_in"]))
        self._bearer_fresh_until = now + max(0.0, fresh_for)
        self._bearer_expires_at = now + max(0.0, expires_for)

    def token_roles(self) -> set[str] | None:
        """The application permissions in the current token (None when it cannot be read).

        Only for early, friendly error messages: Graph enforces them anyway."""
        try:
            payload = (self._bearer or "").split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return None
        roles = claims.get("roles") if isinstance(claims, dict) else None
        return {str(r) for r in roles} if isinstance(roles, list) else None

    def refresh_token(self) -> bool:
        # O365's own renewal path (unused by GraphClient, kept safe for any O365 helper).
        self.ensure_token(rejected=self._bearer)
        return True

    def oauth_request(self, url: str, method: str, **kwargs: Any) -> requests.Response:
        if "Authorization" not in (kwargs.get("headers") or {}):  # the transport passes its own
            self.ensure_token()
        # ignore40x=False: the transport handles 401 itself (O365's handler is the buggy refresh).
        response: requests.Response = self._internal_request(self.session, url, method, ignore40x=False, **kwargs)
        return response


class GraphAccount(Account):  # type: ignore[misc]  # O365 is untyped
    connection_constructor = GraphConnection


class _RedactBearer(logging.Filter):
    """O365 logs the session headers at DEBUG, bearer token included."""

    _pattern = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Bearer" in message:
            record.msg = self._pattern.sub(r"\1[redacted]", message)
            record.args = None
        return True


_O365_LOG_FILTER = _RedactBearer()
for _name in ("O365.connection",):
    if _O365_LOG_FILTER not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_O365_LOG_FILTER)
