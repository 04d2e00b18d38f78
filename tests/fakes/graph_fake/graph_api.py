"""Graph: authentication of every call, the throttling model (concurrency and window per app +
mailbox), the error envelope and routing to the mailbox resources (:mod:`.mail`)."""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .model import (
    _MAIL_READ_ROLES,
    _MAIL_WRITE_ROLES,
    _App,
    _GraphFakeError,
    _now,
    _Reply,
    _Req,
    _ThrottleState,
)

if TYPE_CHECKING:
    pass


class GraphApiMixin:
    """Part of :class:`~tests.fakes.graph_fake.GraphFake` (whose state it uses)."""

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
        if token.revoked or self.clock() >= token.server_expires:
            if not token.refused:
                token.refused = True
                self._stats.tokens_refused += 1
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
            # Whether mailboxes were served at the same time: how many had a request in flight.
            busy = len({m for (_, m), state in self._throttle.items() if state.in_flight > 0})
            self._stats.max_mailboxes_in_flight = max(self._stats.max_mailboxes_in_flight, busy)
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
