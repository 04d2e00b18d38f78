"""IMAP mail client on top of the standard library's ``imaplib``.

Knows nothing of Django: the pipeline hands in plain values and gets back raw
message bytes in bounded batches (see ``base.py``).

Cursor (one per folder, JSON-able, handed back unchanged on the next run)::

    {"v": 1,
     "uidvalidity": 1795752011,   # the epoch the UIDs below belong to
     "last_uid": 1234,            # every message with UID <= last_uid is archived
     "uidnext": 1240,             # only in a run's final cursor: UIDNEXT seen at its start
     "highestmodseq": 9876,       # only in a run's final cursor, when CONDSTORE is offered
     "held_since": 1700000000,    # only in a final cursor: oldest INTERNALDATE (epoch seconds)
                                  # of a mail held back by min_age_days, else None
     "resyncing": true}           # present in the cursors of an unfinished resync

``last_uid`` is a *contiguous* watermark: a mail held back by the minimum age
stops it, mails above are still archived and ``known`` (the ledger) keeps them
from being downloaded twice. ``uidnext``/``highestmodseq`` are only written once
a run has listed the whole folder, so a crash in between can never make the
next run skip mails.
"""

from __future__ import annotations

import bisect
import contextlib
import email.parser
import email.policy
import imaplib
import logging
import socket
import ssl
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

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
from .imap_protocol import (
    IMAP4Connection,
    IMAP4SSLConnection,
    fetch_items,
    group_responses,
    mailbox_name,
    parse_internaldate,
    parse_segments,
    quote_folder_name,
    quote_string,
    response_code,
    status_value,
    uid_set,
)

logger = logging.getLogger(__name__)

SECURITY_TLS = "tls"
SECURITY_STARTTLS = "starttls"
SECURITY_NONE = "none"
_DEFAULT_PORTS = {SECURITY_TLS: 993, SECURITY_STARTTLS: 143, SECURITY_NONE: 143}

# UIDs per command for MOVE/STORE/EXPUNGE, to keep command lines reasonable.
_UIDS_PER_COMMAND = 500
# RFC 5530 response codes that mean "try again later".
_TRANSIENT_CODES = {"UNAVAILABLE", "LIMIT", "INUSE", "SERVERBUG"}
_CURSOR_VERSION = 1
_FOLDERS_SHOWN = 30  # in the connection test's folder line


# --------------------------------------------------------------------------- the cursor


class _Cursor:
    def __init__(
        self,
        uidvalidity: int,
        last_uid: int = 0,
        *,
        uidnext: int | None = None,
        highestmodseq: int | None = None,
        held_since: float | None = None,
        resyncing: bool = False,
    ) -> None:
        self.uidvalidity = uidvalidity
        self.last_uid = last_uid
        self.uidnext = uidnext
        self.highestmodseq = highestmodseq
        self.held_since = held_since
        self.resyncing = resyncing

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> _Cursor | None:
        if not data:
            return None
        try:
            return cls(
                int(data["uidvalidity"]),
                int(data.get("last_uid") or 0),
                uidnext=_int_or_none(data.get("uidnext")),
                highestmodseq=_int_or_none(data.get("highestmodseq")),
                held_since=data.get("held_since"),
                resyncing=bool(data.get("resyncing")),
            )
        except (KeyError, TypeError, ValueError):
            # An unreadable cursor must not stop archiving: start over, the
            # ledger turns everything already archived into no-ops.
            logger.warning("IMAP cursor %r is not readable; starting the folder over", data)
            return None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": _CURSOR_VERSION,
            "uidvalidity": self.uidvalidity,
            "last_uid": self.last_uid,
            "uidnext": self.uidnext,
            "highestmodseq": self.highestmodseq,
            "held_since": self.held_since,
        }
        if self.resyncing:
            data["resyncing"] = True
        return data


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


class _Mailbox:
    """What SELECT/EXAMINE told us about the open folder."""

    def __init__(self, name: str, readonly: bool, conn: imaplib.IMAP4) -> None:
        def number(key: str) -> int | None:
            values = conn.untagged_responses.get(key) or []
            last = values[-1] if values else None
            try:
                return int(last) if isinstance(last, bytes) else None
            except ValueError:
                return None

        self.name = name
        self.readonly = readonly
        self.uidvalidity = number("UIDVALIDITY") or 0
        self.uidnext = number("UIDNEXT")
        self.highestmodseq = number("HIGHESTMODSEQ")
        self.exists = number("EXISTS") or 0


# --------------------------------------------------------------------------- the client


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
    ) -> None:
        if security not in _DEFAULT_PORTS:
            raise ValueError(f"unknown IMAP security {security!r}")
        if batch_size < 1 or batch_bytes < 1 or timeout <= 0:
            raise ValueError("batch_size, batch_bytes and timeout must be positive")
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
        self._conn: imaplib.IMAP4 | None = None
        self._mailbox: _Mailbox | None = None
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
        return frozenset(self._session().capabilities)

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
        conn = self._session()
        caps = set(conn.capabilities)
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
        use_list_status = "LIST-STATUS" in conn.capabilities
        with self._guard("listing folders"):
            conn.response("STATUS")  # drop stale ones
            # LIST-STATUS (RFC 5819) gets all counts in one round trip.
            pattern = '"*" RETURN (STATUS (MESSAGES))' if use_list_status else '"*"'
            typ, data = conn.list('""', pattern)
            self._check(typ, data, "listing folders")
            statuses = conn.response("STATUS")[1] if use_list_status else []
            names: list[str] = []
            for segments in group_responses(data):
                parsed = parse_segments(segments)
                if len(parsed) < 3 or not isinstance(parsed[0], list):
                    continue
                flags = {str(f).lower() for f in parsed[0]}
                if "\\noselect" in flags or "\\nonexistent" in flags:
                    continue
                names.append(mailbox_name(parsed[2]))
            counts: dict[str, int | None] = {}
            for segments in group_responses(statuses):
                parsed = parse_segments(segments)
                if len(parsed) >= 2 and isinstance(parsed[1], list):
                    counts[mailbox_name(parsed[0])] = status_value(parsed[1], "MESSAGES")
        if not use_list_status:
            for name in names:
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
        previous = _Cursor.from_json(cursor)
        resync = previous is not None and previous.uidvalidity != mailbox.uidvalidity
        if resync:
            logger.info(
                "IMAP %s: UIDVALIDITY of %r changed (%s -> %s), resyncing by content",
                self._where,
                folder,
                previous and previous.uidvalidity,
                epoch,
            )
        start = _Cursor(mailbox.uidvalidity, resyncing=resync)
        if previous is not None and not resync:
            start.last_uid = previous.last_uid
            start.resyncing = previous.resyncing
        now = datetime.now(UTC)
        cutoff = now - timedelta(days=min_age_days) if min_age_days > 0 else None
        if previous is not None and not resync and _nothing_to_do(previous, mailbox, cutoff):
            return  # the no-change rerun: one EXAMINE, no FETCH at all
        yield from _FolderSync(self, mailbox, start, known, cutoff).run(epoch, cursor)

    def move(self, folder: str, locations: list[str], target_folder: str, *, epoch: str | None = None) -> None:
        """UID MOVE the given UIDs. ``epoch``: the UIDVALIDITY they belong to."""
        self.check_action_supported("move")
        mailbox = self._select_for_change(folder, epoch)
        conn = self._session()
        for chunk in _chunks(_uids(locations), _UIDS_PER_COMMAND):
            with self._guard(f"moving mails from {folder}"):
                typ, data = conn.uid("MOVE", uid_set(chunk), quote_folder_name(target_folder))
            if typ != "OK":
                text = self._server_text(data)
                if response_code(text) == "TRYCREATE":
                    raise PermanentSourceError(
                        f"The target folder '{target_folder}' was not found on the server "
                        f"{self._where} (the server said: {text}).",
                        code="folder_not_found",
                    )
                self._check(typ, data, f"moving mails from {mailbox.name} to {target_folder}")

    def delete(self, folder: str, locations: list[str], *, epoch: str | None = None) -> None:
        """Flag the given UIDs \\Deleted and UID EXPUNGE exactly those."""
        self.check_action_supported("delete")
        mailbox = self._select_for_change(folder, epoch)
        conn = self._session()
        for chunk in _chunks(_uids(locations), _UIDS_PER_COMMAND):
            uids = uid_set(chunk)
            with self._guard(f"deleting mails in {folder}"):
                typ, data = conn.uid("STORE", uids, "+FLAGS.SILENT", "(\\Deleted)")
                self._check(typ, data, f"flagging mails deleted in {mailbox.name}")
                typ, data = conn.uid("EXPUNGE", uids)
                self._check(typ, data, f"expunging mails in {mailbox.name}")

    def close(self) -> None:
        conn, self._conn, self._mailbox = self._conn, None, None
        if conn is None:
            return
        try:
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass  # closing anyway
        with contextlib.suppress(OSError):
            conn.shutdown()

    # ----------------------------------------------------------------- connection

    def _session(self) -> imaplib.IMAP4:
        if self._conn is None:
            conn = self._connect()
            try:
                self._login(conn)
                self._after_login(conn)
            except BaseException:
                with contextlib.suppress(OSError):
                    conn.shutdown()
                raise
            self._conn = conn
        return self._conn

    def _security_text(self) -> str:
        return {
            SECURITY_TLS: "implicit TLS, certificate verified",
            SECURITY_STARTTLS: "STARTTLS, certificate verified",
            SECURITY_NONE: "unencrypted, allowed by configuration",
        }[self.security]

    def _connect(self) -> imaplib.IMAP4:
        if self.security == SECURITY_NONE and not self.allow_unencrypted:
            raise PermanentSourceError(
                "Unencrypted IMAP is not allowed for this source: choose implicit TLS or "
                "STARTTLS, or explicitly allow unencrypted connections.",
                code="unencrypted_not_allowed",
            )
        context = None
        if self.security != SECURITY_NONE:
            try:
                # Verifies certificate chain and host name (imaplib alone would not).
                context = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise PermanentSourceError(
                    f"The CA file {self.ca_file!r} cannot be read: {exc}", code="bad_ca_file"
                ) from exc
        logger.info("IMAP: connecting to %s (%s) as %s", self._where, self.security, self.username)
        try:
            if self.security == SECURITY_TLS:
                conn: imaplib.IMAP4 = IMAP4SSLConnection(
                    self.host, self.port, ssl_context=context, timeout=self.timeout
                )
            else:
                conn = IMAP4Connection(self.host, self.port, timeout=self.timeout)
        except Exception as exc:
            raise self._connect_error(exc) from exc
        conn.debug = 0  # imaplib's debug output would print the LOGIN line, password included
        if self.security == SECURITY_STARTTLS:
            try:
                self._starttls(conn, context)
            except BaseException:
                with contextlib.suppress(OSError):
                    conn.shutdown()
                raise
        return conn

    def _starttls(self, conn: imaplib.IMAP4, context: ssl.SSLContext | None) -> None:
        if "STARTTLS" not in conn.capabilities:
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
                f"The server {self._where} refused STARTTLS ({self._server_text(exc.args)}).", code="starttls_refused"
            ) from exc
        except Exception as exc:
            raise self._connect_error(exc) from exc

    def _connect_error(self, exc: BaseException) -> SourceError:
        where = self._where
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = (exc.verify_message or str(exc)).rstrip(".")
            # X509_V_ERR_HOSTNAME_MISMATCH / _EMAIL_ / _IP_ADDRESS_MISMATCH
            if exc.verify_code in (62, 63, 64) or "mismatch" in reason.lower():
                return PermanentSourceError(
                    f"The TLS certificate of {where} is not valid for the host name "
                    f"'{self.host}' ({reason}). Use the host name the certificate was issued for.",
                    code="tls_untrusted",
                )
            hint = (
                "" if self.ca_file else " If the server uses an in-house certificate authority, configure its CA file."
            )
            return PermanentSourceError(
                f"The TLS certificate of {where} is not trusted ({reason}).{hint}", code="tls_untrusted"
            )
        if isinstance(exc, TimeoutError):
            return TransientSourceError(
                f"The server {where} did not answer within {self.timeout:g} seconds (host unreachable or timeout).",
                code="unreachable",
            )
        if isinstance(exc, ssl.SSLError):
            return PermanentSourceError(
                f"The TLS handshake with {where} failed ({_ssl_reason(exc)}). Check port and "
                "security: implicit TLS usually uses port 993, STARTTLS port 143.",
                code="tls_failed",
            )
        if isinstance(exc, ConnectionRefusedError):
            return TransientSourceError(
                f"The server {where} refused the connection (host unreachable: nothing listens on that port).",
                code="unreachable",
            )
        if isinstance(exc, socket.gaierror):
            return TransientSourceError(
                f"The host name '{self.host}' cannot be resolved ({exc.strerror}).", code="unreachable"
            )
        if isinstance(exc, OSError):
            return TransientSourceError(
                f"The server {where} is unreachable ({exc.strerror or exc}).", code="unreachable"
            )
        if isinstance(exc, imaplib.IMAP4.error):
            return TransientSourceError(
                f"The server {where} closed the connection before it was ready ({self._server_text(exc.args)}).",
                code="unreachable",
            )
        return PermanentSourceError(f"Connecting to {where} failed: {exc!r}", code="error")

    def _login(self, conn: imaplib.IMAP4) -> None:
        if "LOGINDISABLED" in conn.capabilities:
            raise PermanentSourceError(
                f"The server {self._where} does not allow login on an unencrypted connection; "
                "choose implicit TLS or STARTTLS.",
                code="login_disabled",
            )
        credentials = self.username + self._password
        try:
            if not credentials.isascii() and "AUTH=PLAIN" in conn.capabilities:
                # LOGIN's quoted strings are ASCII only; SASL PLAIN carries UTF-8.
                auth = f"\0{self.username}\0{self._password}".encode()
                conn.authenticate("PLAIN", lambda _challenge: auth)
            else:
                conn.login(quote_string(self.username), self._password)
        except imaplib.IMAP4.abort as exc:
            raise TransientSourceError(
                f"The connection to {self._where} was lost while logging in ({self._server_text(exc.args)}).",
                code="connection_lost",
            ) from exc
        except imaplib.IMAP4.error as exc:
            text = self._server_text(exc.args)
            if response_code(text) in _TRANSIENT_CODES:
                raise TransientSourceError(
                    f"The server {self._where} cannot log in {self.username} right now ({text}).", code="server_busy"
                ) from exc
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
            raise self._session_error(exc, "logging in") from exc
        finally:
            # imaplib keeps the last commands, LOGIN with the password, in memory.
            with contextlib.suppress(AttributeError):
                conn._cmd_log.clear()

    def _after_login(self, conn: imaplib.IMAP4) -> None:
        with self._guard("reading the server's capabilities"):
            # imaplib keeps the pre-login list; MOVE, CONDSTORE etc. appear only now.
            typ, data = conn.capability()
            self._check(typ, data, "reading capabilities")
            conn.capabilities = tuple(data[-1].decode("ascii", "replace").upper().split())
            if "CONDSTORE" in conn.capabilities and "ENABLE" in conn.capabilities:
                conn.enable("CONDSTORE")  # HIGHESTMODSEQ on EXAMINE, for the no-change check

    def _drop(self) -> None:
        conn, self._conn, self._mailbox = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown()

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Translate network/protocol failures during a session into SourceErrors."""
        try:
            yield
        except SourceError:
            raise
        except (imaplib.IMAP4.abort, OSError) as exc:
            self._drop()  # the connection is unusable; the next call reconnects
            raise self._session_error(exc, action) from exc
        except imaplib.IMAP4.error as exc:
            raise PermanentSourceError(
                f"The server {self._where} rejected a command while {action} ({self._server_text(exc.args)}).",
                code="protocol_error",
            ) from exc
        except ValueError as exc:  # our parser choked on a malformed response
            raise TransientSourceError(
                f"The server {self._where} sent a malformed response while {action} ({exc}).", code="protocol_error"
            ) from exc

    def _session_error(self, exc: BaseException, action: str) -> TransientSourceError:
        if isinstance(exc, TimeoutError):
            return TransientSourceError(
                f"The server {self._where} did not answer within {self.timeout:g} seconds while {action}.",
                code="timeout",
            )
        detail = self._server_text(exc.args) if isinstance(exc, imaplib.IMAP4.error) else str(exc) or type(exc).__name__
        return TransientSourceError(
            f"The connection to {self._where} was lost while {action} ({detail}).", code="connection_lost"
        )

    def _server_text(self, data: Any) -> str:
        """The server's words for a message, never containing the password."""
        items = data if isinstance(data, list | tuple) else [data]
        parts = [
            i.decode("utf-8", "replace") if isinstance(i, bytes) else str(i)
            for i in items
            if i is not None and not isinstance(i, tuple)
        ]
        text = " ".join(parts).strip()[:300].rstrip(".") or "no details"
        if self._password and self._password in text:
            return "reply withheld because it contained the password"
        return text

    def _check(self, typ: str, data: Any, action: str) -> None:
        if typ == "OK":
            return
        text = self._server_text(data)
        if response_code(text) in _TRANSIENT_CODES:
            raise TransientSourceError(
                f"The server {self._where} is unavailable while {action} ({text}).", code="server_busy"
            )
        raise PermanentSourceError(f"The server {self._where} refused {action} ({text}).", code="server_refused")

    # ----------------------------------------------------------------- folders

    def _select(self, folder: str, *, readonly: bool) -> _Mailbox:
        conn = self._session()
        # Always (re-)select: it refreshes UIDNEXT/HIGHESTMODSEQ and switches read-only mode.
        with self._guard(f"opening folder {folder}"):
            typ, data = conn.select(quote_folder_name(folder), readonly=readonly)
        if typ != "OK":
            self._mailbox = None
            text = self._server_text(data)
            if response_code(text) in _TRANSIENT_CODES:
                raise TransientSourceError(
                    f"The folder '{folder}' on {self._where} is unavailable right now ({text}).", code="server_busy"
                )
            raise PermanentSourceError(
                f"The folder '{folder}' was not found on {self._where} (the server said: {text}).",
                code="folder_not_found",
            )
        self._mailbox = _Mailbox(folder, readonly, conn)
        return self._mailbox

    def _select_for_change(self, folder: str, epoch: str | None) -> _Mailbox:
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
            typ, data = conn.status(quote_folder_name(folder), "(MESSAGES)")
            if typ != "OK":
                return None
            for segments in group_responses(data):
                parsed = parse_segments(segments)
                if len(parsed) >= 2 and isinstance(parsed[1], list):
                    return status_value(parsed[1], "MESSAGES")
        return None

    def _newest_subject(self, exists: int) -> str | None:
        conn = self._session()
        with self._guard("reading the newest mail's subject"):
            typ, data = conn.fetch(str(exists), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            self._check(typ, data, "reading the newest mail")
            headers = [
                v
                for segments in group_responses(data)
                for k, v in fetch_items(segments).items()
                if k.startswith("BODY[") and isinstance(v, bytes)
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
            typ, data = conn.uid("SEARCH", "UID", f"{first_uid}:*")
            self._check(typ, data, "listing mails")
        found: set[int] = set()
        for line in data:
            if isinstance(line, bytes):
                found.update(int(t) for t in line.split() if t.isdigit())
        # "n:*" also matches the highest UID when it is below n.
        return sorted(u for u in found if u >= first_uid)

    def _fetch(self, uids: list[int], items: str, action: str) -> dict[int, dict[str, Any]]:
        conn = self._session()
        with self._guard(action):
            typ, data = conn.uid("FETCH", uid_set(uids), items)
            if typ != "OK":
                text = self._server_text(data)
                # A FETCH refused by the server may well work later (or after a fix there).
                raise _FetchRefused(f"The server {self._where} refused {action} ({text}).", code="fetch_failed")
            wanted = set(uids)
            result: dict[int, dict[str, Any]] = {}
            for segments in group_responses(data):
                fetched = fetch_items(segments)
                uid = fetched.get("UID")
                # Unsolicited FETCHes (flag changes by others) carry no UID or other UIDs.
                if uid is not None and str(uid).isdigit() and int(uid) in wanted:
                    result.setdefault(int(uid), {}).update(fetched)
        return result


class _FetchRefused(TransientSourceError):
    """The server answered NO to a FETCH (e.g. one unreadable mail in the set)."""


class _FolderSync:
    """One run over one folder: lists new UIDs, fetches them in bounded batches."""

    def __init__(
        self, client: ImapClient, mailbox: _Mailbox, cursor: _Cursor, known: KnownFilter, cutoff: datetime | None
    ) -> None:
        self.client = client
        self.mailbox = mailbox
        self.cursor = cursor  # its last_uid advances as batches are yielded
        self.known = known
        self.cutoff = cutoff
        self.blocked = False  # a held-back (or vanished) mail stopped the watermark
        self.held_since: float | None = None

    def run(self, epoch: str, original: dict[str, Any] | None) -> Iterator[FolderBatch]:
        client = self.client
        uids = client._search_uids(self.cursor.last_uid + 1)
        chunks = _chunks(uids, client.batch_size)
        final_sent = False
        for number, chunk in enumerate(chunks):
            stops, wanted = self._classify(epoch, chunk)
            batches = self._plan(wanted)
            for index, batch in enumerate(batches):
                messages, missing = self._download(batch)
                for _uid in missing:
                    self._hold(0.0)  # look again next run
                stops += missing
                # The watermark may pass everything done so far, not the next batch.
                nxt = batches[index + 1][0][0] if index + 1 < len(batches) else None
                self._advance(chunk, min(stops + ([nxt] if nxt else []), default=None))
                final = number == len(chunks) - 1 and index == len(batches) - 1
                yield self._batch(epoch, messages, final=final)
                final_sent = final_sent or final
            if not batches:
                self._advance(chunk, min(stops, default=None))
            if stops:
                self.blocked = True
        if not final_sent and self._final_cursor().to_json() != original:
            yield self._batch(epoch, [], final=True)

    def _classify(self, epoch: str, chunk: list[int]) -> tuple[list[int], list[tuple[int, int]]]:
        """-> (UIDs the watermark must stop at, [(uid, size)] to download)."""
        meta = self.client._fetch(chunk, "(UID RFC822.SIZE INTERNALDATE)", f"listing mails in {self.mailbox.name}")
        already = {int(u) for u in self.known(epoch, [str(u) for u in chunk]) if u.isdigit()}
        stops: list[int] = []
        wanted: list[tuple[int, int]] = []
        for uid in chunk:
            if uid in already:
                continue
            info = meta.get(uid)
            if info is None:  # expunged meanwhile, or not reported: look again next run
                stops.append(uid)
                self._hold(0.0)
                continue
            received = parse_internaldate(info.get("INTERNALDATE"))
            # No readable date: archive rather than hold it back forever.
            if self.cutoff is not None and received is not None and received > self.cutoff:
                stops.append(uid)  # too young: archived by a later run
                self._hold(received.timestamp())
                continue
            wanted.append((uid, int(info.get("RFC822.SIZE") or 0)))
        return stops, wanted

    def _hold(self, since: float) -> None:
        self.held_since = since if self.held_since is None else min(self.held_since, since)

    def _advance(self, chunk: list[int], stop: int | None) -> None:
        """Move the watermark over this chunk's UIDs below ``stop`` (all of them if None)."""
        if self.blocked:
            return
        end = len(chunk) if stop is None else bisect.bisect_left(chunk, stop)
        if end:
            self.cursor.last_uid = max(self.cursor.last_uid, chunk[end - 1])

    def _plan(self, wanted: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """Split into batches bounded by count and bytes; a huge mail travels alone."""
        client = self.client
        batches: list[list[tuple[int, int]]] = []
        current: list[tuple[int, int]] = []
        size_sum = 0
        for uid, size in wanted:
            huge = size > client.max_message_bytes
            if current and (huge or len(current) >= client.batch_size or size_sum + size > client.batch_bytes):
                batches.append(current)
                current, size_sum = [], 0
            current.append((uid, size))
            size_sum += size
            if huge:
                batches.append(current)
                current, size_sum = [], 0
        if current:
            batches.append(current)
        return batches

    def _download(self, batch: list[tuple[int, int]]) -> tuple[list[FetchedMessage], list[int]]:
        uids = [uid for uid, _size in batch]
        action = f"downloading mails from {self.mailbox.name}"
        items = "(UID INTERNALDATE BODY.PEEK[])"
        try:
            fetched = self.client._fetch(uids, items, action)
        except _FetchRefused as refused:
            # One bad mail must not block the folder: fetch one by one, and hold
            # back (retry next run) only the ones the server keeps refusing.
            fetched = {}
            for uid in uids if len(uids) > 1 else []:
                with contextlib.suppress(_FetchRefused):
                    fetched.update(self.client._fetch([uid], items, action))
            if not fetched:
                raise refused  # nothing works: a visible, retried error
        messages: list[FetchedMessage] = []
        missing: list[int] = []
        for uid in uids:
            info = fetched.get(uid) or {}
            raw = info.get("BODY[]")
            if not isinstance(raw, bytes):
                missing.append(uid)
                continue
            received = parse_internaldate(info.get("INTERNALDATE"))
            messages.append(FetchedMessage(location=str(uid), raw=raw, received_at=received))
        if missing:
            logger.warning(
                "IMAP %s: %s UIDs %s not delivered; will look again next run",
                self.client._where,
                self.mailbox.name,
                uid_set(missing),
            )
        return messages, missing

    def _final_cursor(self) -> _Cursor:
        c = self.cursor
        return _Cursor(
            c.uidvalidity,
            c.last_uid,
            uidnext=self.mailbox.uidnext,
            highestmodseq=self.mailbox.highestmodseq,
            held_since=self.held_since,
        )

    def _batch(self, epoch: str, messages: list[FetchedMessage], *, final: bool) -> FolderBatch:
        # Only a final cursor says "listed up to UIDNEXT": an intermediate one
        # must make the next run list again, or a crash could skip mails.
        cursor = (
            self._final_cursor()
            if final
            else _Cursor(self.cursor.uidvalidity, self.cursor.last_uid, resyncing=self.cursor.resyncing)
        )
        return FolderBatch(
            epoch=epoch,
            messages=messages,
            cursor=cursor.to_json(),
            total=self.mailbox.exists,
            resync=self.cursor.resyncing,
        )


def _nothing_to_do(previous: _Cursor, mailbox: _Mailbox, cutoff: datetime | None) -> bool:
    """True when the folder cannot hold anything new since the final cursor ``previous``."""
    if previous.uidnext is None:
        return False  # the previous run did not finish listing the folder
    unchanged = (previous.highestmodseq is not None and previous.highestmodseq == mailbox.highestmodseq) or (
        mailbox.uidnext is not None and previous.uidnext == mailbox.uidnext
    )
    if not unchanged:
        return False
    if previous.held_since is None:
        return True
    # Held-back mails: nothing to do until the oldest of them is old enough.
    return cutoff is not None and previous.held_since > cutoff.timestamp()


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason).replace("_", " ").lower() if exc.reason else str(exc)


def _uids(locations: Iterable[str]) -> list[int]:
    try:
        return sorted({int(loc) for loc in locations})
    except ValueError as exc:
        raise ValueError(f"IMAP locations must be UIDs: {exc}") from exc


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
