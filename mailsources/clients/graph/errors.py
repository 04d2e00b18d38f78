"""Graph's and Entra's answers, classified: every failure becomes a
:class:`~mailsources.clients.base.TransientSourceError` or
:class:`~mailsources.clients.base.PermanentSourceError` with a stable ``code`` and a message
that tells the administrator what to change. Classification reads Graph's ``error.code``
(never the message; O365 reads ``innerError.code``) and Entra's ``error_codes``. The client
secret never appears in an exception or a log line (:meth:`ErrorClassifier.scrub`).
"""

from __future__ import annotations

import email.utils
import re
import time
from datetime import UTC
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from msal.exceptions import MsalError

from ..base import PermanentSourceError, SourceError, TransientSourceError
from .o365 import TokenError

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
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
_ACCESS_DENIED_CODES = {
    "ErrorAccessDenied",
    "extensionError",
    "ExtensionError",
    "Authorization_RequestDenied",
    "AccessDenied",
}
_NO_MAILBOX_CODES = {"ErrorInvalidUser", "ResourceNotFound", "Request_ResourceNotFound", "UserNotFound"}


class GraphError(Exception):
    """A non-retryable (or no longer retryable) Graph answer; see ErrorClassifier.graph()."""

    def __init__(self, status: int, code: str, message: str, headers: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


def error_from(response: requests.Response) -> GraphError:
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
    return GraphError(response.status_code, code, message or response.reason or "", response.headers)


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


class ErrorClassifier:
    """Turns Graph errors, token errors and transport failures of one app + mailbox into
    SourceErrors whose messages name that mailbox and never the secret."""

    def __init__(self, *, tenant: str, client_id: str, mailbox: str, secret: str, authority_host: str) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.mailbox = mailbox
        self._secret = secret
        self._authority_host = authority_host

    def scrub(self, text: str) -> str:
        secret = self._secret
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
            quoted = quote(secret, safe="")
            if quoted != secret:
                text = text.replace(quoted, "[redacted]")
        return text

    # -- Graph ---------------------------------------------------------------------------------

    def graph(self, err: GraphError, doing: str) -> SourceError:
        """What a Graph answer means for the run ``doing`` something."""
        status, code, text = err.status, err.code, err.message
        if status == 401:
            return self._permanent(
                f"Microsoft Graph rejected the access token for {self.mailbox} ({code}: {text}).", "auth_rejected"
            )
        if status == 403 and code in _ACCESS_DENIED_CODES:
            return self._permanent(
                f"Access to mailbox {self.mailbox} was denied (403 {code}: {text}). The app needs the "
                "application permission Mail.Read (Mail.ReadWrite to move or delete) with admin "
                "consent; an application access policy may also exclude this mailbox.",
                "access_denied",
            )
        if status == 404:
            missing = self._not_found(code, text, doing)
            if missing is not None:
                return missing
        if status in RETRYABLE_STATUS or status >= 500:
            return TransientSourceError(
                self.scrub(f"Microsoft Graph failed while {doing} for {self.mailbox} ({status} {code}: {text})."),
                code="unavailable",
                retry_after=err.retry_after,
            )
        return self._permanent(
            f"Microsoft Graph refused {doing} for {self.mailbox} ({status} {code}: {text}).", "graph_error"
        )

    def _not_found(self, code: str, text: str, doing: str) -> SourceError | None:
        if code == "MailboxNotEnabledForRESTAPI":
            return self._permanent(
                f"Mailbox {self.mailbox} cannot be read through Microsoft Graph "
                "(MailboxNotEnabledForRESTAPI): it is inactive, soft-deleted, unlicensed or hosted "
                "on-premises.",
                "mailbox_not_rest",
            )
        if code in _NO_MAILBOX_CODES:
            detail = "has no mailbox" if code == "ResourceNotFound" else "was not found"
            return self._permanent(
                f"Mailbox {self.mailbox} {detail} (404 {code}). Check the address.", "mailbox_not_found"
            )
        if code == "ErrorItemNotFound":
            # Messages that vanish are skipped where they are fetched; what is left is a folder
            # deleted while we were working on it.
            return self._permanent(
                f"Folder not found while {doing} in {self.mailbox} (404 {code}: {text}).", "folder_not_found"
            )
        return None

    # -- Entra and the transport ---------------------------------------------------------------

    def auth(self, exc: Exception) -> SourceError:
        """What a failure to get a token means (msal errors, Entra's answers, the network)."""
        host = urlsplit(self._authority_host).netloc
        if isinstance(exc, TokenError):
            return self.token(exc.result)
        if isinstance(exc, requests.exceptions.SSLError):
            return self.tls(self._authority_host, exc)
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return TransientSourceError(
                self.scrub(f"Microsoft Entra ID ({host}) is unreachable: {type(exc).__name__}"),
                code="unreachable",
            )
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            retry_after = (
                parse_retry_after(exc.response.headers.get("Retry-After")) if exc.response is not None else None
            )
            return TransientSourceError(
                self.scrub(f"Microsoft Entra ID ({host}) answered {status}; try again later."),
                code="auth_unavailable",
                retry_after=retry_after,
            )
        if isinstance(exc, ValueError):
            return self._setup_failure(exc)
        if isinstance(exc, MsalError):
            return TransientSourceError(
                self.scrub(f"Microsoft Entra ID refused for now: {exc}"), code="auth_unavailable"
            )
        return TransientSourceError(
            self.scrub(f"Authentication failed unexpectedly: {type(exc).__name__}: {exc}"),
            code="auth_failed",
        )

    def _setup_failure(self, exc: ValueError) -> PermanentSourceError:
        # msal's OIDC discovery: a 4xx (AADSTS90002) means the tenant does not exist.
        detail = f"{exc} {exc.__context__ or ''}"
        if "AADSTS90002" in detail or re.search(r"HTTP status: 4\d\d", detail) or "should consist of" in detail:
            return self._permanent(
                f"Tenant {self.tenant!r} was not found (AADSTS90002). Check the Tenant ID "
                "(a GUID or a verified domain such as contoso.onmicrosoft.com).",
                "auth_unknown_tenant",
            )
        return self._permanent(f"Authentication setup failed: {exc}", "auth_failed")

    def token(self, result: dict[str, Any]) -> SourceError:
        """What Entra's error answer to a token request means."""
        codes = {int(c) for c in result.get("error_codes") or [] if str(c).isdigit()}
        error = str(result.get("error") or "")
        description = str(result.get("error_description") or "").split(" Trace ID:")[0].strip()
        if 7000215 in codes:
            return self._permanent(
                "Microsoft Entra ID rejected the client secret (AADSTS7000215). Enter the secret's "
                f"Value, not its Secret ID, from Certificates & secrets of app {self.client_id}.",
                "auth_bad_secret",
            )
        if 7000222 in codes:
            return self._permanent(
                f"The client secret of app {self.client_id} has expired (AADSTS7000222). Create a new "
                "secret under App registrations > Certificates & secrets and enter it here.",
                "auth_expired_secret",
            )
        if 700016 in codes:
            return self._permanent(
                f"Application {self.client_id} was not found in tenant {self.tenant} (AADSTS700016). "
                "Check the Client ID and that the app is registered in this tenant with admin consent.",
                "auth_unknown_app",
            )
        if 90002 in codes:
            return self._permanent(
                f"Tenant {self.tenant!r} was not found (AADSTS90002). Check the Tenant ID.", "auth_unknown_tenant"
            )
        if error in _OAUTH_PERMANENT_ERRORS:
            return self._permanent(
                f"Microsoft Entra ID refused the token request ({error}): {description}", "auth_failed"
            )
        # temporarily_unavailable, server_error, throttling, anything unexpected: try again later.
        return TransientSourceError(
            self.scrub(f"Microsoft Entra ID is temporarily unavailable: {description or error or 'no answer'}"),
            code="auth_unavailable",
        )

    def tls(self, url: str, exc: Exception) -> PermanentSourceError:
        return self._permanent(
            f"The TLS certificate of {urlsplit(url).netloc} is not trusted ({type(exc).__name__}); "
            "check the CA bundle or an intercepting proxy.",
            "tls_untrusted",
        )

    def _permanent(self, message: str, code: str) -> PermanentSourceError:
        return PermanentSourceError(self.scrub(message), code=code)
