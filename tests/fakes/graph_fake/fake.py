"""The fake's control surface for tests: lifecycle, directory, mailboxes and messages, faults,
throttling, tokens, counters."""

from __future__ import annotations

import collections
import os
import re
import secrets
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import trustme

from .delta import DeltaMixin
from .entra import EntraMixin
from .graph_api import GraphApiMixin
from .mail import MailMixin
from .model import (
    _DEFAULT_PAGE,
    _WELL_KNOWN,
    ErrorRule,
    FakeStats,
    RequestRecord,
    _App,
    _b64url,
    _DeltaRound,
    _DeltaState,
    _Folder,
    _Mailbox,
    _Message,
    _now,
    _opaque_id,
    _Tenant,
    _ThrottleState,
    _Token,
)
from .server import _Server
from .serving import ServingMixin

# --------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------


class GraphFake(ServingMixin, EntraMixin, GraphApiMixin, MailMixin, DeltaMixin):
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
        # When issued tokens expire at Graph (set_token_lifetime): tests pass a ManualClock.
        self.clock: Callable[[], float] = time.monotonic
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
        ``server_lifetime`` (seconds, on :attr:`clock`) makes Graph reject tokens earlier than
        announced."""
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
