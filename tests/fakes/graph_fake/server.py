"""HTTPS plumbing: a threading server doing the TLS handshake per connection, and a handler
that hands each request to the fake and writes its reply."""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .model import (
    _Reply,
    _Req,
)

if TYPE_CHECKING:
    from .fake import GraphFake


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


def free_port() -> int:
    """A loopback port nobody listens on (for "unreachable" tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
