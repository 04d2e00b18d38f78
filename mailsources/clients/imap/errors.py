"""Turning what goes wrong on an IMAP connection into the user's words.

Every failure leaves the client as a ``TransientSourceError`` (retry later) or a
``PermanentSourceError`` (someone must change the configuration), with a code;
the server's own words are quoted, never the password.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl

from imapclient.exceptions import ProtocolError

from ..base import PermanentSourceError, SourceError, TransientSourceError

# RFC 5530 response codes that mean "try again later".
TRANSIENT_CODES = {"UNAVAILABLE", "LIMIT", "INUSE", "SERVERBUG"}

_BYTES_REPR = re.compile(r"b(['\"])(.*)\1", re.DOTALL)
_FAILED_PREFIX = re.compile(r"^[\w ]+ failed: ")  # IMAPClient's "select failed: <server text>"


def server_words(exc: BaseException, password: str) -> str:
    """The server's text in an imaplib/IMAPClient error, never containing the password."""
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = _FAILED_PREFIX.sub("", text)
    # imaplib hands the server's bytes over as they are; IMAPClient's str() of them is a repr.
    match = _BYTES_REPR.fullmatch(text.strip())
    if match:
        text = match.group(2)
    text = " ".join(text.split())[:300].rstrip(".") or "no details"
    if password and password in text:
        return "reply withheld because it contained the password"
    return text


def is_protocol_error(exc: BaseException) -> bool:
    """The server's answer made no sense to IMAPClient's parser."""
    return isinstance(exc, ProtocolError)


def response_code(text: str) -> str | None:
    match = re.match(r"\s*\[([A-Za-z-]+)", text)
    return match.group(1).upper() if match else None


def refused(where: str, text: str, action: str) -> SourceError:
    """A command the server answered with NO (or BAD)."""
    if response_code(text) in TRANSIENT_CODES:
        return TransientSourceError(f"The server {where} is unavailable while {action} ({text}).", code="server_busy")
    return PermanentSourceError(f"The server {where} refused {action} ({text}).", code="server_refused")


def session_error(exc: BaseException, where: str, timeout: float, action: str, password: str) -> SourceError:
    """A failure on an established session (``action`` says what we were doing)."""
    if isinstance(exc, TimeoutError):
        return TransientSourceError(
            f"The server {where} did not answer within {timeout:g} seconds while {action}.", code="timeout"
        )
    if isinstance(exc, ProtocolError):  # the server's answer made no sense
        return TransientSourceError(
            f"The server {where} sent a malformed response while {action} ({exc}).", code="protocol_error"
        )
    if isinstance(exc, imaplib.IMAP4.abort | OSError):
        detail = server_words(exc, password) if isinstance(exc, imaplib.IMAP4.error) else str(exc)
        return TransientSourceError(
            f"The connection to {where} was lost while {action} ({detail or type(exc).__name__}).",
            code="connection_lost",
        )
    if isinstance(exc, imaplib.IMAP4.error):
        return refused(where, server_words(exc, password), action)
    raise exc  # not a protocol failure: a bug, let it surface


def connect_error(
    exc: BaseException, *, where: str, host: str, timeout: float, ca_file: str | None, password: str
) -> SourceError:
    """A failure while connecting, before the session is ready."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = (exc.verify_message or str(exc)).rstrip(".")
        # X509_V_ERR_HOSTNAME_MISMATCH / _EMAIL_ / _IP_ADDRESS_MISMATCH
        if exc.verify_code in (62, 63, 64) or "mismatch" in reason.lower():
            return PermanentSourceError(
                f"The TLS certificate of {where} is not valid for the host name "
                f"'{host}' ({reason}). Use the host name the certificate was issued for.",
                code="tls_untrusted",
            )
        hint = "" if ca_file else " If the server uses an in-house certificate authority, configure its CA file."
        return PermanentSourceError(
            f"The TLS certificate of {where} is not trusted ({reason}).{hint}", code="tls_untrusted"
        )
    if isinstance(exc, TimeoutError):
        return TransientSourceError(
            f"The server {where} did not answer within {timeout:g} seconds (host unreachable or timeout).",
            code="unreachable",
        )
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason).replace("_", " ").lower() if exc.reason else str(exc)
        return PermanentSourceError(
            f"The TLS handshake with {where} failed ({reason}). Check port and "
            "security: implicit TLS usually uses port 993, STARTTLS port 143.",
            code="tls_failed",
        )
    if isinstance(exc, ConnectionRefusedError):
        return TransientSourceError(
            f"The server {where} refused the connection (host unreachable: nothing listens on that port).",
            code="unreachable",
        )
    if isinstance(exc, socket.gaierror):
        return TransientSourceError(f"The host name '{host}' cannot be resolved ({exc.strerror}).", code="unreachable")
    if isinstance(exc, OSError):
        return TransientSourceError(f"The server {where} is unreachable ({exc.strerror or exc}).", code="unreachable")
    if isinstance(exc, imaplib.IMAP4.error):
        return TransientSourceError(
            f"The server {where} closed the connection before it was ready ({server_words(exc, password)}).",
            code="unreachable",
        )
    return PermanentSourceError(f"Connecting to {where} failed: {exc!r}", code="error")
