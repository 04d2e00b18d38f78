"""Serving one request: routing to Entra or Graph, injected faults, latency, the request log
and the counters."""

from __future__ import annotations

import email
import email.policy
import email.utils
import math
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .model import (
    _GRAPH_DEFAULT_CODES,
    ErrorRule,
    RequestRecord,
    _Reply,
    _Req,
)

if TYPE_CHECKING:
    from .server import _Handler


class ServingMixin:
    """Part of :class:`~tests.fakes.graph_fake.GraphFake` (whose state it uses)."""

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
