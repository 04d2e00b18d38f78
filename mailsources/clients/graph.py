"""Microsoft 365 mailboxes through Microsoft Graph, built on the ``O365`` package.

One :class:`GraphClient` per (tenant, client id, client secret, mailbox). It authenticates with
the client-credentials flow (application permission ``Mail.Read``; ``Mail.ReadWrite`` for the
move/delete actions), archives per folder with Graph delta queries and downloads each new
message's MIME from ``/messages/{id}/$value``. See /work/shared/GRAPH.md for the facts behind the
choices below; the short version:

* ``O365`` hard-codes Microsoft's hosts, so :class:`_GraphProtocol` / :class:`_GraphConnection`
  make the Graph base URL and the Entra authority configurable (sovereign clouds, the tests'
  local fake) and switch msal's instance discovery off for non-Microsoft authority hosts.
* Tokens live in memory (:class:`_MemoryTokenBackend`, never ``./o365_token.txt``). O365 2.1.10
  + msal >= 1.32 crash renewing an expired client-credentials token (msal drops the expired token
  from its cache, O365 then asks msal for a token with ``scopes=None``): the backend always knows
  the Graph scope, and the connection asks msal (cache hit or token request) before every
  request, so a worker that lives for days keeps working.
* O365's session retries 429/5xx inside ``requests`` honouring ``Retry-After`` up to 6 hours (a
  blocked worker) and crashes on fractional values; it is replaced by a session that retries
  connects only. :meth:`GraphClient._request` honours ``Retry-After`` in every form (integer,
  fraction, HTTP-date, absent -> exponential backoff): short waits sleep, long ones raise
  ``TransientSourceError(retry_after=...)`` so the task is rescheduled instead of blocking.
* Graph allows 4 concurrent requests and 10,000 requests per 10 minutes per app + mailbox. A
  process-wide limiter per mailbox keeps at most ``max_concurrent`` requests in flight and paces
  requests evenly under the window (instead of hammering and collecting 429s). Across worker
  processes, pass ``request_gate``: a callable ``gate(key) -> context manager`` entered around
  every Graph request, e.g. a Redis counting semaphore (``ZADD`` of a lease id scored by expiry,
  ``ZREMRANGEBYSCORE`` of stale leases, admit when ``ZCARD`` <= 4, else sleep and retry; ``ZREM``
  on exit) combined with a shared GCRA limiter on the same key.
* Every request has a timeout; errors are classified from Graph's ``error.code`` (never from the
  message) into :class:`TransientSourceError` / :class:`PermanentSourceError` with a stable
  ``code``. The client secret never appears in an exception or a log line.

Delta cursor (``FolderBatch.cursor``, JSON)::

    {"v": 1, "folder_id": "<Graph folder id>",
     "delta_link": "<@odata.deltaLink>"      # round complete: the next run starts here
       or "next_link": "<@odata.nextLink>",  # mid-round: resume here (after a crash/timeout)
     "resync": true,                          # only mid-round, when the round is a resync
     "pending": {"<immutable id>": "<receivedDateTime>"}}  # only with min_age_days > 0

Why intermediate pages may carry the nextLink: the pipeline stores a batch's cursor only after
its messages are committed, so a crash between pages resumes at the first uncommitted page. If
that skip token has expired Graph answers 410 and the folder is resynced from scratch (immutable
ids and the ledger make the repeat a no-op). The deltaLink is handed out only with the last page
of a round, so it is never stored before every message of the round is. A page is handed out in
batches of at most ``max_batch_messages`` / ``max_batch_bytes``; the earlier parts carry the
cursor that re-reads the same page. So that the network never waits for the database, the next
page is read (and checked with ``known``) before a page's last batch is handed out, and
downloads run ahead of the batches, up to ``max_batch_bytes`` of finished MIME not yet taken;
an id fetched earlier in the same run is not fetched again when a later page replays it. Mail
younger than ``min_age_days`` is remembered in ``pending`` (the delta round moves past it) and
fetched by id once it is old enough; ``@removed`` drops it.

``known("", ids)`` should answer across the whole mailbox for Graph (immutable ids are unique per
mailbox and survive moves between folders), so a moved mail is not downloaded again; such ids are
reported in ``FolderBatch.known_locations`` so the pipeline can record the new location.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from msal import ConfidentialClientApplication
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msal.exceptions import MsalError
from msal.token_cache import TokenCache
from O365 import Account
from O365.connection import Connection, MSGraphProtocol
from O365.utils import BaseTokenBackend
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .base import (
    ConnectionReport,
    FetchedMessage,
    FolderBatch,
    FolderInfo,
    KnownFilter,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)

log = logging.getLogger(__name__)

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
# Graph's Outlook limits per app + mailbox (learn.microsoft.com/graph/throttling-limits).
MAX_CONCURRENT_PER_MAILBOX = 4
GRAPH_RATE_LIMIT: tuple[int, float] = (10_000, 600.0)

# National clouds use their own Graph host as token audience; anything else (a test fake, a
# proxy) still asks Entra for a token for Microsoft's global Graph.
_NATIONAL_GRAPH_HOSTS = {
    "graph.microsoft.com",
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
}
_IMMUTABLE_IDS = 'IdType="ImmutableId"'
_DELTA_SELECT = "id,receivedDateTime"  # the minimum: ids to fetch, dates for min_age_days
_RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# OAuth 2.0 / Entra token errors that retrying cannot fix (RFC 6749 5.2 and Entra's own).
_OAUTH_PERMANENT_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_tenant",
    "invalid_resource",
    "access_denied",
}
_DELTA_RESET_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}

# A callable entered around every Graph request; the argument names the app + mailbox.
RequestGate = Callable[[str], contextlib.AbstractContextManager[Any]]


def _graph_scope(graph_url: str) -> str:
    host = (urlsplit(graph_url).hostname or "").lower()
    if host in _NATIONAL_GRAPH_HOSTS:
        return f"https://{host}/.default"
    return "https://graph.microsoft.com/.default"


# ---------------------------------------------------------------------------------------------
# O365 plumbing
# ---------------------------------------------------------------------------------------------


class _PinnedSession(requests.Session):
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

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout  # msal and O365 default to waiting forever
        if self._ca_bundle and kwargs.get("verify") in (None, True):
            kwargs["verify"] = self._ca_bundle
        return super().request(method, url, *args, **kwargs)


def _connect_only_adapter() -> HTTPAdapter:
    # Retry only connections that never reached the server (safe for POST too); statuses and
    # Retry-After are GraphClient._request's job, so a 429 never blocks inside requests.
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
    return HTTPAdapter(max_retries=retry, pool_connections=2, pool_maxsize=MAX_CONCURRENT_PER_MAILBOX * 2)


class _MemoryTokenBackend(BaseTokenBackend):
    """msal's token cache in memory, with the Graph scope always known (the renewal fix)."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self._scope = scope

    def __repr__(self) -> str:
        return "_MemoryTokenBackend"

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


class _TokenError(Exception):
    """msal answered a token request with an error dict."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(str(result.get("error")))
        self.result = result


class _GraphProtocol(MSGraphProtocol):
    """MSGraphProtocol with a configurable base URL (it hard-codes graph.microsoft.com)."""

    def __init__(self, graph_url: str) -> None:
        super().__init__(api_version="v1.0", default_resource="", timezone="UTC")
        self.protocol_url = graph_url.rstrip("/") + "/"
        self.service_url = f"{self.protocol_url}{self.api_version}/"


class _GraphConnection(Connection):
    """O365's Connection with a configurable authority, pinned TLS trust and safe token renewal."""

    def __init__(
        self,
        credentials: tuple[str, str],
        *,
        authority_host: str,
        ca_bundle: str | None,
        scope: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(credentials, **kwargs)
        self._msal_authority = f"{authority_host.rstrip('/')}/{self.tenant_id}"
        self._ca_bundle = ca_bundle
        self._scope = scope
        self._token_lock = threading.Lock()
        self._bearer: str | None = None
        self._bearer_fresh_until = 0.0  # monotonic; until then the token needs no msal call

    @property
    def msal_client(self) -> ConfidentialClientApplication:  # type: ignore[override]
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
                http_client=_PinnedSession(self._ca_bundle, self.timeout),
                **extra,
            )
        return self._msal_client

    def get_session(self, load_token: bool = False) -> requests.Session:
        session = _PinnedSession(self._ca_bundle, self.timeout)
        session.proxies = self.proxy
        adapter = _connect_only_adapter()
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
            if rejected is None and self._bearer and time.monotonic() < self._bearer_fresh_until:
                # What msal would answer from its cache, without its per-call cost (every request).
                return self._bearer
            backend = self.token_backend
            if rejected is not None and rejected == self._bearer and isinstance(backend, _MemoryTokenBackend):
                backend.drop_access_tokens()
            self._bearer_fresh_until = 0.0
            result = self.msal_client.acquire_token_for_client(scopes=[self._scope])
            if not result or "access_token" not in result:
                raise _TokenError(result or {})
            if self.session is None:
                self.session = self.get_session()
            if result["access_token"] != self._bearer:
                self._bearer = result["access_token"]
                self.session.headers["Authorization"] = f"Bearer {self._bearer}"
            # msal renews 5 minutes before expiry (earlier when Entra says refresh_in): ask it again then.
            fresh_for = float(result.get("expires_in") or 0) - 300
            if result.get("refresh_in"):
                fresh_for = min(fresh_for, float(result["refresh_in"]))
            self._bearer_fresh_until = time.monotonic() + max(0.0, fresh_for)
            return self._bearer

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
        if "Authorization" not in (kwargs.get("headers") or {}):  # GraphClient passes its own
            self.ensure_token()
        # ignore40x=False: GraphClient handles 401 itself (O365's handler is the buggy refresh).
        return self._internal_request(self.session, url, method, ignore40x=False, **kwargs)


class _GraphAccount(Account):
    connection_constructor = _GraphConnection


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


# ---------------------------------------------------------------------------------------------
# Per-mailbox limiter
# ---------------------------------------------------------------------------------------------


class _MailboxLimiter:
    """≤ ``max_concurrent`` requests in flight and evenly paced requests, for one app + mailbox.

    Pacing is GCRA: requests are spaced by ``interval`` with a burst of ``max_concurrent``. In
    any ``window`` at most ``limit`` requests may arrive at Graph; sends are planned as if the
    window were longer by a margin (1 % of it, at least 0.25 s) that absorbs the difference
    between when we send and when Graph counts - 99 % of the ceiling at Graph's 600 s window.
    A 429's Retry-After pauses every thread of the mailbox.
    """

    def __init__(self, max_concurrent: int, rate_limit: tuple[int, float] | None) -> None:
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self._burst = max_concurrent
        self._interval = 0.0
        if rate_limit is not None:
            limit, window = rate_limit
            margin = max(window * 0.01, 0.25)
            self._interval = (window + margin) / max(1, limit - max_concurrent)
        self._tat = 0.0
        self._paused_until = 0.0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        # Pace first, then take a concurrency slot: a thread sleeping until its send time must
        # not hold one of the 4 slots (that alone cost ~15 % of the ceiling). A wait for a slot
        # only delays a send, by about one request's latency, which the window margin absorbs.
        self._pace()
        with self._slots:
            yield

    def wait_turn(self) -> None:
        """Sleep until this process may send (pacing, a 429's pause), holding no slot."""
        self._pace()

    def concurrency(self) -> threading.BoundedSemaphore:
        """One of the ``max_concurrent`` slots, as a context manager."""
        return self._slots

    def _pace(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._paused_until)
            send_at = start
            if self._interval:
                tat = max(self._tat, start)
                send_at = max(start, tat - self._interval * (self._burst - 1))
                self._tat = tat + self._interval
        if send_at > now:
            time.sleep(send_at - now)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)


_LIMITERS: dict[tuple[Any, ...], _MailboxLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def _limiter_for(key: tuple[Any, ...], max_concurrent: int, rate_limit: tuple[int, float] | None) -> _MailboxLimiter:
    with _LIMITERS_LOCK:
        full_key = (*key, max_concurrent, rate_limit)
        limiter = _LIMITERS.get(full_key)
        if limiter is None:
            limiter = _LIMITERS[full_key] = _MailboxLimiter(max_concurrent, rate_limit)
        return limiter


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class _GraphError(Exception):
    """A non-retryable (or no longer retryable) Graph answer; converted by _classify()."""

    def __init__(self, status: int, code: str, message: str, headers: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _error_from(response: requests.Response) -> _GraphError:
    code, message = "", ""
    try:
        payload = response.json()
    except ValueError:
        # e.g. a gateway's HTML page on 502/504
        message = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text or ""))[:200].strip()
    else:
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            message = str(error.get("message") or "")
    return _GraphError(response.status_code, code, message or response.reason or "", response.headers)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: integer, fraction (Graph's ``2.128``), HTTP-date,
    or None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _split_path(path: str) -> list[str]:
    """ "Inbox/Projects" -> ["Inbox", "Projects"]; a "/" inside a folder name is written "\\/"."""
    parts, current, escaped = [], [], False
    for char in path:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "/":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p]


def _escape_name(name: str) -> str:
    return name.replace("\\", "\\\\").replace("/", "\\/")


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class _FolderRef:
    id: str
    total: int | None


@dataclass
class _DeltaPage:
    """One page of a delta round, read and checked against the ledger."""

    fresh: list[tuple[str, datetime | None]]  # to download: (immutable id, receivedDateTime)
    removed: list[str]
    known: list[str]  # listed, already archived (not downloaded)
    after: dict[str, Any]  # the cursor once the whole page is committed
    reread: dict[str, Any]  # the cursor for earlier parts of the page: read it again
    resync: bool
    last: bool  # the round's last page (it carries the deltaLink)


class _Downloads:
    """MIME downloads in order, running ahead of the consumer.

    Up to ``max_in_flight`` requests are queued in the client's pool (which the mailbox limiter
    keeps to 4 at Graph); finished downloads not yet taken are held up to ``budget_bytes``. More
    are started as requests finish, not only when the consumer asks, so downloading goes on
    while the pipeline stores and commits the previous batch.
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        fetch: Callable[[str, datetime | None], FetchedMessage | None],
        *,
        max_in_flight: int,
        budget_bytes: int,
    ) -> None:
        self._pool = pool
        self._fetch = fetch
        self._max_in_flight = max(1, max_in_flight)
        self._budget = budget_bytes
        self._lock = threading.RLock()  # a callback may run at once, inside add_done_callback
        self._waiting: collections.deque[tuple[str, datetime | None]] = collections.deque()
        self._futures: collections.deque[Future[FetchedMessage | None]] = collections.deque()
        self._sizes: dict[Future[FetchedMessage | None], int] = {}
        self._taken: set[Future[FetchedMessage | None]] = set()
        self._in_flight = 0
        self._ready_bytes = 0
        self._closed = False

    def add(self, items: list[tuple[str, datetime | None]]) -> None:
        with self._lock:
            self._waiting.extend(items)
            self._start_more()

    def take(self) -> FetchedMessage | None:
        """The next download's result, in the order added (its exception, if it failed)."""
        with self._lock:
            if not self._futures:
                self._start_more(at_least_one=True)
            future = self._futures.popleft()
        result = future.result()
        with self._lock:
            size = self._sizes.pop(future, None)
            if size is None:
                self._taken.add(future)  # its callback has not run yet
            else:
                self._ready_bytes -= size
            self._start_more()
        return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._waiting.clear()
            for future in self._futures:
                future.cancel()
            self._futures.clear()

    def _start_more(self, *, at_least_one: bool = False) -> None:
        while (
            self._waiting
            and not self._closed
            and (at_least_one or (self._in_flight < self._max_in_flight and self._ready_bytes < self._budget))
        ):
            at_least_one = False
            location, received = self._waiting.popleft()
            future = self._pool.submit(self._fetch, location, received)
            self._in_flight += 1
            self._futures.append(future)
            future.add_done_callback(self._finished)

    def _finished(self, future: Future[FetchedMessage | None]) -> None:
        size = 0
        if not future.cancelled() and future.exception() is None:
            result = future.result()
            size = len(result.raw) if result is not None else 0
        with self._lock:
            self._in_flight -= 1
            if future in self._taken:
                self._taken.discard(future)
            elif not future.cancelled():
                self._sizes[future] = size
                self._ready_bytes += size
            if not self._closed:
                try:
                    self._start_more()
                except RuntimeError:  # the pool is shutting down (client closed)
                    self._closed = True


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


class GraphClient:
    """A :class:`~mailsources.clients.base.MailClient` for one Microsoft 365 mailbox."""

    def __init__(
        self,
        tenant: str,
        client_id: str,
        client_secret: str,
        mailbox: str,
        *,
        page_size: int = 25,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        graph_url: str = DEFAULT_GRAPH_URL,
        timeout: float | tuple[float, float] = (10.0, 120.0),
        ca_bundle: str | None = None,
        max_concurrent: int = MAX_CONCURRENT_PER_MAILBOX,
        rate_limit: tuple[int, float] | None = GRAPH_RATE_LIMIT,
        request_gate: RequestGate | None = None,
        max_inline_wait: float = 10.0,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        max_batch_bytes: int = 64 * 1024 * 1024,
        max_batch_messages: int = 250,
        include_hidden_folders: bool = False,
    ) -> None:
        """Plain values only; nothing talks to the network before the first call.

        ``page_size`` is "Number of mails (Office 365)": the page size of every Graph listing and
        of the delta pages (1-1000). ``authority_host``/``graph_url`` point at sovereign clouds
        or a test fake; ``ca_bundle`` pins the CA file to trust (beats ``REQUESTS_CA_BUNDLE``).
        ``max_concurrent``/``rate_limit`` are Graph's per-mailbox limits (4; 10,000 per 600 s;
        ``rate_limit=None`` disables pacing). ``request_gate`` coordinates several processes (see
        the module docstring). A Retry-After (or backoff) up to ``max_inline_wait`` seconds is
        slept, at most ``max_attempts`` tries per request; longer waits raise
        ``TransientSourceError(retry_after=...)``. ``backoff_base`` is the first backoff when a
        429/5xx carries no Retry-After. ``max_batch_bytes`` bounds the MIME held in one batch (and the
        MIME downloaded ahead of the batches), ``max_batch_messages`` its number of messages.
        """
        if not 1 <= int(page_size) <= 1000:
            raise ValueError("page_size (Number of mails) must be between 1 and 1000")
        if not tenant or not client_id or not client_secret or not mailbox:
            raise ValueError("tenant, client_id, client_secret and mailbox are required")
        if not 1 <= max_concurrent <= MAX_CONCURRENT_PER_MAILBOX:
            raise ValueError("max_concurrent must be between 1 and 4 (Graph's mailbox limit)")
        self.tenant = tenant.strip()
        self.client_id = client_id.strip()
        self.mailbox = mailbox.strip()
        self.page_size = int(page_size)
        self._secret = client_secret
        self._authority_host = authority_host.rstrip("/")
        self._graph_url = graph_url.rstrip("/")
        self._graph_origin = urlsplit(self._graph_url)._replace(path="", query="", fragment="").geturl()
        self._max_concurrent = max_concurrent
        self._max_inline_wait = max_inline_wait
        self._max_attempts = max(1, max_attempts)
        self._backoff_base = backoff_base
        self._max_batch_bytes = max_batch_bytes
        self._max_batch_messages = max(1, max_batch_messages)
        self._include_hidden = include_hidden_folders
        self._gate = request_gate
        self._gate_key = f"graph:{self.tenant.lower()}:{self.client_id.lower()}:{self.mailbox.lower()}"
        self._limiter = _limiter_for(
            (self.tenant.lower(), self.client_id.lower(), self.mailbox.lower()), max_concurrent, rate_limit
        )
        scope = _graph_scope(self._graph_url)
        self._account = _GraphAccount(
            (self.client_id, client_secret),
            auth_flow_type="credentials",
            tenant_id=self.tenant,
            protocol=_GraphProtocol(self._graph_url),
            main_resource="",
            token_backend=_MemoryTokenBackend(scope),
            requests_delay=0,  # pacing is the limiter's job, per mailbox not per connection
            request_retries=0,
            raise_http_errors=True,
            timeout=timeout,
            default_headers={"Prefer": _IMMUTABLE_IDS},  # ids that survive moves between folders
            authority_host=self._authority_host,
            ca_bundle=ca_bundle,
            scope=scope,
        )
        self._con: _GraphConnection = self._account.con
        self._box = self._account.mailbox(resource=f"users/{quote(self.mailbox, safe='@')}")
        self._folders: dict[str, _FolderRef] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GraphClient(tenant={self.tenant!r}, client_id={self.client_id!r}, mailbox={self.mailbox!r})"

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- MailClient interface ---------------------------------------------------------------------

    def test_connection(self) -> ConnectionReport:
        # Someone is waiting for the answer: one retry at most, not the sync's patient backoff
        # (an unreachable Graph would otherwise take ~15 s to say so).
        attempts, self._max_attempts = self._max_attempts, min(self._max_attempts, 2)
        try:
            return self._test_connection()
        finally:
            self._max_attempts = attempts

    def _test_connection(self) -> ConnectionReport:
        with self._translate("opening the mailbox"):
            self._authenticate()
            lines = [
                f"Authenticated (tenant {self.tenant}, app {self.client_id})",
                f"Mailbox: {self.mailbox}",
            ]
            inbox = self._get_json(self._url("/mailFolders/inbox"), {"$select": "id,displayName,totalItemCount"})
            name = inbox.get("displayName") or "Inbox"
            label = "Inbox" if name == "Inbox" else f"Inbox ({name})"
            lines.append(f"{label}: {inbox.get('totalItemCount', 0)} messages")
            newest = self._get_json(
                self._url(f"/mailFolders/{quote(inbox['id'], safe='')}/messages"),
                {"$top": "1", "$select": "subject,receivedDateTime", "$orderby": "receivedDateTime desc"},
            ).get("value", [])
            subject: str | None = None
            if newest:
                subject = newest[0].get("subject") or ""
                received = _parse_time(newest[0].get("receivedDateTime"))
                when = f" ({received:%Y-%m-%d %H:%M} UTC)" if received else ""
                lines.append(f"Newest message: {subject or '(no subject)'}{when}")
            else:
                lines.append("Newest message: (the inbox is empty)")
            folders = self._list_folders()
            lines.append(f"Folders: {len(folders)}")
            return ConnectionReport(lines=lines, folders=folders, newest_subject=subject)

    def list_folders(self) -> list[FolderInfo]:
        """Every mail folder, recursively, as "Parent/Child" paths; search folders skipped."""
        with self._translate("listing folders"):
            return self._list_folders()

    def sync_folder(
        self,
        folder: str,
        cursor: dict[str, Any] | None,
        known: KnownFilter,
        *,
        min_age_days: int = 0,
    ) -> Iterator[FolderBatch]:
        """One delta round of ``folder`` (from ``cursor``), in batches (one or more per page)."""
        try:
            yield from self._sync_folder(folder, cursor, known, min_age_days)
        except _GraphError as err:
            raise self._classify(err, f"syncing folder {folder!r}") from err

    def check_action_supported(self, action: str) -> None:
        """Moving and deleting need the application permission Mail.ReadWrite: say so before
        anything is archived rather than failing after the first batch."""
        name = str(getattr(action, "value", action)).lower()
        if name not in {"move", "delete"}:
            return
        self._authenticate()
        roles = self._con.token_roles()
        if roles is not None and "Mail.ReadWrite" not in roles:
            raise PermanentSourceError(
                self._scrub(
                    f"App {self.client_id} may not {name} mail in {self.mailbox}: it needs the "
                    "application permission Mail.ReadWrite with admin consent (it has: "
                    f"{', '.join(sorted(roles)) or 'none'})."
                ),
                code="access_denied",
            )

    def move(self, folder: str, locations: list[str], target_folder: str, *, epoch: str | None = None) -> None:
        """Move archived messages (immutable ids) to ``target_folder``; gone ones are skipped.

        ``epoch`` is always "" for Graph: immutable ids do not depend on the folder's state."""
        with self._translate(f"moving messages to {target_folder!r}"):
            try:
                target = self._resolve_folder(target_folder)
            except PermanentSourceError as exc:
                # Not "folder_not_found": that would only skip the folder being archived.
                raise PermanentSourceError(
                    f"The folder to move archived mail to does not exist: {exc}", code="move_target_not_found"
                ) from None
            for location in locations:
                try:
                    self._request(
                        "POST",
                        self._url(f"/messages/{quote(location, safe='')}/move"),
                        data={"destinationId": target.id},
                    )
                except _GraphError as err:
                    if err.status == 404 and err.code == "ErrorItemNotFound":
                        log.warning("Graph move: message %s of %s is gone", location, self.mailbox)
                        continue
                    raise

    def delete(self, folder: str, locations: list[str], *, epoch: str | None = None) -> None:
        """Delete archived messages (Graph moves them to Recoverable Items)."""
        with self._translate("deleting messages"):
            for location in locations:
                try:
                    self._request("DELETE", self._url(f"/messages/{quote(location, safe='')}"))
                except _GraphError as err:
                    if err.status == 404 and err.code == "ErrorItemNotFound":
                        continue  # already gone: the goal is reached
                    raise

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        if self._con.session is not None:
            self._con.session.close()
            self._con.session = None

    # -- folders --------------------------------------------------------------------------------

    def _list_folders(self) -> list[FolderInfo]:
        found: dict[str, _FolderRef] = {}
        extra = {"includeHiddenFolders": "true"} if self._include_hidden else {}

        def walk(prefix: str, url: str) -> None:
            # Depth-first, so a folder's children follow it; recursion depth = folder depth.
            items = list(self._paged(url, {"$top": str(self.page_size), **extra}))
            for item in items:
                if item.get("@odata.type", "").lower() == "#microsoft.graph.mailsearchfolder":
                    continue  # a virtual view of other folders: archiving it duplicates mail
                path = f"{prefix}{_escape_name(item.get('displayName') or item['id'])}"
                found[path] = _FolderRef(item["id"], item.get("totalItemCount"))
                if item.get("childFolderCount"):
                    walk(path + "/", self._url(f"/mailFolders/{quote(item['id'], safe='')}/childFolders"))

        walk("", self._url("/mailFolders"))
        self._folders = found
        return [FolderInfo(name=path, total=ref.total) for path, ref in found.items()]

    def _resolve_folder(self, path: str) -> _FolderRef:
        if self._folders is not None and path in self._folders:
            return self._folders[path]
        parts = _split_path(path)
        if not parts:
            raise PermanentSourceError("Empty folder name.", code="folder_not_found")
        current: dict[str, Any] | None = None
        for index, part in enumerate(parts):
            if current is None:
                url = self._url("/mailFolders")
            else:
                url = self._url(f"/mailFolders/{quote(current['id'], safe='')}/childFolders")
            params = {
                "$filter": f"displayName eq {_odata_string(part)}",
                "$select": "id,displayName,totalItemCount",
                "includeHiddenFolders": "true",
            }
            matches = list(self._paged(url, params))
            if not matches and index == 0 and part.replace(" ", "").lower() in _WELL_KNOWN_FOLDERS:
                # "Inbox" in a German mailbox is "Posteingang": fall back to well-known names.
                try:
                    matches = [self._get_json(self._url(f"/mailFolders/{part.replace(' ', '').lower()}"))]
                except _GraphError as err:
                    if err.status != 404:
                        raise
            if not matches:
                raise PermanentSourceError(
                    f"Folder {path!r} does not exist in mailbox {self.mailbox}.", code="folder_not_found"
                )
            current = matches[0]
            if current.get("@odata.type", "").lower() == "#microsoft.graph.mailsearchfolder":
                raise PermanentSourceError(
                    f"Folder {path!r} is a search folder; archive the folders it searches instead.",
                    code="folder_not_found",
                )
        assert current is not None
        return _FolderRef(current["id"], current.get("totalItemCount"))

    # -- sync -------------------------------------------------------------------------------------

    def _sync_folder(
        self, folder: str, cursor: dict[str, Any] | None, known: KnownFilter, min_age_days: int
    ) -> Iterator[FolderBatch]:
        ref = self._resolve_folder(folder)
        state = dict(cursor or {})
        resync = bool(state.get("resync"))
        if state.get("folder_id") not in (None, ref.id):
            # Same name, different folder (deleted and re-created): its state tokens are useless.
            state, resync = {}, True
        pending: dict[str, str | None] = dict(state.get("pending") or {})
        link_kind = "next_link" if state.get("next_link") else "delta_link"
        link: str | None = state.get("next_link") or state.get("delta_link")
        if link and not self._same_origin(link):
            # graph_url changed since: never send the token to the old host; start over.
            link, link_kind, resync = None, "delta_link", True
        cutoff = datetime.now(UTC) - timedelta(days=min_age_days) if min_age_days > 0 else None

        def make_cursor(kind: str, url: str | None, *, mid_round: bool, resync: bool) -> dict[str, Any]:
            result: dict[str, Any] = {"v": 1, "folder_id": ref.id}
            if url:
                result[kind] = url
            if resync and mid_round:
                result["resync"] = True
            if pending:
                result["pending"] = dict(pending)
            return result

        # Ids fetched in this run: a later delta page replaying one (its batch may not be
        # committed yet when that page is read) does not fetch it again.
        fetched_now: set[str] = set()

        # 1. Mail that was too young on an earlier run and has come of age.
        if pending:
            due = [i for i, r in pending.items() if cutoff is None or (_parse_time(r) or cutoff) <= cutoff]
            if due:
                already = set(known("", due))
                items = [(i, _parse_time(pending[i])) for i in due if i not in already]
                messages = self._fetch_all(items)
                fetched_now.update(i for i, _ in items)
                for location in due:
                    pending.pop(location, None)
                yield FolderBatch(
                    epoch="",
                    messages=messages,
                    cursor=make_cursor(link_kind, link, mid_round=link_kind == "next_link", resync=resync),
                    total=ref.total,
                    resync=resync,
                    known_locations=sorted(already),
                )

        # 2. The delta round: pages are read one ahead and downloads run ahead of the batches
        # handed out (see _Downloads), so the network keeps working while the pipeline stores
        # and commits them. Batches: up to max_batch_messages / max_batch_bytes each, the last
        # of a page with the page's cursor, removals and known ids.
        pages = self._delta_pages(
            folder, ref.id, link, link_kind, resync, known, cutoff, pending, fetched_now, make_cursor
        )
        downloads = _Downloads(
            self._executor(), self._fetch, max_in_flight=self._max_concurrent * 2, budget_bytes=self._max_batch_bytes
        )
        try:
            page: _DeltaPage | None = next(pages)
            downloads.add(page.fresh)
            while page is not None:
                following: _DeltaPage | None = None
                deferred: BaseException | None = None
                part: list[FetchedMessage] = []
                size = 0
                for index in range(len(page.fresh) + 1):
                    if index == len(page.fresh):
                        if not page.last:
                            # Read the next page (and start its downloads) before handing out
                            # this one's last part; its errors wait until that part is out.
                            try:
                                following = next(pages)
                                downloads.add(following.fresh)
                            except Exception as exc:  # noqa: BLE001 - re-raised below
                                deferred = exc
                        yield FolderBatch(
                            epoch="",
                            messages=part,
                            cursor=page.after,
                            removed=page.removed,
                            total=ref.total,
                            resync=page.resync,
                            known_locations=page.known,
                        )
                        break
                    message = downloads.take()
                    if message is not None:
                        part.append(message)
                        size += len(message.raw)
                    if (size >= self._max_batch_bytes or len(part) >= self._max_batch_messages) and (
                        index < len(page.fresh) - 1
                    ):
                        # An earlier part of a split page re-reads the same page if the run dies.
                        yield FolderBatch(
                            epoch="", messages=part, cursor=page.reread, total=ref.total, resync=page.resync
                        )
                        part, size = [], 0
                if deferred is not None:
                    raise deferred
                page = following
        finally:
            downloads.close()
            pages.close()

    def _delta_pages(
        self,
        folder: str,
        folder_id: str,
        link: str | None,
        link_kind: str,
        resync: bool,
        known: KnownFilter,
        cutoff: datetime | None,
        pending: dict[str, str | None],
        fetched: set[str],
        make_cursor: Callable[..., dict[str, Any]],
    ) -> Iterator[_DeltaPage]:
        """The pages of one delta round, each read, checked against the ledger (``known``) and
        with the cursors that go with it fixed at the time it was read."""
        initial = self._delta_start_url(folder_id)
        url = link or initial
        page_kind = link_kind if link else "delta_link"
        restarted = False
        prefer = {"Prefer": f"odata.maxpagesize={self.page_size}"}
        while True:
            try:
                page = self._get_json(url, None, headers=prefer)
            except _GraphError as err:
                if self._is_delta_reset(err) and not restarted:
                    log.info("Graph delta reset for %s %r (%s): full resync", self.mailbox, folder, err.code)
                    restarted = resync = True
                    url, page_kind = initial, "delta_link"
                    continue
                raise
            next_link = page.get("@odata.nextLink")
            delta_link = page.get("@odata.deltaLink")
            for candidate in (next_link, delta_link):
                if candidate:
                    self._check_origin(candidate)
            if not next_link and not delta_link:
                raise _GraphError(502, "NoLink", "Delta page without @odata.nextLink or @odata.deltaLink.")
            removed: list[str] = []
            listed: dict[str, datetime | None] = {}
            for item in page.get("value", []):
                item_id = item.get("id")
                if not item_id:
                    continue
                if "@removed" in item:
                    removed.append(item_id)
                    listed.pop(item_id, None)
                    pending.pop(item_id, None)
                else:
                    listed[item_id] = _parse_time(item.get("receivedDateTime"))  # replays collapse here
            already = set(known("", list(listed))) if listed else set()
            fresh = [(i, r) for i, r in listed.items() if i not in already and i not in pending and i not in fetched]
            if cutoff is not None:
                fresh = self._defer_young(fresh, cutoff, pending)
            fetched.update(i for i, _ in fresh)
            yield _DeltaPage(
                fresh=fresh,
                removed=removed,
                known=sorted(already),
                after=(
                    make_cursor("next_link", next_link, mid_round=True, resync=resync)
                    if next_link
                    else make_cursor("delta_link", delta_link, mid_round=False, resync=resync)
                ),
                reread=make_cursor(page_kind, None if url == initial else url, mid_round=True, resync=resync),
                resync=resync,
                last=not next_link,
            )
            if delta_link:
                return
            url, page_kind = next_link, "next_link"

    def _defer_young(
        self, fresh: list[tuple[str, datetime | None]], cutoff: datetime, pending: dict[str, str | None]
    ) -> list[tuple[str, datetime | None]]:
        due: list[tuple[str, datetime | None]] = []
        for item_id, received in fresh:
            if received is None:
                # An "updated" delta entry may omit receivedDateTime: ask for it (rare).
                try:
                    meta = self._get_json(
                        self._url(f"/messages/{quote(item_id, safe='')}"), {"$select": "id,receivedDateTime"}
                    )
                except _GraphError as err:
                    if err.status == 404:
                        continue
                    raise
                received = _parse_time(meta.get("receivedDateTime"))
            if received is not None and received > cutoff:
                pending[item_id] = received.isoformat()
            else:
                due.append((item_id, received))
        return due

    def _delta_start_url(self, folder_id: str) -> str:
        query = urlencode({"$select": _DELTA_SELECT}, safe="$,")
        path = f"/mailFolders/{quote(folder_id, safe='')}/messages/delta"
        return f"{self._url(path)}?{query}"

    @staticmethod
    def _is_delta_reset(err: _GraphError) -> bool:
        return err.status == 410 or err.code.lower() in _DELTA_RESET_CODES

    # -- downloads ---------------------------------------------------------------------------------

    def _fetch_all(self, items: list[tuple[str, datetime | None]]) -> list[FetchedMessage]:
        return [m for m in self._fetch_stream(items) if m is not None]

    def _fetch_stream(self, items: list[tuple[str, datetime | None]]) -> Iterator[FetchedMessage | None]:
        """Results in order, with up to 2 x max_concurrent downloads running ahead (the limiter
        keeps the mailbox at max_concurrent in flight); they also overlap the pipeline's commit."""
        if self._max_concurrent == 1 or len(items) <= 1:
            for location, received in items:
                yield self._fetch(location, received)
            return
        pool = self._executor()
        ahead: collections.deque[Future[FetchedMessage | None]] = collections.deque()
        position = 0
        try:
            while position < len(items) or ahead:
                while position < len(items) and len(ahead) < self._max_concurrent * 2:
                    location, received = items[position]
                    ahead.append(pool.submit(self._fetch, location, received))
                    position += 1
                yield ahead.popleft().result()
        finally:
            for future in ahead:
                future.cancel()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._max_concurrent, thread_name_prefix=f"graph-{self.mailbox}"
                )
            return self._pool

    def _fetch(self, location: str, received: datetime | None) -> FetchedMessage | None:
        try:
            _, raw = self._request("GET", self._url(f"/messages/{quote(location, safe='')}/$value"), stream=True)
        except _GraphError as err:
            if err.status == 404 and err.code in {"ErrorItemNotFound", "ResourceNotFound"}:
                # Deleted between the delta page and now: nothing left to archive.
                log.info("Graph: message %s of %s vanished before download", location, self.mailbox)
                return None
            raise
        return FetchedMessage(location=location, raw=raw or b"", received_at=received)

    # -- HTTP ----------------------------------------------------------------------------------------

    def _url(self, endpoint: str) -> str:
        return self._box.build_url(endpoint)

    def _same_origin(self, url: str) -> bool:
        return urlsplit(url)._replace(path="", query="", fragment="").geturl() == self._graph_origin

    def _check_origin(self, url: str) -> None:
        # O365 would send the bearer token to whatever host a nextLink names.
        if not self._same_origin(url):
            raise _GraphError(502, "UnexpectedLink", f"Graph returned a link to another host: {urlsplit(url).netloc}")

    def _paged(self, url: str, params: dict[str, str] | None) -> Iterator[dict[str, Any]]:
        next_url: str | None = url
        while next_url:
            page = self._get_json(next_url, params)
            yield from page.get("value", [])
            next_url = page.get("@odata.nextLink")
            if next_url:
                self._check_origin(next_url)
            params = None  # a nextLink already carries the query

    def _get_json(
        self, url: str, params: dict[str, str] | None = None, *, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response, _ = self._request("GET", url, params=params, headers=headers)
        try:
            data = response.json()
        except ValueError as exc:
            raise _GraphError(502, "InvalidJson", "Graph answered with something that is not JSON.") from exc
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        if self._gate is None:
            with self._limiter.slot():
                yield
            return
        # The cross-process gate may pace too: enter it before taking this process's own slot,
        # so that a thread waiting for its turn there holds none of the 4 here.
        self._limiter.wait_turn()
        with self._gate(self._gate_key), self._limiter.concurrency():
            yield

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        data: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> tuple[requests.Response, bytes | None]:
        """One Graph call with the mailbox limits, token renewal and the Retry-After policy.

        Returns the response (and the streamed body when ``stream``); raises ``_GraphError``
        for answers to classify and ``SourceError`` for transport/auth failures.
        """
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            response: requests.Response | None = None
            body: bytes | None = None
            failure: Exception | None = None
            with self._slot():
                bearer = self._authenticate()
                try:
                    response = self._con.oauth_request(
                        url,
                        method.lower(),
                        params=params,
                        # Per request, so a 401 names the token that failed.
                        headers={**(headers or {}), "Authorization": f"Bearer {bearer}"},
                        data=data,
                        stream=stream,
                    )
                    if stream:
                        body = self._read_body(response)
                except requests.HTTPError as exc:
                    response = exc.response
                except requests.exceptions.SSLError as exc:
                    raise self._tls_error(self._graph_url, exc) from None
                except (
                    requests.ConnectionError,
                    requests.Timeout,
                    requests.exceptions.ChunkedEncodingError,
                ) as exc:
                    # Also when the headers were fine and the body broke off: nothing usable.
                    response, failure = None, exc
                except requests.RequestException as exc:
                    raise TransientSourceError(
                        self._scrub(f"Request to Microsoft Graph failed: {type(exc).__name__}: {exc}"),
                        code="graph_error",
                    ) from None
            if response is not None and response.ok:
                return response, body
            if response is None:
                wait = self._backoff(attempt)
                if attempt < self._max_attempts and wait <= self._max_inline_wait:
                    time.sleep(wait)
                    continue
                # A body that stalls surfaces as ConnectionError(ReadTimeoutError), not Timeout.
                timed_out = isinstance(failure, requests.Timeout) or "timed out" in str(failure).lower()
                host = urlsplit(self._graph_url).netloc
                raise TransientSourceError(
                    self._scrub(
                        f"Microsoft Graph ({host}) "
                        f"{'did not answer in time' if timed_out else 'is unreachable'}: "
                        f"{type(failure).__name__}"
                    ),
                    code="timeout" if timed_out else "unreachable",
                    retry_after=wait,
                ) from None
            err = _error_from(response)
            if err.status == 401 and not renewed:
                # A token msal still trusts was rejected (revoked, clock skew): renew once.
                renewed = True
                try:
                    self._con.ensure_token(rejected=bearer)
                except Exception as exc:  # classified like any other token failure
                    raise self._auth_failure(exc) from None
                continue
            if err.status in _RETRYABLE_STATUS:
                server_wait = parse_retry_after(err.headers.get("Retry-After"))
                wait = server_wait if server_wait is not None else self._backoff(attempt)
                if err.status == 429:
                    self._limiter.pause(wait)  # the whole mailbox backs off, not just this thread
                if attempt < self._max_attempts and wait <= self._max_inline_wait:
                    log.info("Graph %s %s for %s: retrying in %.2fs", err.status, err.code, self.mailbox, wait)
                    time.sleep(wait)
                    continue
                raise TransientSourceError(
                    self._scrub(
                        f"Microsoft Graph is {'throttling' if err.status == 429 else 'unavailable for'} "
                        f"mailbox {self.mailbox} ({err.status} {err.code or 'error'}); retry in {wait:.0f} s."
                    ),
                    code="throttled" if err.status == 429 else "unavailable",
                    retry_after=wait,
                )
            raise err

    def _read_body(self, response: requests.Response) -> bytes:
        chunks = bytearray()
        try:
            for chunk in response.iter_content(chunk_size=1024 * 1024):
                chunks.extend(chunk)
        finally:
            response.close()
        return bytes(chunks)

    def _backoff(self, attempt: int) -> float:
        base = self._backoff_base * (2 ** (attempt - 1))
        return min(300.0, base * random.uniform(0.8, 1.2))

    # -- authentication ------------------------------------------------------------------------------

    def _authenticate(self) -> str:
        try:
            return self._con.ensure_token()
        except Exception as exc:
            raise self._auth_failure(exc) from None

    def _auth_failure(self, exc: Exception) -> SourceError:
        host = urlsplit(self._authority_host).netloc
        if isinstance(exc, _TokenError):
            return self._token_error(exc.result)
        if isinstance(exc, requests.exceptions.SSLError):
            return self._tls_error(self._authority_host, exc)
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return TransientSourceError(
                self._scrub(f"Microsoft Entra ID ({host}) is unreachable: {type(exc).__name__}"),
                code="unreachable",
            )
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            retry_after = (
                parse_retry_after(exc.response.headers.get("Retry-After")) if exc.response is not None else None
            )
            return TransientSourceError(
                self._scrub(f"Microsoft Entra ID ({host}) answered {status}; try again later."),
                code="auth_unavailable",
                retry_after=retry_after,
            )
        if isinstance(exc, ValueError):
            # msal's OIDC discovery: a 4xx (AADSTS90002) means the tenant does not exist.
            detail = f"{exc} {exc.__context__ or ''}"
            if "AADSTS90002" in detail or re.search(r"HTTP status: 4\d\d", detail) or "should consist of" in detail:
                return PermanentSourceError(
                    self._scrub(
                        f"Tenant {self.tenant!r} was not found (AADSTS90002). Check the Tenant ID "
                        "(a GUID or a verified domain such as contoso.onmicrosoft.com)."
                    ),
                    code="auth_unknown_tenant",
                )
            return PermanentSourceError(self._scrub(f"Authentication setup failed: {exc}"), code="auth_failed")
        if isinstance(exc, MsalError):
            return TransientSourceError(
                self._scrub(f"Microsoft Entra ID refused for now: {exc}"), code="auth_unavailable"
            )
        return TransientSourceError(
            self._scrub(f"Authentication failed unexpectedly: {type(exc).__name__}: {exc}"),
            code="auth_failed",
        )

    def _token_error(self, result: dict[str, Any]) -> SourceError:
        codes = {int(c) for c in result.get("error_codes") or [] if str(c).isdigit()}
        error = str(result.get("error") or "")
        description = str(result.get("error_description") or "").split(" Trace ID:")[0].strip()
        if 7000215 in codes:
            return PermanentSourceError(
                self._scrub(
                    "Microsoft Entra ID rejected the client secret (AADSTS7000215). Enter the secret's "
                    f"Value, not its Secret ID, from Certificates & secrets of app {self.client_id}."
                ),
                code="auth_bad_secret",
            )
        if 7000222 in codes:
            return PermanentSourceError(
                self._scrub(
                    f"The client secret of app {self.client_id} has expired (AADSTS7000222). Create a new "
                    "secret under App registrations > Certificates & secrets and enter it here."
                ),
                code="auth_expired_secret",
            )
        if 700016 in codes:
            return PermanentSourceError(
                self._scrub(
                    f"Application {self.client_id} was not found in tenant {self.tenant} (AADSTS700016). "
                    "Check the Client ID and that the app is registered in this tenant with admin consent."
                ),
                code="auth_unknown_app",
            )
        if 90002 in codes:
            return PermanentSourceError(
                self._scrub(f"Tenant {self.tenant!r} was not found (AADSTS90002). Check the Tenant ID."),
                code="auth_unknown_tenant",
            )
        if error in _OAUTH_PERMANENT_ERRORS:
            return PermanentSourceError(
                self._scrub(f"Microsoft Entra ID refused the token request ({error}): {description}"),
                code="auth_failed",
            )
        # temporarily_unavailable, server_error, throttling, anything unexpected: try again later.
        return TransientSourceError(
            self._scrub(f"Microsoft Entra ID is temporarily unavailable: {description or error or 'no answer'}"),
            code="auth_unavailable",
        )

    def _tls_error(self, url: str, exc: Exception) -> PermanentSourceError:
        return PermanentSourceError(
            self._scrub(
                f"The TLS certificate of {urlsplit(url).netloc} is not trusted ({type(exc).__name__}); "
                "check the CA bundle or an intercepting proxy."
            ),
            code="tls_untrusted",
        )

    # -- classification -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except _GraphError as err:
            raise self._classify(err, doing) from err

    def _classify(self, err: _GraphError, doing: str) -> SourceError:
        status, code, text = err.status, err.code, err.message
        mailbox = self.mailbox
        if status == 401:
            return PermanentSourceError(
                self._scrub(f"Microsoft Graph rejected the access token for {mailbox} ({code}: {text})."),
                code="auth_rejected",
            )
        if status == 403 and code in {
            "ErrorAccessDenied",
            "extensionError",
            "ExtensionError",
            "Authorization_RequestDenied",
            "AccessDenied",
        }:
            return PermanentSourceError(
                self._scrub(
                    f"Access to mailbox {mailbox} was denied (403 {code}: {text}). The app needs the "
                    "application permission Mail.Read (Mail.ReadWrite to move or delete) with admin "
                    "consent; an application access policy may also exclude this mailbox."
                ),
                code="access_denied",
            )
        if status == 404 and code == "MailboxNotEnabledForRESTAPI":
            return PermanentSourceError(
                self._scrub(
                    f"Mailbox {mailbox} cannot be read through Microsoft Graph "
                    "(MailboxNotEnabledForRESTAPI): it is inactive, soft-deleted, unlicensed or hosted "
                    "on-premises."
                ),
                code="mailbox_not_rest",
            )
        if status == 404 and code in {
            "ErrorInvalidUser",
            "ResourceNotFound",
            "Request_ResourceNotFound",
            "UserNotFound",
        }:
            detail = "has no mailbox" if code == "ResourceNotFound" else "was not found"
            return PermanentSourceError(
                self._scrub(f"Mailbox {mailbox} {detail} (404 {code}). Check the address."),
                code="mailbox_not_found",
            )
        if status == 404 and code == "ErrorItemNotFound":
            # Messages that vanish are skipped where they are fetched; what is left is a folder
            # deleted while we were working on it.
            return PermanentSourceError(
                self._scrub(f"Folder not found while {doing} in {mailbox} (404 {code}: {text})."),
                code="folder_not_found",
            )
        if status in _RETRYABLE_STATUS or status >= 500:
            return TransientSourceError(
                self._scrub(f"Microsoft Graph failed while {doing} for {mailbox} ({status} {code}: {text})."),
                code="unavailable",
                retry_after=parse_retry_after(err.headers.get("Retry-After")),
            )
        return PermanentSourceError(
            self._scrub(f"Microsoft Graph refused {doing} for {mailbox} ({status} {code}: {text})."),
            code="graph_error",
        )

    def _scrub(self, text: str) -> str:
        secret = self._secret
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
            quoted = quote(secret, safe="")
            if quoted != secret:
                text = text.replace(quoted, "[redacted]")
        return text


_WELL_KNOWN_FOLDERS = {
    "archive",
    "clutter",
    "conflicts",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "inbox",
    "junkemail",
    "localfailures",
    "msgfolderroot",
    "outbox",
    "recoverableitemsdeletions",
    "scheduled",
    "searchfolders",
    "sentitems",
    "serverfailures",
    "syncissues",
}
