"""One Graph request at a time, for one app + mailbox: the mailbox limits, token renewal and
the Retry-After policy (:meth:`GraphTransport.request`).

* Every request has a timeout and goes through the mailbox's limiter (at most 4 in flight,
  paced under the 10,000-per-10-minutes window, see :mod:`mailsources.pacing`) and, across
  worker processes, through the ``request_gate`` when one is given.
* ``Retry-After`` is honoured in every form (integer, fraction, HTTP-date; absent ->
  exponential backoff): short waits are slept, long ones raise
  ``TransientSourceError(retry_after=<the server's wait>)`` so the task is rescheduled exactly
  then instead of blocking (``retry_after=None`` when the server named no wait: the task backs
  off). A 429 pauses every thread of the mailbox; a pause longer than a run may sleep stops
  them at once (:meth:`MailboxLimiter.wait_turn`) and the run's other mailboxes go on.
* A 401 for a token msal still trusts (revoked, clock skew) renews it once.
* Links Graph hands back are followed only on the configured Graph origin (O365 would send the
  bearer token to whatever host a nextLink names).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from archive.backoff import backoff_delay
from mailsources import pacing
from mailsources.pacing import RequestGate, limiter_for

from ..base import TransientSourceError
from .errors import RETRYABLE_STATUS, ErrorClassifier, GraphError, error_from
from .o365 import GraphAccount, GraphConnection, GraphProtocol, MemoryTokenBackend, graph_scope

log = logging.getLogger(__name__)

# Graph's Outlook limits per app + mailbox (learn.microsoft.com/graph/throttling-limits).
MAX_CONCURRENT_PER_MAILBOX = 4
GRAPH_RATE_LIMIT: tuple[int, float] = (10_000, 600.0)
_IMMUTABLE_IDS = 'IdType="ImmutableId"'
_MAX_BACKOFF = 300.0


@dataclasses.dataclass
class _Attempt:
    """What one try of a request produced: a response, or the failure that left none."""

    bearer: str
    response: requests.Response | None = None
    body: bytes | None = None
    stored: Any = None  # what the raw sink returned for a streamed body (then body is None)
    failure: Exception | None = None


# A streamed body larger than this goes to the caller's sink instead of memory.
STREAM_BYTES = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
Sink = Callable[[Iterable[bytes]], Any]


class GraphTransport:
    """The O365 account and connection of one app + mailbox, and the policy around each call."""

    def __init__(
        self,
        errors: ErrorClassifier,
        client_secret: str,
        *,
        authority_host: str,
        graph_url: str,
        timeout: float | tuple[float, float],
        ca_bundle: str | None,
        max_concurrent: int,
        rate_limit: tuple[int, float] | None,
        request_gate: RequestGate | None,
        max_inline_wait: float,
        max_attempts: int,
        backoff_base: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.errors = errors
        self.mailbox = errors.mailbox
        self._authority_host = authority_host
        self._graph_url = graph_url
        self._graph_origin = _origin(graph_url)
        self._max_inline_wait = max_inline_wait
        self.max_attempts = max(1, max_attempts)
        self._backoff_base = backoff_base
        self._gate = request_gate
        key = f"graph:{errors.tenant.lower()}:{errors.client_id.lower()}:{errors.mailbox.lower()}"
        self._gate_key = key
        self._limiter = limiter_for(key, max_concurrent, rate_limit)
        scope = graph_scope(graph_url)
        account = GraphAccount(
            (errors.client_id, client_secret),
            auth_flow_type="credentials",
            tenant_id=errors.tenant,
            protocol=GraphProtocol(graph_url),
            main_resource="",
            token_backend=MemoryTokenBackend(scope),
            requests_delay=0,  # pacing is the limiter's job, per mailbox not per connection
            request_retries=0,
            raise_http_errors=True,
            timeout=timeout,
            default_headers={"Prefer": _IMMUTABLE_IDS},  # ids that survive moves between folders
            authority_host=authority_host,
            ca_bundle=ca_bundle,
            scope=scope,
            pool_maxsize=MAX_CONCURRENT_PER_MAILBOX * 2,
            clock=clock,
        )
        self.con: GraphConnection = account.con
        self._box = account.mailbox(resource=f"users/{quote(errors.mailbox, safe='@')}")

    @contextlib.contextmanager
    def attempts_at_most(self, attempts: int) -> Iterator[None]:
        """Fewer tries per request for a while (someone is waiting for the answer)."""
        saved, self.max_attempts = self.max_attempts, min(self.max_attempts, attempts)
        try:
            yield
        finally:
            self.max_attempts = saved

    def close(self) -> None:
        if self.con.session is not None:
            self.con.session.close()
            self.con.session = None

    # -- URLs and reading ---------------------------------------------------------------------------

    def url(self, endpoint: str) -> str:
        """``endpoint`` (e.g. ``/mailFolders``) under the mailbox, on the configured Graph."""
        return str(self._box.build_url(endpoint))

    def same_origin(self, url: str) -> bool:
        return _origin(url) == self._graph_origin

    def check_origin(self, url: str) -> None:
        # O365 would send the bearer token to whatever host a nextLink names.
        if not self.same_origin(url):
            raise GraphError(502, "UnexpectedLink", f"Graph returned a link to another host: {urlsplit(url).netloc}")

    def get_json(
        self, url: str, params: dict[str, str] | None = None, *, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response, _ = self.request("GET", url, params=params, headers=headers)
        try:
            data = response.json()
        except ValueError as exc:
            raise GraphError(502, "InvalidJson", "Graph answered with something that is not JSON.") from exc
        return data if isinstance(data, dict) else {}

    def paged(self, url: str, params: dict[str, str] | None) -> Iterator[dict[str, Any]]:
        """The items of a listing, following its nextLinks."""
        next_url: str | None = url
        while next_url:
            page = self.get_json(next_url, params)
            yield from page.get("value", [])
            next_url = page.get("@odata.nextLink")
            if next_url:
                self.check_origin(next_url)
            params = None  # a nextLink already carries the query

    # -- authentication ------------------------------------------------------------------------------

    def authenticate(self) -> str:
        try:
            return self.con.ensure_token()
        except Exception as exc:
            raise self.errors.auth(exc) from None

    def token_roles(self) -> set[str] | None:
        return self.con.token_roles()

    # -- one request ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        data: dict[str, Any] | None = None,
        stream: bool = False,
        sink: Sink | None = None,
        sink_from: int = STREAM_BYTES,
    ) -> tuple[requests.Response, Any]:
        """One Graph call with the mailbox limits, token renewal and the Retry-After policy.

        Returns the response and, when ``stream``, the body: bytes, or — a body of
        ``sink_from`` bytes or more with a ``sink`` — what the sink returned for it, the
        chunks handed to the sink as they arrive and never held whole. Raises ``GraphError``
        for answers to classify and ``SourceError`` for transport/auth failures.
        """
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            tried = self._try_once(
                method, url, params=params, headers=headers, data=data, stream=stream, sink=sink, sink_from=sink_from
            )
            if tried.response is not None and tried.response.ok:
                return tried.response, tried.stored if tried.stored is not None else tried.body
            if tried.response is None:
                self._wait_after_failure(attempt, tried.failure)
                continue
            err = error_from(tried.response)
            if err.status == 401 and not renewed:
                # A token msal still trusts was rejected (revoked, clock skew): renew once.
                renewed = True
                self._renew(tried.bearer)
                continue
            if err.status in RETRYABLE_STATUS:
                self._wait_after_refusal(attempt, err)
                continue
            raise err

    def _try_once(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        data: dict[str, Any] | None,
        stream: bool,
        sink: Sink | None = None,
        sink_from: int = STREAM_BYTES,
    ) -> _Attempt:
        with self._slot():
            tried = _Attempt(bearer=self.authenticate())
            try:
                tried.response = self.con.oauth_request(
                    url,
                    method.lower(),
                    params=params,
                    # Per request, so a 401 names the token that failed.
                    headers={**(headers or {}), "Authorization": f"Bearer {tried.bearer}"},
                    data=data,
                    stream=stream,
                )
                if stream and tried.response.ok and sink is not None:
                    tried.body, tried.stored = _read_body_to(tried.response, sink, sink_from)
                elif stream:
                    tried.body = _read_body(tried.response)
            except requests.HTTPError as exc:
                tried.response = exc.response
            except requests.exceptions.SSLError as exc:
                raise self.errors.tls(self._graph_url, exc) from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                # Also when the headers were fine and the body broke off: nothing usable.
                tried.response, tried.failure = None, exc
            except requests.RequestException as exc:
                raise TransientSourceError(
                    self.errors.scrub(f"Request to Microsoft Graph failed: {type(exc).__name__}: {exc}"),
                    code="graph_error",
                ) from None
        return tried

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        # A mailbox told to wait longer than the run may sleep: every thread of it stops here.
        if self._gate is None:
            with self._limiter.slot(max_pause=self._max_inline_wait):
                yield
            return
        # The cross-process gate may pace too: enter it before taking this process's own slot,
        # so that a thread waiting for its turn there holds none of the 4 here.
        self._limiter.wait_turn(max_pause=self._max_inline_wait)
        with self._gate(self._gate_key), self._limiter.concurrency():
            yield

    def _wait_after_failure(self, attempt: int, failure: Exception | None) -> None:
        """No answer (unreachable, timed out): sleep before the next try, or raise."""
        wait = self._backoff(attempt)
        if attempt < self.max_attempts and wait <= self._max_inline_wait:
            pacing.sleep(wait)
            return
        # A body that stalls surfaces as ConnectionError(ReadTimeoutError), not Timeout.
        timed_out = isinstance(failure, requests.Timeout) or "timed out" in str(failure).lower()
        host = urlsplit(self._graph_url).netloc
        raise TransientSourceError(
            self.errors.scrub(
                f"Microsoft Graph ({host}) "
                f"{'did not answer in time' if timed_out else 'is unreachable'}: "
                f"{type(failure).__name__}"
            ),
            code="timeout" if timed_out else "unreachable",
        ) from None  # no retry_after: the server named no wait, the task backs off

    def _wait_after_refusal(self, attempt: int, err: GraphError) -> None:
        """429 or 5xx: sleep for Retry-After (or the backoff) before the next try, or raise."""
        server_wait = err.retry_after
        wait = server_wait if server_wait is not None else self._backoff(attempt)
        if err.status == 429:
            self._limiter.pause(wait)  # the whole mailbox backs off, not just this thread
        if attempt < self.max_attempts and wait <= self._max_inline_wait:
            log.info("Graph %s %s for %s: retrying in %.2fs", err.status, err.code, self.mailbox, wait)
            pacing.sleep(wait)
            return
        throttled = err.status == 429
        what = (
            f"Microsoft Graph is {'throttling' if throttled else 'unavailable for'} "
            f"mailbox {self.mailbox} ({err.status} {err.code or 'error'})"
        )
        # The server's wait is the task's countdown as given; without one the task backs off.
        waiting = f"waiting for Microsoft 365 (Retry-After {math.ceil(server_wait)} s): " if server_wait else ""
        raise TransientSourceError(
            self.errors.scrub(f"{waiting}{what}."),
            code="throttled" if throttled else "unavailable",
            retry_after=server_wait,
        )

    def _renew(self, rejected: str) -> None:
        try:
            self.con.ensure_token(rejected=rejected)
        except Exception as exc:  # classified like any other token failure
            raise self.errors.auth(exc) from None

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt - 1, base=self._backoff_base, cap=_MAX_BACKOFF, jitter=(0.8, 1.2))


def _read_body(response: requests.Response) -> bytes:
    chunks = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=_CHUNK):
            chunks.extend(chunk)
    finally:
        response.close()
    return bytes(chunks)


def _read_body_to(response: requests.Response, sink: Sink, sink_from: int) -> tuple[bytes | None, Any]:
    """(body, None) for a body under ``sink_from`` bytes; (None, what the sink returned)
    for a bigger one: the chunks read so far, then the rest as it arrives, go to the
    sink (which stores them whole or not at all: a body broken off raises through it)."""
    head: list[bytes] = []
    size = 0
    try:
        chunks = response.iter_content(chunk_size=_CHUNK)
        for chunk in chunks:
            head.append(chunk)
            size += len(chunk)
            if size >= sink_from:
                return None, sink(itertools.chain(head, chunks))
        return b"".join(head), None
    finally:
        response.close()


def _origin(url: str) -> str:
    return urlsplit(url)._replace(path="", query="", fragment="").geturl()
