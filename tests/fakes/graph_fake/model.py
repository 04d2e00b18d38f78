"""The fake's state: tenants, apps, tokens, mailboxes, folders, messages, delta rounds, fault
rules and counters, and the request/reply records the server passes around."""

from __future__ import annotations

import base64
import collections
import dataclasses
import email
import email.policy
import email.utils
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

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
    refused: bool = False  # Graph has answered 401 for it


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
    tokens_refused: int = 0  # distinct tokens Graph answered 401 for (revoked or expired)
    by_status: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    by_kind: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    throttled: int = 0  # 429 answers of any origin (model or injected)
    concurrency_rejections: int = 0  # "the 5th concurrent request"
    window_rejections: int = 0
    injected: int = 0
    max_in_flight: int = 0  # highest number of simultaneous requests that *arrived*, per mailbox
    max_mailboxes_in_flight: int = 0  # most mailboxes with a request in flight at once (global)

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
