"""The IMAP client: one account over one IMAPClient connection.

IMAPClient speaks the protocol (commands, response parsing, modified UTF-7
folder names, LITERAL+); this class adds what an archive needs on top:
verified TLS only (or explicitly allowed plain text), errors in the user's
words, EXAMINE so \\Seen stays untouched, and MOVE/delete only where the server
can do exactly that (MOVE, UIDPLUS).

IMAPClient replaced a hand-written protocol module after measuring both in the
same ``make bench`` runs (issue 9): with imaplib's trace off (see ``_connect``)
it is not measurably slower; alone, its parser costs ~0.02 ms more CPU per mail.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import imaplib
import logging
import ssl
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from imapclient import IMAPClient
from imapclient.imap4 import IMAP4WithTimeout
from imapclient.imap_utf7 import decode as decode_utf7
from imapclient.response_parser import parse_response
from imapclient.tls import IMAP4_TLS

from ..base import (
    ConnectionReport,
    FolderBatch,
    FolderInfo,
    KnownFilter,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from ..inventory import FolderInventory, ServerMessage
from . import errors
from .folder_sync import Cursor, FetchRefused, FolderSync, Mailbox, chunks, nothing_to_do, received_at
from .literal import LiteralSpool, RawSink, SpoolFailed, SpoolingReads

logger = logging.getLogger(__name__)

SECURITY_TLS = "tls"
SECURITY_STARTTLS = "starttls"
SECURITY_NONE = "none"
_DEFAULT_PORTS = {SECURITY_TLS: 993, SECURITY_STARTTLS: 143, SECURITY_NONE: 143}

# UIDs per command for MOVE/STORE/EXPUNGE, to keep command lines reasonable.
_UIDS_PER_COMMAND = 500
_FOLDERS_SHOWN = 30  # in the connection test's folder line
# imaplib refuses lines over 1 MB; a UID SEARCH answer for a big folder is longer.
_MAX_LINE = 64 * 1024 * 1024


class _LongLines:
    file: Any

    def readline(self) -> bytes:
        line: bytes = self.file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise imaplib.IMAP4.error(f"got more than {_MAX_LINE} bytes in one line")
        return line


class _Plain(SpoolingReads, _LongLines, IMAP4WithTimeout):  # type: ignore[misc]  # untyped base class
    pass


class _TLS(SpoolingReads, _LongLines, IMAP4_TLS):  # type: ignore[misc]  # untyped base class
    pass


class _Connection(IMAPClient):  # type: ignore[misc]  # untyped base class
    """IMAPClient on imaplib connections that accept long lines."""

    def _create_IMAP4(self) -> imaplib.IMAP4:  # noqa: N802  (IMAPClient's name)
        timeout = self._timeout.connect
        if self.ssl:
            return _TLS(self.host, self.port, self.ssl_context, timeout)
        return _Plain(self.host, self.port, timeout)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name(value: Any) -> str:
    """A folder name as IMAPClient's parser hands it over (bytes, str or int)."""
    return str(decode_utf7(value)) if isinstance(value, bytes | str) else str(value)


class ImapClient:
    """One IMAP account. Connects lazily, keeps one connection until ``close()``."""

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        security: str = SECURITY_TLS,
        username: str,
        password: str,
        ca_file: str | None = None,
        timeout: float = 60.0,
        batch_size: int = 500,
        batch_bytes: int = 32 * 1024 * 1024,
        max_message_bytes: int = 25 * 1024 * 1024,
        allow_unencrypted: bool = False,
        raw_sink: RawSink | None = None,
        stream_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        """``raw_sink``: stores a mail's bytes as they arrive (``archive.storage.put_chunks``);
        with it, a mail of ``stream_bytes`` or more is fetched alone and streamed into it
        (``FetchedMessage.stored``), never held in memory (``literal.py``)."""
        if security not in _DEFAULT_PORTS:
            raise ValueError(f"unknown IMAP security {security!r}")
        if batch_size < 1 or batch_bytes < 1 or timeout <= 0 or stream_bytes < 1:
            raise ValueError("batch_size, batch_bytes, stream_bytes and timeout must be positive")
        self.host = host
        self.port = port or _DEFAULT_PORTS[security]
        self.security = security
        self.username = username
        self._password = password
        self.ca_file = ca_file or None
        self.timeout = timeout
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.max_message_bytes = max_message_bytes
        self.allow_unencrypted = allow_unencrypted
        self.raw_sink = raw_sink
        self.stream_bytes = stream_bytes
        self._conn: Any = None  # an IMAPClient once connected and logged in
        self._caps: frozenset[str] = frozenset()
        # UIDVALIDITY per folder seen by sync_folder, so move/delete never act on
        # UIDs of another epoch.
        self._epochs: dict[str, int] = {}

    def __repr__(self) -> str:  # never the password, also not in tracebacks' locals
        return f"<ImapClient {self.username}@{self.host}:{self.port} {self.security}>"

    def __enter__(self) -> ImapClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    # ----------------------------------------------------------------- public API

    def capabilities(self) -> frozenset[str]:
        """The server's capabilities after login (upper case), e.g. {"MOVE", "UIDPLUS"}."""
        self._session()
        return self._caps

    def supports_move(self) -> bool:
        return "MOVE" in self.capabilities()

    def supports_delete(self) -> bool:
        # UID EXPUNGE (UIDPLUS) so only our messages are expunged, not others marked \Deleted.
        return "UIDPLUS" in self.capabilities()

    def check_action_supported(self, action: str) -> None:
        """Raise PermanentSourceError up front when the after-archive action cannot work."""
        if action == "move" and not self.supports_move():
            raise PermanentSourceError(
                f"The server {self._where} does not support MOVE, so archived mails cannot be "
                "moved; choose 'keep' as the action after archiving.",
                code="move_unsupported",
            )
        if action == "delete" and not self.supports_delete():
            raise PermanentSourceError(
                f"The server {self._where} does not support UIDPLUS (UID EXPUNGE), so archived "
                "mails cannot be deleted safely; choose 'keep' as the action after archiving.",
                code="delete_unsupported",
            )

    def test_connection(self) -> ConnectionReport:
        caps = self.capabilities()
        lines = [
            f"Connected to {self._where} ({self._security_text()}).",
            f"Logged in as {self.username}.",
            "Server supports: "
            + ", ".join(f"{cap} {'yes' if cap in caps else 'no'}" for cap in ("MOVE", "UIDPLUS", "CONDSTORE"))
            + ".",
        ]
        folders = self.list_folders()
        shown = ", ".join(f"{f.name} ({'?' if f.total is None else f.total})" for f in folders[:_FOLDERS_SHOWN])
        more = f" and {len(folders) - _FOLDERS_SHOWN} more" if len(folders) > _FOLDERS_SHOWN else ""
        lines.append(f"{len(folders)} folder(s): {shown}{more}.")
        newest: str | None = None
        if folders:
            first = folders[0].name
            mailbox = self._select(first, readonly=True)
            if mailbox.exists:
                newest = self._newest_subject(mailbox.exists)
                lines.append(f"Newest mail in {first}: {newest or '(no subject)'}")
            else:
                lines.append(f"{first} is empty.")
        return ConnectionReport(lines=lines, folders=folders, newest_subject=newest)

    def list_folders(self) -> list[FolderInfo]:
        """All selectable folders with message counts, INBOX first."""
        conn = self._session()
        counts: dict[str, int | None] = {}
        with self._guard("listing folders"):
            if "LIST-STATUS" in self._caps:
                # LIST-STATUS (RFC 5819) gets all counts in one round trip; IMAPClient's
                # list_folders() cannot ask for it, imaplib's list() can.
                imap = conn._imap
                imap.response("STATUS")  # drop stale ones
                typ, data = imap.list('""', '"*" RETURN (STATUS (MESSAGES))')
                if typ != "OK":
                    raise imaplib.IMAP4.error(f"LIST failed: {data[-1]!r}")
                listed = _listed(data)
                statuses = parse_response([s for s in imap.response("STATUS")[1] if s])
                for k in range(0, len(statuses) - 1, 2):
                    counts[_name(statuses[k])] = _messages(statuses[k + 1])
            else:
                listed = conn.list_folders()
        names = [
            _name(name)
            for flags, _delimiter, name in listed
            if not {bytes(f).lower() for f in flags} & {b"\\noselect", b"\\nonexistent"}
        ]
        for name in names if "LIST-STATUS" not in self._caps else []:
            counts[name] = self._status_messages(name)
        names.sort(key=lambda n: n.upper() != "INBOX")  # stable: server order otherwise
        return [FolderInfo(name=n, total=counts.get(n)) for n in names]

    def sync_folder(
        self,
        folder: str,
        cursor: dict[str, Any] | None,
        known: KnownFilter,
        *,
        min_age_days: int = 0,
    ) -> Iterator[FolderBatch]:
        mailbox = self._select(folder, readonly=True)  # EXAMINE: \Seen stays untouched
        self._epochs[folder] = mailbox.uidvalidity
        epoch = str(mailbox.uidvalidity)
        previous = Cursor.from_json(cursor)
        resync = previous is not None and previous.uidvalidity != mailbox.uidvalidity
        if resync:
            logger.info(
                "IMAP %s: UIDVALIDITY of %r changed (%s -> %s), resyncing by content",
                self._where,
                folder,
                previous and previous.uidvalidity,
                epoch,
            )
        start = Cursor(mailbox.uidvalidity, resyncing=resync)
        if previous is not None and not resync:
            start.last_uid = previous.last_uid
            start.resyncing = previous.resyncing
        now = datetime.now(UTC)
        cutoff = now - timedelta(days=min_age_days) if min_age_days > 0 else None
        if previous is not None and not resync and nothing_to_do(previous, mailbox, cutoff):
            return  # the no-change rerun: one EXAMINE, no FETCH at all
        yield from FolderSync(self, mailbox, start, known, cutoff).run(epoch, cursor)

    def folder_inventory(self, folder: str) -> FolderInventory:
        """Every message of ``folder`` now (EXAMINE, read-only): UID, size,
        INTERNALDATE, Message-ID — for the reconciliation report."""
        mailbox = self._select(folder, readonly=True)
        found: list[ServerMessage] = []
        items = ["UID", "RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
        for chunk in chunks(self._search_uids(1), _UIDS_PER_COMMAND):
            fetched = self._fetch(chunk, items, f"listing mails of {folder}")
            for uid in chunk:
                info = fetched.get(uid) or {}
                header = next((v for k, v in info.items() if k.startswith(b"BODY[") and isinstance(v, bytes)), b"")
                message_id = email.parser.BytesHeaderParser().parsebytes(header).get("message-id", "")
                size = info.get(b"RFC822.SIZE")
                found.append(
                    ServerMessage(
                        str(uid), size if isinstance(size, int) else 0, received_at(info), str(message_id).strip()
                    )
                )
        return FolderInventory(folder, str(mailbox.uidvalidity), found)

    def move(self, folder: str, locations: list[str], target_folder: str, *, epoch: str | None = None) -> None:
        """UID MOVE the given UIDs. ``epoch``: the UIDVALIDITY they belong to."""
        self.check_action_supported("move")
        mailbox = self._select_for_change(folder, epoch)
        conn = self._session()
        for chunk in chunks(_uids(locations), _UIDS_PER_COMMAND):
            try:
                with self._guard(f"moving mails from {mailbox.name} to {target_folder}"):
                    conn.move(chunk, target_folder)
            except SourceError as exc:
                cause = exc.__cause__
                text = errors.server_words(cause, self._password) if cause else ""
                if errors.response_code(text) == "TRYCREATE":
                    raise PermanentSourceError(
                        f"The target folder '{target_folder}' was not found on the server "
                        f"{self._where} (the server said: {text}).",
                        code="folder_not_found",
                    ) from exc
                raise

    def delete(self, folder: str, locations: list[str], *, epoch: str | None = None) -> None:
        """Flag the given UIDs \\Deleted and UID EXPUNGE exactly those."""
        self.check_action_supported("delete")
        mailbox = self._select_for_change(folder, epoch)
        conn = self._session()
        for chunk in chunks(_uids(locations), _UIDS_PER_COMMAND):
            with self._guard(f"flagging mails deleted in {mailbox.name}"):
                conn.add_flags(chunk, [b"\\Deleted"], silent=True)
            with self._guard(f"expunging mails in {mailbox.name}"):
                conn.uid_expunge(chunk)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()  # also closes the socket
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.shutdown()

    # ----------------------------------------------------------------- connection

    def _session(self) -> Any:
        if self._conn is None:
            conn = self._connect()
            try:
                self._login(conn)
                with self._guard("reading the server's capabilities"):
                    # After login: MOVE, CONDSTORE etc. often appear only now.
                    self._caps = frozenset(c.decode("ascii", "replace").upper() for c in conn.capabilities())
                    if {"CONDSTORE", "ENABLE"} <= self._caps:
                        conn.enable("CONDSTORE")  # HIGHESTMODSEQ on EXAMINE, for the no-change check
            except BaseException:
                with contextlib.suppress(OSError, imaplib.IMAP4.error):
                    conn.shutdown()
                raise
            conn.normalise_times = False  # INTERNALDATE as aware datetimes, in the server's offset
            self._conn = conn
        return self._conn

    def _security_text(self) -> str:
        return {
            SECURITY_TLS: "implicit TLS, certificate verified",
            SECURITY_STARTTLS: "STARTTLS, certificate verified",
            SECURITY_NONE: "unencrypted, allowed by configuration",
        }[self.security]

    def _connect_error(self, exc: BaseException) -> SourceError:
        return errors.connect_error(
            exc, where=self._where, host=self.host, timeout=self.timeout, ca_file=self.ca_file, password=self._password
        )

    def _connect(self) -> Any:
        if self.security == SECURITY_NONE and not self.allow_unencrypted:
            raise PermanentSourceError(
                "Unencrypted IMAP is not allowed for this source: choose implicit TLS or "
                "STARTTLS, or explicitly allow unencrypted connections.",
                code="unencrypted_not_allowed",
            )
        context = None
        if self.security != SECURITY_NONE:
            try:
                # Verifies certificate chain and host name.
                context = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise PermanentSourceError(
                    f"The CA file {self.ca_file!r} cannot be read: {exc}", code="bad_ca_file"
                ) from exc
        logger.info("IMAP: connecting to %s (%s) as %s", self._where, self.security, self.username)
        try:
            conn = _Connection(
                self.host, self.port, ssl=self.security == SECURITY_TLS, ssl_context=context, timeout=self.timeout
            )
        except Exception as exc:
            raise self._connect_error(exc) from exc
        # IMAPClient turns imaplib's trace fully on (debug 5) and logs it at DEBUG: imaplib
        # then formats a repr of every mail body, twice, logged or not (a quarter more
        # worker CPU per mail in `make bench`), and every server line with mail headers.
        conn._imap.debug = 0
        if self.security == SECURITY_STARTTLS:
            try:
                self._starttls(conn, context)
            except BaseException:
                with contextlib.suppress(OSError, imaplib.IMAP4.error):
                    conn.shutdown()
                raise
        return conn

    def _starttls(self, conn: Any, context: ssl.SSLContext | None) -> None:
        if b"STARTTLS" not in conn.capabilities():
            raise PermanentSourceError(
                f"The server {self._where} does not offer STARTTLS, so the connection cannot be "
                "encrypted. Use implicit TLS (usually port 993) if the server offers it.",
                code="starttls_refused",
            )
        try:
            conn.starttls(context)
        except imaplib.IMAP4.abort as exc:
            raise self._connect_error(exc) from exc
        except imaplib.IMAP4.error as exc:
            raise PermanentSourceError(
                f"The server {self._where} refused STARTTLS ({errors.server_words(exc, self._password)}).",
                code="starttls_refused",
            ) from exc
        except Exception as exc:
            raise self._connect_error(exc) from exc

    def _login(self, conn: Any) -> None:
        caps = conn.capabilities()
        if b"LOGINDISABLED" in caps:
            raise PermanentSourceError(
                f"The server {self._where} does not allow login on an unencrypted connection; "
                "choose implicit TLS or STARTTLS.",
                code="login_disabled",
            )
        try:
            if not (self.username + self._password).isascii() and b"AUTH=PLAIN" in caps:
                conn.plain_login(self.username, self._password)  # LOGIN's quoted strings are ASCII only
            else:
                conn.login(_quote(self.username), self._password)
        except imaplib.IMAP4.error as exc:
            # IMAPClient wraps every login failure in LoginError, a lost connection too.
            lost = exc if isinstance(exc, imaplib.IMAP4.abort) else exc.__context__
            if isinstance(lost, imaplib.IMAP4.abort | OSError):
                raise errors.session_error(lost, self._where, self.timeout, "logging in", self._password) from exc
            text = errors.server_words(exc, self._password)
            if errors.response_code(text) in errors.TRANSIENT_CODES:
                raise errors.refused(self._where, text, f"logging in {self.username}") from exc
            raise PermanentSourceError(
                f"Authentication failed for user '{self.username}' on {self._where}: "
                f"check user name and password (the server said: {text}).",
                code="auth_failed",
            ) from exc
        except UnicodeEncodeError as exc:
            raise PermanentSourceError(
                "The user name or password contains non-ASCII characters and the server offers no SASL PLAIN login.",
                code="auth_failed",
            ) from exc
        except OSError as exc:
            raise errors.session_error(exc, self._where, self.timeout, "logging in", self._password) from exc
        finally:
            # imaplib keeps the last commands, LOGIN with the password, in memory.
            with contextlib.suppress(AttributeError):
                conn._imap._cmd_log.clear()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                conn.shutdown()

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Translate network/protocol failures during a session into SourceErrors."""
        try:
            yield
        except SpoolFailed as exc:
            self._drop()  # in the middle of a literal: unusable
            raise exc.__cause__ or exc from None  # the store's own error (e.g. disk full)
        except (imaplib.IMAP4.abort, OSError) as exc:
            self._drop()  # the connection is unusable; the next call reconnects
            raise errors.session_error(exc, self._where, self.timeout, action, self._password) from exc
        except imaplib.IMAP4.error as exc:
            raise errors.session_error(exc, self._where, self.timeout, action, self._password) from exc
        except ValueError as exc:  # IMAPClient's parser choked on a malformed response
            raise TransientSourceError(
                f"The server {self._where} sent a malformed response while {action} ({exc}).", code="protocol_error"
            ) from exc

    # ----------------------------------------------------------------- folders

    def _select(self, folder: str, *, readonly: bool) -> Mailbox:
        conn = self._session()
        # Always (re-)select: it refreshes UIDNEXT/HIGHESTMODSEQ and switches read-only mode.
        try:
            with self._guard(f"opening folder {folder}"):
                response = conn.select_folder(folder, readonly=readonly)
        except PermanentSourceError as exc:
            text = errors.server_words(exc.__cause__, self._password) if exc.__cause__ else str(exc)
            raise PermanentSourceError(
                f"The folder '{folder}' was not found on {self._where} (the server said: {text}).",
                code="folder_not_found",
            ) from exc
        return Mailbox(folder, readonly, response)

    def _select_for_change(self, folder: str, epoch: str | None) -> Mailbox:
        mailbox = self._select(folder, readonly=False)
        expected = int(epoch) if epoch else self._epochs.get(folder)
        if expected is not None and expected != mailbox.uidvalidity:
            raise TransientSourceError(
                f"The folder '{folder}' on {self._where} was renumbered (UIDVALIDITY changed) "
                "since it was archived; nothing was moved or deleted. The next sync resyncs it.",
                code="uidvalidity_changed",
            )
        return mailbox

    def _status_messages(self, folder: str) -> int | None:
        conn = self._session()
        with self._guard(f"counting mails in {folder}"):
            try:
                status = conn.folder_status(folder, ["MESSAGES"])
            except imaplib.IMAP4.error as exc:
                if isinstance(exc, imaplib.IMAP4.abort):
                    raise
                return None  # NO: a folder we cannot count is still listed
        value = status.get(b"MESSAGES")
        return value if isinstance(value, int) else None

    def _newest_subject(self, exists: int) -> str | None:
        conn = self._session()
        with self._guard("reading the newest mail's subject"):
            conn.use_uid = False  # the newest mail by sequence number
            try:
                fetched = conn.fetch([exists], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
            finally:
                conn.use_uid = True
        headers = [
            v for info in fetched.values() for k, v in info.items() if k.startswith(b"BODY[") and isinstance(v, bytes)
        ]
        for header in headers:
            try:
                parser = email.parser.BytesHeaderParser(policy=email.policy.default)
                subject = parser.parsebytes(header).get("subject")
                return None if subject is None else " ".join(str(subject).split())
            except Exception:  # a broken header must not fail the connection test
                return header.decode("utf-8", "replace").partition(":")[2].strip() or None
        return None

    # ----------------------------------------------------------------- fetching

    def _search_uids(self, first_uid: int) -> list[int]:
        conn = self._session()
        with self._guard("listing mails"):
            found = conn.search(["UID", f"{first_uid}:*"])
        # "n:*" also matches the highest UID when it is below n.
        return sorted({int(u) for u in found if int(u) >= first_uid})

    def _fetch(self, uids: list[int], items: list[str], action: str) -> dict[int, dict[bytes, Any]]:
        conn = self._session()
        with self._guard(action):
            try:
                fetched: dict[int, dict[bytes, Any]] = conn.fetch(uids, items)
            except imaplib.IMAP4.error as exc:
                if isinstance(exc, imaplib.IMAP4.abort) or errors.is_protocol_error(exc):
                    raise
                # A FETCH refused by the server may well work later (or after a fix there).
                text = errors.server_words(exc, self._password)
                raise FetchRefused(f"The server {self._where} refused {action} ({text}).", code="fetch_failed") from exc
        return fetched

    def streams(self, size: int) -> bool:
        """Whether a mail of ``size`` bytes (RFC822.SIZE) goes straight into the raw sink."""
        return self.raw_sink is not None and size >= self.stream_bytes

    def _fetch_streamed(self, uid: int, items: list[str], action: str) -> tuple[dict[int, dict[bytes, Any]], list[Any]]:
        """``_fetch`` of one mail whose BODY[] literal goes to the raw sink -> (fetched, what
        the sink returned: nothing when the literal was smaller than RFC822.SIZE said, and
        imaplib read it as usual)."""
        if self.raw_sink is None:
            raise ValueError("no raw sink to stream into")
        imap = self._session()._imap
        spool = LiteralSpool(self.raw_sink, self.stream_bytes)
        imap.spool = spool
        try:
            fetched = self._fetch([uid], items, action)
        finally:
            imap.spool = None
        return fetched, spool.stored


def _listed(data: list[Any]) -> list[tuple[Any, Any, Any]]:
    """imaplib's LIST data as IMAPClient's (flags, delimiter, name) triples."""
    parsed = parse_response([item for item in data if item not in (b"", None)])
    return [tuple(parsed[k : k + 3]) for k in range(0, len(parsed) - 2, 3)]


def _messages(items: Any) -> int | None:
    """MESSAGES out of a STATUS item list like (MESSAGES 3)."""
    pairs = list(items) if isinstance(items, tuple | list) else []
    for k in range(0, len(pairs) - 1, 2):
        if bytes(pairs[k]).upper() == b"MESSAGES" and isinstance(pairs[k + 1], int):
            return int(pairs[k + 1])
    return None


def _uids(locations: Iterable[str]) -> list[int]:
    try:
        return sorted({int(loc) for loc in locations})
    except ValueError as exc:
        raise ValueError(f"IMAP locations must be UIDs: {exc}") from exc
