"""The Microsoft 365 mail client: a :class:`~mailsources.clients.base.MailClient` for one
mailbox, put together from the package's parts."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from mailsources.pacing import RequestGate

from ..base import ConnectionReport, FolderBatch, FolderInfo, KnownFilter, PermanentSourceError
from ..inventory import FolderInventory, ServerMessage
from .delta import FolderSync, parse_time
from .downloads import Downloader
from .errors import ErrorClassifier, GraphError
from .folders import Folders
from .transport import GRAPH_RATE_LIMIT, MAX_CONCURRENT_PER_MAILBOX, STREAM_BYTES, GraphTransport, Sink

log = logging.getLogger(__name__)

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"


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
        max_batch_wait: float | None = 2.0,
        include_hidden_folders: bool = False,
        raw_sink: Sink | None = None,
        stream_bytes: int = STREAM_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Plain values only; nothing talks to the network before the first call.

        ``page_size`` is "Number of mails (Office 365)": the page size of every Graph listing and
        of the delta pages (1-1000). ``authority_host``/``graph_url`` point at sovereign clouds
        or a test fake; ``ca_bundle`` pins the CA file to trust (beats ``REQUESTS_CA_BUNDLE``).
        ``max_concurrent``/``rate_limit`` are Graph's per-mailbox limits (4; 10,000 per 600 s;
        ``rate_limit=None`` disables pacing). ``request_gate`` coordinates several processes
        (:mod:`mailsources.pacing`). A Retry-After (or backoff) up to ``max_inline_wait`` seconds
        is slept, at most ``max_attempts`` tries per request; longer waits raise
        ``TransientSourceError(retry_after=...)``. ``backoff_base`` is the first backoff when a
        429/5xx carries no Retry-After. ``max_batch_bytes`` bounds the MIME held in one batch (and
        the MIME downloaded ahead of the batches), ``max_batch_messages`` its number of messages;
        a batch waiting on the network is handed out before it is full once its first mail has
        waited ``max_batch_wait`` seconds (None: only full batches and each page's last one).
        ``raw_sink`` (``archive.storage.put_chunks``) takes a mail of ``stream_bytes`` or more
        as its body arrives (``FetchedMessage.stored``): never held in memory whole.
        ``clock`` (monotonic seconds) tells when the access token is due for renewal.
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
        self._errors = ErrorClassifier(
            tenant=self.tenant,
            client_id=self.client_id,
            mailbox=self.mailbox,
            secret=client_secret,
            authority_host=authority_host.rstrip("/"),
        )
        self._http = GraphTransport(
            self._errors,
            client_secret,
            authority_host=authority_host.rstrip("/"),
            graph_url=graph_url.rstrip("/"),
            timeout=timeout,
            ca_bundle=ca_bundle,
            max_concurrent=max_concurrent,
            rate_limit=rate_limit,
            request_gate=request_gate,
            max_inline_wait=max_inline_wait,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            clock=clock,
        )
        self._folders = Folders(self._http, page_size=self.page_size, include_hidden=include_hidden_folders)
        self._downloader = Downloader(
            self._http,
            max_concurrent=max_concurrent,
            budget_bytes=max_batch_bytes,
            raw_sink=raw_sink,
            stream_bytes=stream_bytes,
        )
        self._sync = FolderSync(
            self._http,
            self._downloader,
            page_size=self.page_size,
            max_batch_bytes=max_batch_bytes,
            max_batch_messages=max(1, max_batch_messages),
            max_batch_wait=max_batch_wait,
        )

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
        with self._http.attempts_at_most(2), self._translate("opening the mailbox"):
            self._http.authenticate()
            lines = [
                f"Authenticated (tenant {self.tenant}, app {self.client_id})",
                f"Mailbox: {self.mailbox}",
            ]
            inbox = self._http.get_json(
                self._http.url("/mailFolders/inbox"), {"$select": "id,displayName,totalItemCount"}
            )
            name = inbox.get("displayName") or "Inbox"
            label = "Inbox" if name == "Inbox" else f"Inbox ({name})"
            lines.append(f"{label}: {inbox.get('totalItemCount', 0)} messages")
            subject = self._newest_subject(inbox["id"], lines)
            folders = self._folders.list()
            lines.append(f"Folders: {len(folders)}")
            return ConnectionReport(lines=lines, folders=folders, newest_subject=subject)

    def _newest_subject(self, folder_id: str, lines: list[str]) -> str | None:
        newest = self._http.get_json(
            self._http.url(f"/mailFolders/{quote(folder_id, safe='')}/messages"),
            {"$top": "1", "$select": "subject,receivedDateTime", "$orderby": "receivedDateTime desc"},
        ).get("value", [])
        if not newest:
            lines.append("Newest message: (the inbox is empty)")
            return None
        subject: str = newest[0].get("subject") or ""
        received = parse_time(newest[0].get("receivedDateTime"))
        when = f" ({received:%Y-%m-%d %H:%M} UTC)" if received else ""
        lines.append(f"Newest message: {subject or '(no subject)'}{when}")
        return subject

    def list_folders(self) -> list[FolderInfo]:
        """Every mail folder, recursively, as "Parent/Child" paths; search folders skipped."""
        with self._translate("listing folders"):
            return self._folders.list()

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
            ref = self._folders.resolve(folder)
            yield from self._sync.batches(folder, ref, cursor, known, min_age_days)
        except GraphError as err:
            raise self._errors.graph(err, f"syncing folder {folder!r}") from err

    def folder_inventory(self, folder: str) -> FolderInventory:
        """Every message of ``folder`` now (a listing of ids, arrival times and
        Message-IDs; Graph names no size) — for the reconciliation report."""
        with self._translate(f"listing the mails of folder {folder!r}"):
            ref = self._folders.resolve(folder)
            url = self._http.url(f"/mailFolders/{quote(ref.id, safe='')}/messages")
            params = {"$select": "id,receivedDateTime,internetMessageId", "$top": str(self.page_size)}
            messages = [
                ServerMessage(
                    item["id"], 0, parse_time(item.get("receivedDateTime")), item.get("internetMessageId") or ""
                )
                for item in self._http.paged(url, params)
            ]
        return FolderInventory(folder, "", messages)

    def check_action_supported(self, action: str) -> None:
        """Moving and deleting need the application permission Mail.ReadWrite: say so before
        anything is archived rather than failing after the first batch."""
        name = str(getattr(action, "value", action)).lower()
        if name not in {"move", "delete"}:
            return
        self._http.authenticate()
        roles = self._http.token_roles()
        if roles is not None and "Mail.ReadWrite" not in roles:
            raise PermanentSourceError(
                self._errors.scrub(
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
                target = self._folders.resolve(target_folder)
            except PermanentSourceError as exc:
                # Not "folder_not_found": that would only skip the folder being archived.
                raise PermanentSourceError(
                    f"The folder to move archived mail to does not exist: {exc}", code="move_target_not_found"
                ) from None
            for location in locations:
                url = self._http.url(f"/messages/{quote(location, safe='')}/move")
                if not self._request_unless_gone("POST", url, data={"destinationId": target.id}):
                    log.warning("Graph move: message %s of %s is gone", location, self.mailbox)

    def delete(self, folder: str, locations: list[str], *, epoch: str | None = None) -> None:
        """Delete archived messages (Graph moves them to Recoverable Items)."""
        with self._translate("deleting messages"):
            for location in locations:
                # A message that is already gone: the goal is reached.
                self._request_unless_gone("DELETE", self._http.url(f"/messages/{quote(location, safe='')}"))

    def close(self) -> None:
        self._downloader.close()
        self._http.close()

    # -- helpers --------------------------------------------------------------------------------

    def _request_unless_gone(self, method: str, url: str, *, data: dict[str, Any] | None = None) -> bool:
        """One request about a message; False when Graph says the message no longer exists."""
        try:
            self._http.request(method, url, data=data)
        except GraphError as err:
            if err.status == 404 and err.code == "ErrorItemNotFound":
                return False
            raise
        return True

    @contextlib.contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except GraphError as err:
            raise self._errors.graph(err, doing) from err
