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

from __future__ import annotations

import base64
import bisect
import collections
import dataclasses
import email
import email.policy
import email.utils
import hashlib
import json
import math
import os
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import trustme

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

# Well-known folder names (mailFolder resource doc), with the display names of an English mailbox
# and their parent. Hidden ones are left out of plain `mailFolders` listings.
_WELL_KNOWN: list[tuple[str, str, str | None, bool]] = [
    # (well-known name, display name, parent well-known name, hidden)
    ("msgfolderroot", "Top of Information Store", None, False),
    ("inbox", "Inbox", "msgfolderroot", False),
    ("drafts", "Drafts", "msgfolderroot", False),
    ("sentitems", "Sent Items", "msgfolderroot", False),
    ("deleteditems", "Deleted Items", "msgfolderroot", False),
    ("junkemail", "Junk Email", "msgfolderroot", False),
    ("archive", "Archive", "msgfolderroot", False),
    ("outbox", "Outbox", "msgfolderroot", False),
    ("conversationhistory", "Conversation History", "msgfolderroot", False),
    ("scheduled", "Scheduled", "msgfolderroot", False),
    ("clutter", "Clutter", "msgfolderroot", True),
    ("syncissues", "Sync Issues", "msgfolderroot", True),
    ("conflicts", "Conflicts", "syncissues", True),
    ("localfailures", "Local Failures", "syncissues", True),
    ("serverfailures", "Server Failures", "syncissues", True),
    ("searchfolders", "Finder", "msgfolderroot", True),
    ("recoverableitemsdeletions", "Deletions", None, True),
]
_WELL_KNOWN_NAMES = {name for name, *_ in _WELL_KNOWN}

_MAIL_READ_ROLES = {"Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic.All", "Mail.ReadBasic"}
_MAIL_WRITE_ROLES = {"Mail.ReadWrite"}

_DEFAULT_PAGE = 10  # Graph's default page size for messages and mailFolders listings
_MAX_TOP = 1000
_DELTA_FILTER_CAP = 5000  # a delta round with $filter returns at most 5,000 messages


_GRAPH_DEFAULT_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "ErrorAccessDenied",
    404: "ErrorItemNotFound",
    429: "TooManyRequests",
    500: "generalException",
    502: "generalException",
    503: "serviceNotAvailable",
    504: "GatewayTimeout",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _opaque_id(prefix: str, *parts: object) -> str:
    """A case-sensitive, base64-looking id ending in '=' like Exchange's (never parsed)."""
    raw = "\x1f".join(str(p) for p in parts).encode()
    return prefix + base64.urlsafe_b64encode(hashlib.blake2b(raw, digest_size=47).digest()).decode()


def _parse_dt(text: str) -> datetime:
    text = text.strip().strip("'")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def make_mime(
    subject: str = "Test message",
    *,
    sender: str = "Sender <sender@example.org>",
    to: str = "alice@contoso.com",
    body: str = "Hello.\n",
    date: datetime | None = None,
    message_id: str | None = None,
    attachments: Iterable[tuple[str, bytes]] = (),
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """Build an RFC 822 message like the ones Exchange hands out from ``$value``."""
    msg = EmailMessage()
    msg["Received"] = "from mail.example.org (10.0.0.1) by EXCH01.contoso.com; " + (
        email.utils.format_datetime(date or _now())
    )
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date or _now())
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="example.org")
    msg["X-MS-Exchange-Organization-AuthAs"] = "Anonymous"
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, content in attachments:
        msg.add_attachment(content, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes()


# --------------------------------------------------------------------------------------------
# Directory and mailbox model
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Tenant:
    tenant_id: str
    domains: list[str]
    display_name: str


@dataclasses.dataclass
class _App:
    client_id: str
    tenant_id: str
    secret: str
    secret_expired: bool
    roles: set[str]
    allowed_mailboxes: set[str] | None  # an application access policy; None: all mailboxes


@dataclasses.dataclass
class _Token:
    app: _App
    issued: float
    server_expires: float  # when the fake starts answering 401 (may be before `exp`)
    revoked: bool = False


@dataclasses.dataclass
class _Folder:
    id: str
    name: str
    parent_id: str | None
    hidden: bool = False
    well_known: str | None = None
    search: bool = False
    search_sources: list[str] = dataclasses.field(default_factory=list)
    filter_query: str = ""
    messages: dict[int, None] = dataclasses.field(default_factory=dict)  # ordered set of keys
    # Delta bookkeeping: (seq, key, kind, regular id at the time) with kind in added/updated/removed.
    events: list[tuple[int, int, str, str]] = dataclasses.field(default_factory=list)
    event_seqs: list[int] = dataclasses.field(default_factory=list)
    generation: int = 0  # bumped by invalidate_delta(): older state tokens answer 410


@dataclasses.dataclass
class _Message:
    key: int
    immutable_id: str
    regular_id: str
    folder_id: str
    raw: bytes
    received: datetime
    created: datetime
    modified: datetime
    change_key: str
    is_read: bool = False
    moves: int = 0
    _meta: dict[str, Any] | None = None

    def meta(self) -> dict[str, Any]:
        """Header-derived properties, parsed on first use (bulk-loaded mail is never parsed)."""
        if self._meta is None:
            parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
            text = ""
            body_part = parsed.get_body(preferencelist=("plain", "html"))
            if body_part is not None:
                try:
                    text = body_part.get_content()
                except (LookupError, ValueError):
                    text = ""
            attachments = []
            for part in parsed.iter_attachments():
                payload = part.get_payload(decode=True)
                attachments.append(
                    {
                        "name": part.get_filename() or "attachment",
                        "contentType": part.get_content_type(),
                        "isInline": part.get_content_disposition() == "inline",
                        "contentId": (part.get("Content-ID") or "").strip("<>") or None,
                        "bytes": payload if isinstance(payload, bytes) else b"",
                        "item": part.get_content_type() == "message/rfc822",
                    }
                )
            date = parsed.get("Date")
            try:
                sent = email.utils.parsedate_to_datetime(str(date)) if date else None
            except (TypeError, ValueError):
                sent = None
            self._meta = {
                "subject": str(parsed.get("Subject", "")),
                "from": _addresses(parsed.get_all("From", [])),
                "sender": _addresses(parsed.get_all("Sender", []) or parsed.get_all("From", [])),
                "to": _addresses(parsed.get_all("To", [])),
                "cc": _addresses(parsed.get_all("Cc", [])),
                "bcc": _addresses(parsed.get_all("Bcc", [])),
                "reply_to": _addresses(parsed.get_all("Reply-To", [])),
                "message_id": str(parsed.get("Message-ID", "")) or None,
                "sent": sent,
                "text": text,
                "headers": [{"name": k, "value": str(v)} for k, v in parsed.items()],
                "attachments": attachments,
            }
        return self._meta


def _addresses(values: list[Any]) -> list[dict[str, Any]]:
    return [
        {"emailAddress": {"name": name or addr, "address": addr}}
        for name, addr in email.utils.getaddresses([str(v) for v in values])
        if addr
    ]


@dataclasses.dataclass
class _Mailbox:
    address: str
    aliases: set[str]
    user_id: str
    tenant_id: str
    display_name: str
    state: str  # "ok" | "not_rest" | "no_mailbox"
    folders: dict[str, _Folder] = dataclasses.field(default_factory=dict)
    well_known: dict[str, str] = dataclasses.field(default_factory=dict)
    messages: dict[int, _Message] = dataclasses.field(default_factory=dict)
    ids: dict[str, int] = dataclasses.field(default_factory=dict)  # immutable + current regular ids
    seq: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclasses.dataclass
class _DeltaRound:
    """One round of a folder's delta: entries fixed when the round starts (like a sync state)."""

    mailbox: str
    folder_id: str
    generation: int
    entries: list[tuple[int, str, str]]  # (key, kind created/updated/removed, regular id if removed)
    end_seq: int
    select: list[str] | None
    filter_after: tuple[str, datetime] | None
    change_type: str | None
    empty_page_served: bool = False


@dataclasses.dataclass
class _DeltaState:
    mailbox: str
    folder_id: str
    generation: int
    seq: int
    select: list[str] | None
    filter_after: tuple[str, datetime] | None
    change_type: str | None


@dataclasses.dataclass
class ErrorRule:
    """A fault injected by :meth:`GraphFake.inject_error` (``remaining`` None = forever)."""

    status: int
    code: str | None
    message: str
    path: re.Pattern[str] | None
    mailbox: str | None
    method: str | None
    remaining: int | None
    retry_after: str | None
    headers: dict[str, str]
    body: bytes | None
    delay: float
    slow_body: float
    hits: int = 0


@dataclasses.dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    status: int
    kind: str
    mailbox: str | None
    started: float
    prefer: str


@dataclasses.dataclass
class FakeStats:
    """Counters, globally or for one mailbox (see :meth:`GraphFake.stats`)."""

    graph_requests: int = 0  # every request to /v1.0 (or /beta), whatever the answer
    token_requests: int = 0
    discovery_requests: int = 0
    tokens_issued: int = 0
    by_status: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    by_kind: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    throttled: int = 0  # 429 answers of any origin (model or injected)
    concurrency_rejections: int = 0  # "the 5th concurrent request"
    window_rejections: int = 0
    injected: int = 0
    max_in_flight: int = 0  # highest number of simultaneous requests that *arrived*

    def copy(self) -> FakeStats:
        return dataclasses.replace(
            self, by_status=collections.Counter(self.by_status), by_kind=collections.Counter(self.by_kind)
        )


@dataclasses.dataclass
class _ThrottleState:
    in_flight: int = 0
    arrivals: collections.deque[float] = dataclasses.field(default_factory=collections.deque)


@dataclasses.dataclass
class _Req:
    method: str
    path: str
    raw_query: str
    query: dict[str, str]
    headers: Any
    body: bytes
    request_id: str
    client_request_id: str

    def prefer(self) -> dict[str, str]:
        """`Prefer` may hold several comma-separated preferences (O365 joins them)."""
        result: dict[str, str] = {}
        for header in self.headers.get_all("Prefer") or []:
            for part in header.split(","):
                name, _, value = part.strip().partition("=")
                if name:
                    result[name.strip().lower()] = value.strip().strip('"')
        return result

    def immutable(self) -> bool:
        return self.prefer().get("idtype", "").lower() == "immutableid"


@dataclasses.dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    content_type: str = "application/json"
    slow_body: float = 0.0  # pause after the first half of the body (read-timeout tests)


class _GraphFakeError(Exception):
    """Raised inside handlers to answer with a Graph error envelope."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, fake: GraphFake, address: tuple[str, int], context: ssl.SSLContext):
        self.fake = fake
        self.ssl_context = context
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake in the per-connection thread, so a stalled client never blocks accept().
        # No Nagle: headers and body go out as separate TLS records (40 ms delayed-ACK stalls).
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Graph
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        req = _Req(
            method=self.command,
            path=split.path,
            raw_query=split.query,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=self.headers,
            body=body,
            request_id=str(uuid.uuid4()),
            client_request_id=self.headers.get("client-request-id") or str(uuid.uuid4()),
        )
        try:
            self.server.fake._serve(req, self)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

    def write_reply(self, reply: _Reply, release: Any) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.status != 204:
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
        body = reply.body
        if not body:
            release()
            self.end_headers()
            return
        self.end_headers()
        view = memoryview(body)
        if reply.slow_body:
            half = len(body) // 2
            self.wfile.write(view[:half])
            self.wfile.flush()
            time.sleep(reply.slow_body)
            view = view[half:]
        chunk = 256 * 1024
        for start in range(0, len(view), chunk):
            if start + chunk >= len(view):
                # The request stops counting as "in flight" before its last byte leaves, so a
                # client that starts a new request after reading this one never races the count.
                release()
            self.wfile.write(view[start : start + chunk])
        self.wfile.flush()


# --------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------


class GraphFake:
    """Entra ID + Graph mail on ``https://127.0.0.1:<port>``; a context manager.

    Python API for tests: :meth:`add_tenant`, :meth:`add_app`, :meth:`add_mailbox`,
    :meth:`add_folder`, :meth:`add_message`, :meth:`move_message`, :meth:`delete_message`,
    :meth:`update_message`, :meth:`invalidate_delta`, :meth:`inject_error`, :meth:`set_throttle`,
    :meth:`set_latency`, :meth:`set_token_lifetime`, :meth:`revoke_tokens`, :meth:`stats`,
    :meth:`reset`. Attributes: ``base_url`` (both authority host and Graph base URL),
    ``ca_pem`` (path of the CA certificate to trust), ``requests`` (a log of requests).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tmp_dir: str | None = None):
        self._host = host
        self._port = port
        self._tmp_dir = tmp_dir
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ca = trustme.CA()
        self.ca_pem = ""
        self.base_url = ""
        self._owned_tmp: tempfile.TemporaryDirectory[str] | None = None
        self._init_state()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> GraphFake:
        if self._server is not None:
            return self
        if self._tmp_dir is None:
            self._owned_tmp = tempfile.TemporaryDirectory(prefix="graph-fake-")
            directory = self._owned_tmp.name
        else:
            directory = self._tmp_dir
        self.ca_pem = os.path.join(directory, "graph-fake-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(self._host, "localhost").configure_cert(context)
        self._server = _Server(self, (self._host, self._port), context)
        self.base_url = f"https://{self._host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
        if self._owned_tmp is not None:
            self._owned_tmp.cleanup()
            self._owned_tmp = None

    def __enter__(self) -> GraphFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(urlsplit(self.base_url).port or 0)

    def client_config(self) -> dict[str, str]:
        """Keyword arguments that point the product's GraphClient at this fake."""
        return {"authority_host": self.base_url, "graph_url": self.base_url, "ca_bundle": self.ca_pem}

    def _init_state(self) -> None:
        self._tenants: dict[str, _Tenant] = {}
        self._apps: dict[str, _App] = {}
        self._tokens: dict[str, _Token] = {}
        self._mailboxes: dict[str, _Mailbox] = {}
        self._mailbox_alias: dict[str, str] = {}
        self._rounds: dict[str, _DeltaRound] = {}
        self._delta_states: dict[str, _DeltaState] = {}
        self._rules: list[ErrorRule] = []
        self._next_key = 0
        self._token_expires_in = 3599
        self._token_server_lifetime: float | None = None
        self._throttle: dict[tuple[str, str], _ThrottleState] = {}
        self.max_concurrent: int | None = None
        self.window_requests: int | None = None
        self.window_seconds = 600.0
        self.retry_after_format = "int"
        self.concurrency_retry_after = 1.0
        self._latency = 0.0
        self._latency_path: re.Pattern[str] | None = None
        self.top_over_limit = "clamp"  # or "error"
        self.delta_default_page = _DEFAULT_PAGE
        self.delta_replay = False  # repeat the previous page's last entry (Graph may replay)
        self.delta_empty_page = False  # an empty page with a nextLink before the last one
        self.reset_code = "syncStateNotFound"
        self._stats = FakeStats()
        self._mailbox_stats: dict[str, FakeStats] = collections.defaultdict(FakeStats)
        self.requests: list[RequestRecord] = []

    def reset(self) -> None:
        """Forget every tenant, app, mailbox, rule and counter (the server keeps running)."""
        with self._lock:
            self._init_state()

    # -- directory ---------------------------------------------------------------------------

    def add_tenant(self, tenant_id: str | None = None, *, domains: Iterable[str] = (), name: str = "Contoso") -> str:
        """Register a tenant (GUID + verified domain names); returns the tenant id."""
        tenant_id = tenant_id or str(uuid.uuid4())
        with self._lock:
            self._tenants[tenant_id.lower()] = _Tenant(tenant_id, [d.lower() for d in domains], name)
        return tenant_id

    def add_app(
        self,
        tenant: str,
        client_id: str | None = None,
        secret: str | None = None,
        *,
        secret_expired: bool = False,
        roles: Iterable[str] = ("Mail.Read",),
        allowed_mailboxes: Iterable[str] | None = None,
    ) -> tuple[str, str]:
        """Register an app with a client secret and application permissions.

        ``allowed_mailboxes`` models an application access policy: other mailboxes answer
        ``403 ErrorAccessDenied "Access to OData is disabled."``. Moving and deleting need
        ``Mail.ReadWrite``. Returns ``(client_id, secret)``.
        """
        client_id = client_id or str(uuid.uuid4())
        secret = secret or ("Sx8Q~" + secrets.token_urlsafe(30))
        with self._lock:
            tenant_obj = self._tenant(tenant)
            if tenant_obj is None:
                raise KeyError(f"unknown tenant {tenant}")
            self._apps[client_id] = _App(
                client_id=client_id,
                tenant_id=tenant_obj.tenant_id,
                secret=secret,
                secret_expired=secret_expired,
                roles=set(roles),
                allowed_mailboxes=None if allowed_mailboxes is None else {a.lower() for a in allowed_mailboxes},
            )
        return client_id, secret

    def update_app(self, client_id: str, **changes: Any) -> None:
        """Change an app's ``secret``, ``secret_expired``, ``roles`` or ``allowed_mailboxes``."""
        with self._lock:
            app = self._apps[client_id]
            for name, value in changes.items():
                if name == "allowed_mailboxes" and value is not None:
                    value = {a.lower() for a in value}
                if name == "roles":
                    value = set(value)
                setattr(app, name, value)

    def add_mailbox(
        self,
        address: str,
        *,
        tenant: str | None = None,
        state: str = "ok",
        aliases: Iterable[str] = (),
        display_names: dict[str, str] | None = None,
    ) -> str:
        """Create a user with a mailbox and its well-known folders; returns the user id.

        ``state``: "ok", "not_rest" (404 MailboxNotEnabledForRESTAPI: inactive, soft-deleted or
        on-premises) or "no_mailbox" (404 ResourceNotFound: a user without a mailbox).
        ``display_names`` renames well-known folders, e.g. ``{"inbox": "Posteingang"}``.
        """
        with self._lock:
            if tenant is None:
                if len(self._tenants) != 1:
                    raise ValueError("pass tenant= when several tenants exist")
                tenant_obj = next(iter(self._tenants.values()))
            else:
                found = self._tenant(tenant)
                if found is None:
                    raise KeyError(f"unknown tenant {tenant}")
                tenant_obj = found
            user_id = str(uuid.uuid4())
            mailbox = _Mailbox(
                address=address.lower(),
                aliases={a.lower() for a in aliases},
                user_id=user_id,
                tenant_id=tenant_obj.tenant_id,
                display_name=address.split("@")[0].title(),
                state=state,
            )
            for name, display, parent, hidden in _WELL_KNOWN:
                folder_id = _opaque_id("AAMkAGI2", "folder", user_id, name)
                parent_id = mailbox.well_known.get(parent) if parent else None
                display = (display_names or {}).get(name, display)
                mailbox.folders[folder_id] = _Folder(folder_id, display, parent_id, hidden=hidden, well_known=name)
                mailbox.well_known[name] = folder_id
            self._mailboxes[mailbox.address] = mailbox
            for alias in [mailbox.address, user_id, *mailbox.aliases]:
                self._mailbox_alias[alias.lower()] = mailbox.address
        return user_id

    def add_folder(
        self,
        mailbox: str,
        name: str,
        parent: str = "msgfolderroot",
        *,
        hidden: bool = False,
        search: bool = False,
        search_sources: Iterable[str] = ("inbox",),
        filter_query: str = "isRead eq false",
    ) -> str:
        """Create a folder under ``parent`` (well-known name, folder id or "Inbox/Sub" path).

        ``search=True`` makes a ``#microsoft.graph.mailSearchFolder`` whose contents are the
        messages of ``search_sources`` (duplicates, which an archiver must skip).
        """
        with self._lock:
            mb = self._mailbox_or_raise(mailbox)
            parent_folder = self._folder_by_ref(mb, parent)
            folder_id = _opaque_id("AAMkAGI2", "folder", mb.user_id, parent_folder.id, name, len(mb.folders))
            sources = [self._folder_by_ref(mb, s).id for s in search_sources] if search else []
            mb.folders[folder_id] = _Folder(
                folder_id,
                name,
                parent_folder.id,
                hidden=hidden,
                search=search,
                search_sources=sources,
                filter_query=filter_query if search else "",
            )
        return folder_id

    def folder_id(self, mailbox: str, ref: str) -> str:
        """The id of a folder given a well-known name, an id or a display path."""
        with self._lock:
            return self._folder_by_ref(self._mailbox_or_raise(mailbox), ref).id

    def add_message(
        self,
        mailbox: str,
        folder: str,
        raw: bytes,
        received: datetime | None = None,
        *,
        is_read: bool = False,
    ) -> str:
        """Deliver ``raw`` (RFC 822 bytes) into ``folder``; returns the message's immutable id."""
        received = (received or _now()).astimezone(UTC).replace(microsecond=0)
        with self._lock:
            mb = self._mailbox_or_raise(mailbox)
            target = self._folder_by_ref(mb, folder)
            self._next_key += 1
            key = self._next_key
            immutable = _opaque_id("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A", "imm", mb.user_id, key)
            msg = _Message(
                key=key,
                immutable_id=immutable,
                regular_id=_opaque_id("AAMkAGI2THVSAAA", "reg", mb.user_id, key, target.id, 0),
                folder_id=target.id,
                raw=raw,
                received=received,
                created=received,
                modified=received,
                change_key=_b64url(secrets.token_bytes(12)),
                is_read=is_read,
            )
            mb.messages[key] = msg
            mb.ids[immutable] = key
            mb.ids[msg.regular_id] = key
            target.messages[key] = None
            self._record(mb, target, key, "added", msg.regular_id)
        return immutable

    def move_message(self, mailbox: str, message_id: str, target: str) -> str:
        """Move a message; its regular id changes, its immutable id does not. Returns the new
        regular id."""
        with self._lock:
            mb = self._mailbox_or_raise(mailbox)
            msg = self._message_or_raise(mb, message_id)
            return self._move(mb, msg, self._folder_by_ref(mb, target))

    def delete_message(self, mailbox: str, message_id: str) -> None:
        """Hard-delete a message (a delta round then reports it ``@removed``)."""
        with self._lock:
            mb = self._mailbox_or_raise(mailbox)
            self._delete(mb, self._message_or_raise(mb, message_id))

    def update_message(self, mailbox: str, message_id: str, *, is_read: bool = True) -> None:
        """Change a property (a delta round reports the message as updated)."""
        with self._lock:
            mb = self._mailbox_or_raise(mailbox)
            msg = self._message_or_raise(mb, message_id)
            msg.is_read = is_read
            msg.modified = _now()
            msg.change_key = _b64url(secrets.token_bytes(12))
            self._record(mb, mb.folders[msg.folder_id], msg.key, "updated", msg.regular_id)

    def message_ids(self, mailbox: str, folder: str, *, immutable: bool = True) -> list[str]:
        with self._lock:
            mb = self._mailbox_or_raise(mailbox)
            target = self._folder_by_ref(mb, folder)
            return [mb.messages[k].immutable_id if immutable else mb.messages[k].regular_id for k in target.messages]

    def message_count(self, mailbox: str, folder: str | None = None) -> int:
        with self._lock:
            mb = self._mailbox_or_raise(mailbox)
            if folder is None:
                return len(mb.messages)
            return len(self._folder_by_ref(mb, folder).messages)

    def invalidate_delta(self, mailbox: str, folder: str | None = None, *, code: str = "syncStateNotFound") -> None:
        """Make every delta/skip token of the folder (default: all folders) answer ``410 Gone``
        with ``code`` ("syncStateNotFound" or "resyncRequired") and a ``Location`` header."""
        with self._lock:
            mb = self._mailbox_or_raise(mailbox)
            targets = [self._folder_by_ref(mb, folder)] if folder else list(mb.folders.values())
            for target in targets:
                target.generation += 1
            self.reset_code = code

    # -- faults and throttling ---------------------------------------------------------------

    def inject_error(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        *,
        path: str | None = None,
        mailbox: str | None = None,
        method: str | None = None,
        times: int | None = 1,
        retry_after: float | int | str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        delay: float = 0.0,
        slow_body: float = 0.0,
    ) -> ErrorRule:
        """Answer matching requests with an error ``times`` times (None: until removed).

        ``path`` is a regex searched in the URL path (e.g. ``r"/\\$value$"``, ``"/delta"``,
        ``"/oauth2/v2.0/token"``); ``retry_after`` is sent verbatim (``2``, ``0.25``, an
        HTTP-date) or left out when None. ``status=200`` with ``slow_body`` delays the real
        answer's body instead (read timeouts); ``delay`` sleeps before answering.
        """
        defaults = {
            400: ("BadRequest", "Invalid request."),  # (Graph code, message); Entra: see _rule_reply
            401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
            403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
            404: ("ErrorItemNotFound", "The specified object was not found in the store."),
            429: ("TooManyRequests", "Please retry again later."),
            500: ("generalException", "General exception while processing."),
            502: ("generalException", "Bad gateway."),
            503: ("serviceNotAvailable", "The service is temporarily unavailable."),
            504: ("GatewayTimeout", "The gateway did not receive a response in time."),
        }
        default_code, default_message = defaults.get(status, ("UnknownError", "Error."))
        rule = ErrorRule(
            status=status,
            code=code,  # None: a default fitting the surface (Graph or Entra) at answer time
            message=message or default_message,
            path=re.compile(path) if path else None,
            mailbox=mailbox.lower() if mailbox else None,
            method=method.upper() if method else None,
            remaining=times,
            retry_after=None if retry_after is None else str(retry_after),
            headers=dict(headers or {}),
            body=body,
            delay=delay,
            slow_body=slow_body,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_errors(self) -> None:
        with self._lock:
            self._rules.clear()

    def set_throttle(
        self,
        *,
        max_concurrent: int | None = 4,
        window_requests: int | None = None,
        window_seconds: float = 600.0,
        retry_after: str = "int",
        concurrency_retry_after: float = 1.0,
    ) -> None:
        """Switch the per app+mailbox throttling model on (None disables a limit).

        Graph's values are 4 concurrent and 10,000 requests per 600 s; scale the window for tests,
        e.g. ``window_requests=1000, window_seconds=2``. ``retry_after`` formats the header of
        throttled answers: "int" (ceil seconds), "float" (e.g. 2.128), "date" (HTTP-date) or
        "none" (header absent). Rejected requests do not count in the window.
        """
        if retry_after not in {"int", "float", "date", "none"}:
            raise ValueError(retry_after)
        with self._lock:
            self.max_concurrent = max_concurrent
            self.window_requests = window_requests
            self.window_seconds = window_seconds
            self.retry_after_format = retry_after
            self.concurrency_retry_after = concurrency_retry_after

    def set_latency(self, seconds: float, *, path: str | None = None) -> None:
        """Sleep this long inside every Graph request (matching ``path`` regex), in flight."""
        with self._lock:
            self._latency = seconds
            self._latency_path = re.compile(path) if path else None

    def set_token_lifetime(self, expires_in: int = 3599, *, server_lifetime: float | None = None) -> None:
        """``expires_in`` is what the token endpoint announces (msal renews < 300 s before);
        ``server_lifetime`` (seconds) makes Graph reject tokens earlier than announced."""
        with self._lock:
            self._token_expires_in = expires_in
            self._token_server_lifetime = server_lifetime

    def revoke_tokens(self) -> None:
        """Every token issued so far answers 401 from now on."""
        with self._lock:
            for token in self._tokens.values():
                token.revoked = True

    def stats(self, mailbox: str | None = None) -> FakeStats:
        with self._lock:
            if mailbox is None:
                return self._stats.copy()
            return self._mailbox_stats[mailbox.lower()].copy()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = FakeStats()
            self._mailbox_stats = collections.defaultdict(FakeStats)
            self.requests = []

    # -- internals: model helpers -------------------------------------------------------------

    def _tenant(self, ref: str) -> _Tenant | None:
        ref = ref.lower()
        if ref in self._tenants:
            return self._tenants[ref]
        for tenant in self._tenants.values():
            if ref in tenant.domains:
                return tenant
        return None

    def _mailbox_or_raise(self, ref: str) -> _Mailbox:
        address = self._mailbox_alias.get(ref.lower())
        if address is None:
            raise KeyError(f"unknown mailbox {ref}")
        return self._mailboxes[address]

    def _message_or_raise(self, mb: _Mailbox, message_id: str) -> _Message:
        key = mb.ids.get(message_id)
        if key is None or key not in mb.messages:
            raise KeyError(f"unknown message {message_id}")
        return mb.messages[key]

    def _folder_by_ref(self, mb: _Mailbox, ref: str) -> _Folder:
        if ref in mb.folders:
            return mb.folders[ref]
        if ref.lower() in mb.well_known:
            return mb.folders[mb.well_known[ref.lower()]]
        current: _Folder | None = None
        for part in ref.split("/"):
            parent_id = current.id if current else mb.well_known["msgfolderroot"]
            matches = [f for f in mb.folders.values() if f.parent_id == parent_id and f.name.lower() == part.lower()]
            if not matches:
                raise KeyError(f"unknown folder {ref}")
            current = matches[0]
        assert current is not None
        return current

    def _record(self, mb: _Mailbox, folder: _Folder, key: int, kind: str, regular_id: str) -> None:
        seq = mb.next_seq()
        folder.events.append((seq, key, kind, regular_id))
        folder.event_seqs.append(seq)

    def _move(self, mb: _Mailbox, msg: _Message, target: _Folder) -> str:
        source = mb.folders[msg.folder_id]
        if source.id == target.id:
            return msg.regular_id
        del source.messages[msg.key]
        self._record(mb, source, msg.key, "removed", msg.regular_id)
        mb.ids.pop(msg.regular_id, None)  # the old regular id stops working
        msg.moves += 1
        msg.regular_id = _opaque_id("AAMkAGI2THVSAAA", "reg", mb.user_id, msg.key, target.id, msg.moves)
        msg.folder_id = target.id
        msg.modified = _now()
        mb.ids[msg.regular_id] = msg.key
        target.messages[msg.key] = None
        self._record(mb, target, msg.key, "added", msg.regular_id)
        return msg.regular_id

    def _delete(self, mb: _Mailbox, msg: _Message) -> None:
        folder = mb.folders[msg.folder_id]
        del folder.messages[msg.key]
        self._record(mb, folder, msg.key, "removed", msg.regular_id)
        mb.ids.pop(msg.regular_id, None)
        mb.ids.pop(msg.immutable_id, None)
        del mb.messages[msg.key]

    def _folder_items(self, mb: _Mailbox, folder: _Folder) -> list[_Message]:
        if folder.search:
            keys: list[int] = []
            for source in folder.search_sources:
                keys.extend(mb.folders[source].messages)
            return [mb.messages[k] for k in keys]
        return [mb.messages[k] for k in folder.messages]

    # -- internals: serving -------------------------------------------------------------------

    def _serve(self, req: _Req, handler: _Handler) -> None:
        released = False
        release_hook: list[Any] = []

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                for hook in release_hook:
                    hook()

        started = time.monotonic()
        try:
            if req.path.startswith(("/v1.0/", "/beta/")):
                reply, mailbox, kind = self._graph(req, release_hook)
            else:
                reply, mailbox, kind = self._entra(req), None, "entra"
            reply.headers.setdefault("request-id", req.request_id)
            reply.headers.setdefault("client-request-id", req.client_request_id)
            with self._lock:
                self._count_reply(reply, mailbox, kind)
                self.requests.append(
                    RequestRecord(
                        req.method,
                        req.path,
                        req.raw_query,
                        reply.status,
                        kind,
                        mailbox,
                        started,
                        ",".join(req.headers.get_all("Prefer") or []),
                    )
                )
            handler.write_reply(reply, release)
        finally:
            release()

    def _count_reply(self, reply: _Reply, mailbox: str | None, kind: str) -> None:
        targets = [self._stats] + ([self._mailbox_stats[mailbox]] if mailbox else [])
        for stats in targets:
            stats.by_status[reply.status] += 1
            stats.by_kind[kind] += 1
            if reply.status == 429:
                stats.throttled += 1
            if kind not in {"entra", "token", "discovery"}:
                stats.graph_requests += 1

    def _match_rule(self, req: _Req, mailbox: str | None) -> ErrorRule | None:
        for rule in self._rules:
            if rule.remaining is not None and rule.remaining <= 0:
                continue
            if rule.method and rule.method != req.method:
                continue
            if rule.mailbox and rule.mailbox != mailbox:
                continue
            if rule.path and not rule.path.search(unquote(req.path)):
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
            rule.hits += 1
            return rule
        return None

    def _rule_reply(self, req: _Req, rule: ErrorRule, *, graph: bool) -> _Reply:
        headers = dict(rule.headers)
        if rule.retry_after is not None:
            headers["Retry-After"] = rule.retry_after
        if rule.body is not None:
            return _Reply(rule.status, rule.body, headers, content_type=headers.pop("Content-Type", "text/html"))
        if graph:
            code = rule.code or _GRAPH_DEFAULT_CODES.get(rule.status, "UnknownError")
            return self._graph_error(req, rule.status, code, rule.message, headers)
        # Entra's envelope; throttling and outages come as temporarily_unavailable/server_error.
        error = rule.code or ("temporarily_unavailable" if rule.status in (429, 503) else "server_error")
        if rule.status < 429 and not rule.code:
            error = "invalid_request"
        reply = self._aad_error(rule.status, error, 50196 if rule.status == 429 else 90033, rule.message)
        reply.headers.update(headers)
        return reply

    def _format_retry_after(self, seconds: float) -> str | None:
        seconds = max(seconds, 0.001)
        if self.retry_after_format == "none":
            return None
        if self.retry_after_format == "float":
            return f"{seconds:.3f}"
        if self.retry_after_format == "date":
            return email.utils.formatdate(time.time() + seconds, usegmt=True)
        return str(max(1, math.ceil(seconds)))

    # -- Entra ID -----------------------------------------------------------------------------

    def _entra(self, req: _Req) -> _Reply:
        segs = [unquote(s) for s in req.path.strip("/").split("/")]
        with self._lock:
            rule = self._match_rule(req, None)
            if rule is not None:
                self._stats.injected += 1
                if rule.status == 200:
                    rule = None
        if rule is not None:
            if rule.delay:
                time.sleep(rule.delay)
            return self._rule_reply(req, rule, graph=False)
        if segs[:3] == ["common", "discovery", "instance"]:
            return self._instance_discovery(req)
        if len(segs) == 4 and [s.lower() for s in segs[1:]] == [
            "v2.0",
            ".well-known",
            "openid-configuration",
        ]:
            with self._lock:
                self._stats.discovery_requests += 1
            return self._openid_configuration(segs[0])
        if len(segs) == 4 and [s.lower() for s in segs[1:]] == ["oauth2", "v2.0", "token"]:
            if req.method != "POST":
                return _Reply(405, b"", {"Allow": "POST"})
            with self._lock:
                self._stats.token_requests += 1
                return self._token(req, segs[0])
        if len(segs) == 4 and [s.lower() for s in segs[1:]] == ["discovery", "v2.0", "keys"]:
            return _Reply(200, json.dumps({"keys": []}).encode())
        return _Reply(404, b"Not Found", content_type="text/plain")

    def _aad_error(self, status: int, error: str, code: int, description: str) -> _Reply:
        now = _now()
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        text = (
            f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} "
            f"Timestamp: {now:%Y-%m-%d %H:%M:%SZ}"
        )
        body = {
            "error": error,
            "error_description": text,
            "error_codes": [code],
            "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"{self.base_url}/error?code={code}",
        }
        return _Reply(status, json.dumps(body).encode(), {"Cache-Control": "no-store, no-cache"})

    def _instance_discovery(self, req: _Req) -> _Reply:
        host = urlsplit(self.base_url).netloc
        endpoint = req.query.get("authorization_endpoint", "")
        tenant = urlsplit(endpoint).path.strip("/").split("/")[0] if endpoint else "common"
        body = {
            "tenant_discovery_endpoint": f"{self.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
        return _Reply(200, json.dumps(body).encode())

    def _openid_configuration(self, tenant_ref: str) -> _Reply:
        with self._lock:
            tenant = self._tenant(tenant_ref)
        if tenant is None and tenant_ref.lower() not in {"common", "organizations", "consumers"}:
            return self._aad_error(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant_ref}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud. Check with your subscription administrator, "
                "this may happen if there are no active subscriptions for the tenant.",
            )
        tid = tenant.tenant_id if tenant else "{tenantid}"
        base = f"{self.base_url}/{tid}"
        body = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "roles"],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": urlsplit(self.base_url).netloc,
        }
        return _Reply(200, json.dumps(body).encode())

    def _token(self, req: _Req, tenant_ref: str) -> _Reply:
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        tenant = self._tenant(tenant_ref)
        if tenant is None:
            return self._aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant_ref}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
        grant = form.get("grant_type", "")
        if grant != "client_credentials":
            return self._aad_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id = form.get("client_id", "")
        secret = form.get("client_secret")
        auth = req.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):  # client_secret_basic (what msal sends)
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                client_id, secret = unquote(user.replace("+", " ")), unquote(password.replace("+", " "))
            except (ValueError, UnicodeDecodeError):
                pass
        app = self._apps.get(client_id)
        if app is None or app.tenant_id != tenant.tenant_id:
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant.display_name}'. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. You may "
                "have sent your authentication request to the wrong tenant.",
            )
        if not secret:
            if form.get("client_assertion"):
                return self._aad_error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
            return self._aad_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if secret != app.secret:
            return self._aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the "
                f"client secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        if app.secret_expired:
            return self._aad_error(
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{client_id}' are expired. Visit the Azure "
                "portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider "
                "using certificate credentials for added security: https://aka.ms/certCreds.",
            )
        scopes = form.get("scope", "").split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return self._aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {form.get('scope', '')} is not valid. Client credential "
                "flows must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        resource = scopes[0][: -len("/.default")].rstrip("/")
        if resource not in {GRAPH_RESOURCE, GRAPH_APP_ID}:
            return self._aad_error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{tenant.display_name}. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant.",
            )
        now = time.time()
        expires_in = self._token_expires_in
        claims = {
            "aud": GRAPH_RESOURCE,
            "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + expires_in,
            "app_displayname": "WebAdmin archive",
            "appid": app.client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, app.client_id)),
            "roles": sorted(app.roles),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, app.client_id)),
            "tid": tenant.tenant_id,
            "uti": _b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        header = {"typ": "JWT", "alg": "RS256", "kid": "graph-fake"}
        token = ".".join(
            [
                _b64url(json.dumps(header).encode()),
                _b64url(json.dumps(claims).encode()),
                _b64url(secrets.token_bytes(64)),
            ]
        )
        lifetime = self._token_server_lifetime if self._token_server_lifetime is not None else expires_in
        self._tokens[token] = _Token(app, now, now + lifetime)
        self._stats.tokens_issued += 1
        body = {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        }
        return _Reply(200, json.dumps(body).encode(), {"Cache-Control": "no-store, no-cache"})

    # -- Graph --------------------------------------------------------------------------------

    def _graph_error(
        self, req: _Req, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> _Reply:
        inner = {
            "date": _now().strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": req.request_id,
            "client-request-id": req.client_request_id,
        }
        if status == 429:
            inner["code"] = "429"
        body = {"error": {"code": code, "message": message, "innerError": inner}}
        return _Reply(status, json.dumps(body).encode(), dict(headers or {}))

    @staticmethod
    def _segments(path: str) -> list[str]:
        """Split an OData path; ``mailFolders('id')`` and ``users('a@b')`` become two segments."""
        result: list[str] = []
        for raw in path.strip("/").split("/"):
            seg = unquote(raw)
            match = re.fullmatch(r"([A-Za-z]+)\('(.*)'\)", seg)
            if match:
                result.extend([match.group(1), match.group(2).replace("''", "'")])
            else:
                result.append(seg)
        return result

    def _authenticate(self, req: _Req) -> _App | _Reply:
        auth = req.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return self._graph_error(req, 401, "InvalidAuthenticationToken", "Access token is empty.")
        token = self._tokens.get(auth[7:].strip())
        www = {
            "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
            'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
        }
        if token is None:
            return self._graph_error(
                req,
                401,
                "InvalidAuthenticationToken",
                "CompactToken validation failed with reason code: 80049228.",
                www,
            )
        if token.revoked or time.time() >= token.server_expires:
            return self._graph_error(
                req,
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
                www,
            )
        return token.app

    def _graph(self, req: _Req, release_hook: list[Any]) -> tuple[_Reply, str | None, str]:
        segs = self._segments(req.path)
        kind = self._kind(segs)
        with self._lock:
            app_or_reply = self._authenticate(req)
        if isinstance(app_or_reply, _Reply):
            return app_or_reply, None, kind
        app = app_or_reply
        if len(segs) < 2 or segs[1].lower() != "users":
            if len(segs) >= 2 and segs[1].lower() == "me":
                return (
                    self._graph_error(
                        req,
                        400,
                        "BadRequest",
                        "/me request is only valid with delegated authentication flow.",
                    ),
                    None,
                    kind,
                )
            seg = segs[1] if len(segs) > 1 else ""
            return (
                self._graph_error(req, 400, "BadRequest", f"Resource not found for the segment '{seg}'."),
                None,
                kind,
            )
        if len(segs) < 3:
            return self._graph_error(req, 400, "BadRequest", "Unsupported request."), None, kind
        user_ref = segs[2]
        with self._lock:
            mailbox = self._mailbox_alias.get(user_ref.lower(), user_ref.lower())
            throttle_key = (app.client_id, mailbox)
            st = self._throttle.setdefault(throttle_key, _ThrottleState())
            mstats = self._mailbox_stats[mailbox]
            st.in_flight += 1
            for stats in (self._stats, mstats):
                stats.max_in_flight = max(stats.max_in_flight, st.in_flight)
            if self.max_concurrent is not None and st.in_flight > self.max_concurrent:
                st.in_flight -= 1
                for stats in (self._stats, mstats):
                    stats.concurrency_rejections += 1
                headers = {}
                value = self._format_retry_after(self.concurrency_retry_after)
                if value is not None:
                    headers["Retry-After"] = value
                return (
                    self._graph_error(
                        req,
                        429,
                        "ApplicationThrottled",
                        "Application is over its MailboxConcurrency limit.",
                        headers,
                    ),
                    mailbox,
                    kind,
                )

        def release() -> None:
            with self._lock:
                st.in_flight -= 1

        release_hook.append(release)
        with self._lock:
            rule = self._match_rule(req, mailbox)
            if rule is not None:
                self._stats.injected += 1
                mstats.injected += 1
        slow_body = 0.0
        if rule is not None:
            if rule.delay:
                time.sleep(rule.delay)
            if rule.status != 200:
                return self._rule_reply(req, rule, graph=True), mailbox, kind
            slow_body = rule.slow_body
        with self._lock:
            if self.window_requests is not None:
                now = time.monotonic()
                while st.arrivals and st.arrivals[0] <= now - self.window_seconds:
                    st.arrivals.popleft()
                if len(st.arrivals) >= self.window_requests:
                    for stats in (self._stats, mstats):
                        stats.window_rejections += 1
                    headers = {}
                    value = self._format_retry_after(st.arrivals[0] + self.window_seconds - now)
                    if value is not None:
                        headers["Retry-After"] = value
                    return (
                        self._graph_error(req, 429, "TooManyRequests", "Please retry again later.", headers),
                        mailbox,
                        kind,
                    )
                st.arrivals.append(now)
            latency = self._latency if (self._latency_path is None or self._latency_path.search(req.path)) else 0.0
        if latency:
            time.sleep(latency)
        try:
            with self._lock:
                reply = self._mailbox_request(req, app, segs, user_ref)
        except _GraphFakeError as exc:
            reply = self._graph_error(req, exc.status, exc.code, exc.message, exc.headers)
        reply.slow_body = slow_body
        return reply, mailbox, kind

    @staticmethod
    def _kind(segs: list[str]) -> str:
        lowered = [s.lower() for s in segs]
        if lowered and lowered[-1] == "$value":
            return "value"
        if lowered and lowered[-1] == "delta":
            return "delta"
        if "attachments" in lowered:
            return "attachments"
        if lowered and lowered[-1] in {"move", "copy", "permanentdelete"}:
            return lowered[-1]
        if "messages" in lowered:
            return "messages" if lowered[-1] == "messages" else "message"
        if "mailfolders" in lowered:
            return "folders"
        return "other"

    def _mailbox_request(self, req: _Req, app: _App, segs: list[str], user_ref: str) -> _Reply:
        if not (app.roles & _MAIL_READ_ROLES):
            raise _GraphFakeError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        address = self._mailbox_alias.get(user_ref.lower())
        mb = self._mailboxes.get(address) if address else None
        if mb is None or mb.tenant_id != app.tenant_id:
            raise _GraphFakeError(404, "ErrorInvalidUser", f"The requested user '{user_ref}' is invalid.")
        if app.allowed_mailboxes is not None and not ({mb.address, mb.user_id, *mb.aliases} & app.allowed_mailboxes):
            raise _GraphFakeError(403, "ErrorAccessDenied", "Access to OData is disabled.")
        if mb.state == "not_rest":
            raise _GraphFakeError(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        if mb.state == "no_mailbox":
            raise _GraphFakeError(404, "ResourceNotFound", "Resource could not be discovered.")
        if req.method != "GET" and not (app.roles & _MAIL_WRITE_ROLES):
            raise _GraphFakeError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        rest = segs[3:]
        names = [s.lower() for s in rest]
        if not rest:
            return self._json(
                {
                    "id": mb.user_id,
                    "displayName": mb.display_name,
                    "mail": mb.address,
                    "userPrincipalName": mb.address,
                }
            )
        if names[0] == "mailfolders":
            if len(rest) == 1:
                self._only(req, "GET")
                root = mb.folders[mb.well_known["msgfolderroot"]]
                return self._list_folders(req, mb, root)
            if names[1] == "delta":
                raise _GraphFakeError(501, "NotImplemented", "mailFolders/delta is not modelled by the fake.")
            folder = self._folder_for_request(mb, rest[1])
            tail, tail_names = rest[2:], names[2:]
            if not tail:
                self._only(req, "GET")
                return self._json(self._folder_json(req, mb, folder))
            if tail_names == ["childfolders"]:
                self._only(req, "GET")
                return self._list_folders(req, mb, folder)
            if tail_names[0] == "messages":
                if len(tail) == 1:
                    self._only(req, "GET")
                    return self._list_messages(req, mb, self._folder_items(mb, folder))
                if tail_names[1:] == ["delta"]:
                    self._only(req, "GET")
                    return self._delta(req, mb, folder)
                return self._message_request(req, mb, tail[1], tail[2:])
        elif names[0] == "messages":
            if len(rest) == 1:
                self._only(req, "GET")
                items = [m for m in mb.messages.values()]
                return self._list_messages(req, mb, items)
            return self._message_request(req, mb, rest[1], rest[2:])
        raise _GraphFakeError(400, "BadRequest", f"Resource not found for the segment '{rest[0]}'.")

    @staticmethod
    def _only(req: _Req, *methods: str) -> None:
        if req.method not in methods:
            raise _GraphFakeError(405, "Request_BadRequest", f"The method {req.method} is not allowed here.")

    @staticmethod
    def _json(data: Any, status: int = 200) -> _Reply:
        return _Reply(status, json.dumps(data).encode())

    def _folder_for_request(self, mb: _Mailbox, ref: str) -> _Folder:
        if ref in mb.folders:
            return mb.folders[ref]
        if ref.lower() in mb.well_known:
            return mb.folders[mb.well_known[ref.lower()]]
        if ref.lower() in _WELL_KNOWN_NAMES:
            raise _GraphFakeError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        raise _GraphFakeError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def _folder_json(self, req: _Req, mb: _Mailbox, folder: _Folder) -> dict[str, Any]:
        items = self._folder_items(mb, folder)
        children = [f for f in mb.folders.values() if f.parent_id == folder.id]
        data: dict[str, Any] = {
            "id": folder.id,
            "displayName": folder.name,
            "parentFolderId": folder.parent_id or "",
            "childFolderCount": len(children),
            "unreadItemCount": sum(1 for m in items if not m.is_read),
            "totalItemCount": len(items),
            "isHidden": folder.hidden,
        }
        if folder.search:
            data = {
                "@odata.type": "#microsoft.graph.mailSearchFolder",
                **data,
                "isSupported": True,
                "includeNestedFolders": False,
                "sourceFolderIds": list(folder.search_sources),
                "filterQuery": folder.filter_query,
            }
        return self._apply_select(data, req.query.get("$select") or req.query.get("select"))

    @staticmethod
    def _apply_select(data: dict[str, Any], select: str | None) -> dict[str, Any]:
        if not select:
            return data
        wanted = {s.strip() for s in select.split(",") if s.strip()} | {"id"}
        return {k: v for k, v in data.items() if k in wanted or k.startswith("@odata")}

    def _page_params(self, req: _Req) -> tuple[int, int]:
        raw_top = req.query.get("$top") or req.query.get("top")
        prefer_size = req.prefer().get("odata.maxpagesize")
        try:
            top = int(raw_top) if raw_top else int(prefer_size) if prefer_size else _DEFAULT_PAGE
            skip = int(req.query.get("$skip") or req.query.get("skip") or 0)
        except ValueError as exc:
            raise _GraphFakeError(400, "ErrorInvalidUrlQuery", "Invalid value for $top or $skip.") from exc
        if top < 1:
            raise _GraphFakeError(400, "ErrorInvalidUrlQuery", "The value of $top must be at least 1.")
        if top > _MAX_TOP:
            if self.top_over_limit == "error":
                raise _GraphFakeError(400, "ErrorInvalidUrlQuery", f"The value of $top must be at most {_MAX_TOP}.")
            top = _MAX_TOP
        return top, max(skip, 0)

    def _next_link(self, req: _Req, skip: int) -> str:
        query = {k: v for k, v in parse_qsl(req.raw_query, keep_blank_values=True) if k not in {"$skip", "skip"}}
        query["$skip"] = str(skip)
        return f"{self.base_url}{req.path}?{urlencode(query, quote_via=quote, safe='$,')}"

    def _list_folders(self, req: _Req, mb: _Mailbox, parent: _Folder) -> _Reply:
        include_hidden = (req.query.get("includeHiddenFolders") or "").lower() == "true"
        children = [f for f in mb.folders.values() if f.parent_id == parent.id and (include_hidden or not f.hidden)]
        flt = req.query.get("$filter") or req.query.get("filter")
        if flt:
            match = re.fullmatch(r"\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*", flt)
            if not match:
                raise _GraphFakeError(
                    400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
                )
            name = match.group(1).replace("''", "'")
            children = [f for f in children if f.name.lower() == name.lower()]
        top, skip = self._page_params(req)
        page = children[skip : skip + top]
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#users('{quote(mb.address)}')/mailFolders",
            "value": [self._folder_json(req, mb, f) for f in page],
        }
        if skip + top < len(children):
            body["@odata.nextLink"] = self._next_link(req, skip + top)
        return self._json(body)

    _FILTER_TERM = re.compile(
        r"\s*(receivedDateTime|sentDateTime|lastModifiedDateTime|createdDateTime|isRead)\s+"
        r"(eq|ne|ge|gt|le|lt)\s+([^\s]+)\s*",
        re.IGNORECASE,
    )

    def _parse_filter(self, text: str) -> list[tuple[str, str, Any]]:
        terms = []
        for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
            match = self._FILTER_TERM.fullmatch(part)
            if not match:
                raise _GraphFakeError(
                    400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
                )
            prop, op, value = match.group(1), match.group(2).lower(), match.group(3)
            prop = prop[0].lower() + prop[1:]
            if prop == "isRead":
                parsed: Any = value.lower() == "true"
            else:
                try:
                    parsed = _parse_dt(value)
                except ValueError as exc:
                    raise _GraphFakeError(400, "BadRequest", f"Invalid filter value '{value}'.") from exc
            terms.append((prop, op, parsed))
        return terms

    @staticmethod
    def _msg_prop(msg: _Message, prop: str) -> Any:
        if prop == "receivedDateTime":
            return msg.received
        if prop == "createdDateTime":
            return msg.created
        if prop == "lastModifiedDateTime":
            return msg.modified
        if prop == "sentDateTime":
            return msg.meta()["sent"] or msg.received
        return msg.is_read

    def _matches(self, msg: _Message, terms: list[tuple[str, str, Any]]) -> bool:
        for prop, op, value in terms:
            actual = self._msg_prop(msg, prop)
            ok = {
                "eq": actual == value,
                "ne": actual != value,
                "ge": actual >= value,
                "gt": actual > value,
                "le": actual <= value,
                "lt": actual < value,
            }[op]
            if not ok:
                return False
        return True

    def _list_messages(self, req: _Req, mb: _Mailbox, items: list[_Message]) -> _Reply:
        flt = req.query.get("$filter") or req.query.get("filter")
        orderby = (req.query.get("$orderby") or req.query.get("orderby") or "").strip()
        terms = self._parse_filter(flt) if flt else []
        order_prop, descending = "receivedDateTime", True  # undocumented default: newest first
        if orderby:
            first = orderby.split(",")[0].split()
            order_prop = first[0][0].lower() + first[0][1:]
            descending = len(first) > 1 and first[1].lower() == "desc"
            if order_prop not in {
                "receivedDateTime",
                "sentDateTime",
                "createdDateTime",
                "lastModifiedDateTime",
            }:
                raise _GraphFakeError(400, "BadRequest", f"Sorting by '{first[0]}' is not supported.")
            # The documented rule: properties in $orderby must also be in $filter, first.
            if terms and terms[0][0] != order_prop:
                raise _GraphFakeError(
                    400,
                    "InefficientFilter",
                    "The restriction or sort order is too complex for this operation.",
                )
        if terms:
            items = [m for m in items if self._matches(m, terms)]
        items = sorted(items, key=lambda m: (self._msg_prop(m, order_prop), m.key), reverse=descending)
        top, skip = self._page_params(req)
        page = items[skip : skip + top]
        select = req.query.get("$select") or req.query.get("select")
        fields = [s.strip() for s in select.split(",")] if select else None
        immutable = req.immutable()
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#users('{quote(mb.address)}')/messages",
            "value": [self._message_json(mb, m, fields, immutable) for m in page],
        }
        if (req.query.get("$count") or "").lower() == "true":
            body["@odata.count"] = len(items)
        if skip + top < len(items):
            body["@odata.nextLink"] = self._next_link(req, skip + top)
        return self._json(body)

    def _message_json(self, mb: _Mailbox, msg: _Message, fields: list[str] | None, immutable: bool) -> dict[str, Any]:
        msg_id = msg.immutable_id if immutable else msg.regular_id
        if fields is not None and set(fields) <= {"id", "receivedDateTime", "parentFolderId", "isRead"}:
            # Fast path for the archiver's minimal listings (no MIME parsing).
            data: dict[str, Any] = {"@odata.etag": f'W/"{msg.change_key}"', "id": msg_id}
            if "receivedDateTime" in fields:
                data["receivedDateTime"] = _iso(msg.received)
            if "parentFolderId" in fields:
                data["parentFolderId"] = msg.folder_id
            if "isRead" in fields:
                data["isRead"] = msg.is_read
            return data
        meta = msg.meta()
        folder = mb.folders[msg.folder_id]
        text = meta["text"] or ""
        data = {
            "@odata.etag": f'W/"{msg.change_key}"',
            "id": msg_id,
            "createdDateTime": _iso(msg.created),
            "lastModifiedDateTime": _iso(msg.modified),
            "changeKey": msg.change_key,
            "categories": [],
            "receivedDateTime": _iso(msg.received),
            "sentDateTime": _iso(meta["sent"] or msg.received),
            "hasAttachments": any(not a["isInline"] for a in meta["attachments"]),
            "internetMessageId": meta["message_id"],
            "subject": meta["subject"],
            "bodyPreview": " ".join(text.split())[:255],
            "importance": "normal",
            "parentFolderId": msg.folder_id,
            "conversationId": _opaque_id("AAQkAGI2", "conv", meta["subject"]),
            "conversationIndex": _b64url(hashlib.sha1(meta["subject"].encode()).digest()),
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": False,
            "isRead": msg.is_read,
            "isDraft": folder.well_known == "drafts",
            "webLink": f"https://outlook.office365.com/owa/?ItemID={quote(msg_id)}&exvsurl=1&viewmodel=ReadMessageItem",
            "inferenceClassification": "focused",
            "body": {"contentType": "html", "content": f"<html><body><pre>{text}</pre></body></html>"},
            "sender": (meta["sender"] or [None])[0],
            "from": (meta["from"] or [None])[0],
            "toRecipients": meta["to"],
            "ccRecipients": meta["cc"],
            "bccRecipients": meta["bcc"],
            "replyTo": meta["reply_to"],
            "flag": {"flagStatus": "notFlagged"},
        }
        if fields is not None:
            if "internetMessageHeaders" in fields:
                data["internetMessageHeaders"] = meta["headers"]
            wanted = set(fields) | {"id"}
            data = {k: v for k, v in data.items() if k in wanted or k.startswith("@odata")}
        return data

    def _message_request(self, req: _Req, mb: _Mailbox, msg_ref: str, tail: list[str]) -> _Reply:
        key = mb.ids.get(msg_ref)  # ids are case-sensitive
        if key is None or key not in mb.messages:
            raise _GraphFakeError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        msg = mb.messages[key]
        names = [t.lower() for t in tail]
        immutable = req.immutable()
        if not tail:
            if req.method == "GET":
                select = req.query.get("$select") or req.query.get("select")
                fields = [s.strip() for s in select.split(",")] if select else None
                return self._json(self._message_json(mb, msg, fields, immutable))
            if req.method == "DELETE":
                self._delete(mb, msg)
                return _Reply(204)
            if req.method == "PATCH":
                changes = json.loads(req.body or b"{}")
                if "isRead" in changes:
                    msg.is_read = bool(changes["isRead"])
                msg.modified = _now()
                msg.change_key = _b64url(secrets.token_bytes(12))
                self._record(mb, mb.folders[msg.folder_id], msg.key, "updated", msg.regular_id)
                return self._json(self._message_json(mb, msg, None, immutable))
            self._only(req, "GET", "DELETE", "PATCH")
        if names == ["$value"]:
            self._only(req, "GET")
            return _Reply(200, msg.raw, content_type="text/plain")
        if names in (["move"], ["copy"]):
            self._only(req, "POST")
            try:
                destination = json.loads(req.body or b"{}").get("destinationId", "")
            except ValueError as exc:
                raise _GraphFakeError(400, "ErrorInvalidRequest", "Cannot read the request body.") from exc
            target = self._folder_for_request(mb, destination) if destination else None
            if target is None or target.search:
                raise _GraphFakeError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
            if names == ["move"]:
                self._move(mb, msg, target)
                return self._json(self._message_json(mb, msg, None, immutable), 201)
            self._next_key += 1
            copy = dataclasses.replace(
                msg,
                key=self._next_key,
                immutable_id=_opaque_id("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A", "imm", mb.user_id, self._next_key),
                regular_id=_opaque_id("AAMkAGI2THVSAAA", "reg", mb.user_id, self._next_key, target.id, 0),
                folder_id=target.id,
                moves=0,
                _meta=None,
            )
            mb.messages[copy.key] = copy
            mb.ids[copy.immutable_id] = copy.key
            mb.ids[copy.regular_id] = copy.key
            target.messages[copy.key] = None
            self._record(mb, target, copy.key, "added", copy.regular_id)
            return self._json(self._message_json(mb, copy, None, immutable), 201)
        if names == ["permanentdelete"]:
            self._only(req, "POST")
            self._delete(mb, msg)
            return _Reply(204)
        if names and names[0] == "attachments":
            return self._attachments(req, msg, tail[1:])
        raise _GraphFakeError(400, "BadRequest", f"Resource not found for the segment '{tail[0]}'.")

    def _attachments(self, req: _Req, msg: _Message, tail: list[str]) -> _Reply:
        self._only(req, "GET")
        attachments = msg.meta()["attachments"]

        def attachment_json(index: int, att: dict[str, Any]) -> dict[str, Any]:
            data: dict[str, Any] = {
                "@odata.type": "#microsoft.graph.itemAttachment" if att["item"] else "#microsoft.graph.fileAttachment",
                "id": _opaque_id("AAMkAGI2ATT", msg.immutable_id, index),
                "lastModifiedDateTime": _iso(msg.modified),
                "name": att["name"],
                "contentType": att["contentType"],
                "size": len(att["bytes"]),
                "isInline": att["isInline"],
            }
            if not att["item"]:
                data["contentId"] = att["contentId"]
                data["contentLocation"] = None
                data["contentBytes"] = base64.b64encode(att["bytes"]).decode()
            return data

        items = [attachment_json(i, a) for i, a in enumerate(attachments)]
        if not tail:
            return self._json({"value": items})
        for index, item in enumerate(items):
            if item["id"] == tail[0]:
                if tail[1:] == ["$value"]:
                    return _Reply(200, attachments[index]["bytes"], content_type="application/octet-stream")
                return self._json(item)
        raise _GraphFakeError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    # -- delta ---------------------------------------------------------------------------------

    def _delta_link_base(self, mb: _Mailbox, folder: _Folder) -> str:
        # The form the docs' sample links use: .../mailfolders('<id>')/messages/delta
        user = quote(mb.address, safe="@")
        return f"{self.base_url}/v1.0/users/{user}/mailFolders('{folder.id}')/messages/delta"

    def _gone(self, mb: _Mailbox, folder: _Folder) -> _GraphFakeError:
        return _GraphFakeError(
            410,
            self.reset_code,
            "The sync state generation is not found or has expired; a full resync is required.",
            {"Location": self._delta_link_base(mb, folder) + "?$deltatoken="},
        )

    def _delta(self, req: _Req, mb: _Mailbox, folder: _Folder) -> _Reply:
        if folder.search:
            raise _GraphFakeError(400, "ErrorInvalidRequest", "Delta is not supported on search folders.")
        prefer = req.prefer()
        try:
            page_size = int(prefer.get("odata.maxpagesize") or req.query.get("$top") or self.delta_default_page)
        except ValueError as exc:
            raise _GraphFakeError(400, "BadRequest", "Invalid odata.maxpagesize.") from exc
        page_size = max(1, min(page_size, _MAX_TOP))
        skiptoken = req.query.get("$skiptoken")
        deltatoken = req.query.get("$deltatoken")
        if skiptoken:
            round_id, _, offset_text = skiptoken.rpartition(".")
            rnd = self._rounds.get(round_id)
            if rnd is None or rnd.folder_id != folder.id or rnd.generation != folder.generation:
                raise self._gone(mb, folder)
            offset = int(offset_text or 0)
        else:
            if deltatoken:
                state = self._delta_states.get(deltatoken)
                if state is None or state.folder_id != folder.id or state.generation != folder.generation:
                    raise self._gone(mb, folder)
                rnd = self._changes_round(mb, folder, state)
            else:
                rnd = self._initial_round(req, mb, folder)
            round_id = _b64url(secrets.token_bytes(12))
            self._rounds[round_id] = rnd
            offset = 0
        immutable = req.immutable()
        end = min(offset + page_size, len(rnd.entries))
        if self.delta_empty_page and end >= len(rnd.entries) and not rnd.empty_page_served:
            rnd.empty_page_served = True
            return self._json(
                {
                    "@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(message)",
                    "@odata.nextLink": f"{self._delta_link_base(mb, folder)}?$skiptoken={round_id}.{offset}",
                    "value": [],
                }
            )
        entries = rnd.entries[offset:end]
        if self.delta_replay and offset > 0:
            entries = [rnd.entries[offset - 1], *entries]
        value = []
        for key, kind, old_regular in entries:
            if kind == "removed":
                removed_id = self._removed_id(mb, key, old_regular, immutable)
                value.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": removed_id,
                        "@removed": {"reason": "deleted"},
                    }
                )
                continue
            msg = mb.messages.get(key)
            if msg is None:  # deleted after the round started: Graph would report it next round
                continue
            item = self._message_json(mb, msg, rnd.select, immutable)
            value.append({"@odata.type": "#microsoft.graph.message", **item})
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(message)",
            "value": value,
        }
        if end < len(rnd.entries):
            body["@odata.nextLink"] = f"{self._delta_link_base(mb, folder)}?$skiptoken={round_id}.{end}"
        else:
            token = _b64url(secrets.token_bytes(18))
            self._delta_states[token] = _DeltaState(
                mb.address,
                folder.id,
                folder.generation,
                rnd.end_seq,
                rnd.select,
                rnd.filter_after,
                rnd.change_type,
            )
            body["@odata.deltaLink"] = f"{self._delta_link_base(mb, folder)}?$deltatoken={token}"
        return self._json(body)

    def _removed_id(self, mb: _Mailbox, key: int, old_regular: str, immutable: bool) -> str:
        if not immutable:
            return old_regular
        msg = mb.messages.get(key)
        if msg is not None:
            return msg.immutable_id
        return _opaque_id("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A", "imm", mb.user_id, key)

    def _initial_round(self, req: _Req, mb: _Mailbox, folder: _Folder) -> _DeltaRound:
        select_text = req.query.get("$select") or req.query.get("select")
        select = [s.strip() for s in select_text.split(",")] if select_text else None
        flt = req.query.get("$filter") or req.query.get("filter")
        filter_after = None
        if flt:
            match = re.fullmatch(r"\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*", flt, re.IGNORECASE)
            if not match:
                raise _GraphFakeError(
                    400, "ErrorInvalidUrlQueryFilter", "Delta supports only receivedDateTime ge|gt filters."
                )
            filter_after = (match.group(1).lower(), _parse_dt(match.group(2)))
        orderby = req.query.get("$orderby")
        if orderby and orderby.replace("+", " ").split() != ["receivedDateTime", "desc"]:
            raise _GraphFakeError(400, "BadRequest", "Delta supports only $orderby=receivedDateTime desc.")
        change_type = req.query.get("changeType")
        items = [mb.messages[k] for k in folder.messages]
        if filter_after:
            items = [m for m in items if self._after(m, filter_after)]
        items.sort(key=lambda m: (m.received, m.key), reverse=True)
        if filter_after:
            items = items[:_DELTA_FILTER_CAP]
        entries = [] if change_type in {"updated", "deleted"} else [(m.key, "created", "") for m in items]
        return _DeltaRound(mb.address, folder.id, folder.generation, entries, mb.seq, select, filter_after, change_type)

    @staticmethod
    def _after(msg: _Message, filter_after: tuple[str, datetime]) -> bool:
        op, when = filter_after
        return msg.received >= when if op == "ge" else msg.received > when

    def _changes_round(self, mb: _Mailbox, folder: _Folder, state: _DeltaState) -> _DeltaRound:
        start = bisect.bisect_right(folder.event_seqs, state.seq)
        first: dict[int, tuple[str, str]] = {}  # key -> (first kind in window, regular id then)
        last_seq: dict[int, int] = {}
        for seq, key, kind, regular in folder.events[start:]:
            first.setdefault(key, (kind, regular))
            last_seq[key] = seq
        entries: list[tuple[int, str, str]] = []
        for key in sorted(last_seq, key=last_seq.__getitem__):
            first_kind, first_regular = first[key]
            was_there = first_kind != "added"
            is_there = key in folder.messages
            if is_there:
                msg = mb.messages[key]
                if state.filter_after and not self._after(msg, state.filter_after):
                    continue
                kind = "updated" if was_there else "created"
            elif was_there:
                kind = "removed"
            else:
                continue  # came and went within the window
            if (
                state.change_type
                and {"created": "created", "updated": "updated", "removed": "deleted"}[kind] != state.change_type
            ):
                continue
            entries.append((key, kind, first_regular if kind == "removed" else ""))
        return _DeltaRound(
            mb.address,
            folder.id,
            folder.generation,
            entries,
            mb.seq,
            state.select,
            state.filter_after,
            state.change_type,
        )


def iter_mime_batch(
    count: int, *, start: datetime | None = None, size: int = 2_000
) -> Iterator[tuple[bytes, datetime]]:
    """``count`` distinct small messages with increasing received times (for benches)."""
    start = start or (_now() - timedelta(days=30))
    filler = ("Lorem ipsum dolor sit amet. " * (size // 28 + 1))[:size]
    for i in range(count):
        received = start + timedelta(seconds=i)
        raw = (
            f"From: Sender {i % 97} <sender{i % 97}@example.org>\r\n"
            f"To: alice@contoso.com\r\n"
            f"Subject: Bench message {i}\r\n"
            f"Date: {email.utils.format_datetime(received)}\r\n"
            f"Message-ID: <bench-{i}@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{filler}\r\n"
        ).encode()
        yield raw, received


def free_port() -> int:
    """A loopback port nobody listens on (for "unreachable" tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
