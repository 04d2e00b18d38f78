"""A small TCP proxy that can cut connections, to test what a client does then.

    with TcpProxy("127.0.0.1", 993, cut_after_server_bytes=50_000) as proxy:
        connect to ("127.0.0.1", proxy.port) ...

Every accepted connection is forwarded to the target. With
``cut_after_server_bytes`` set, a connection is closed (both sides, abruptly)
once that many bytes went from the server to the client on it, exactly: the
client sees the stream end in the middle of whatever it was reading.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, cut_after_server_bytes: int | None = None) -> None:
        self.target = (target_host, target_port)
        # May be changed between connections, e.g. set to None to heal the line.
        self.cut_after_server_bytes = cut_after_server_bytes
        self.host = "127.0.0.1"
        self._listener = socket.create_server((self.host, 0))
        self.port = int(self._listener.getsockname()[1])
        self.server_bytes = 0  # totals over all connections
        self.client_bytes = 0
        self.connections = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._accept_thread.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.1)
        while not self._closing.is_set():
            try:
                client, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._pump, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, client: socket.socket) -> None:
        limit = self.cut_after_server_bytes  # fixed for this connection
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        sent_to_client = 0
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        try:
            while not self._closing.is_set():
                for key, _mask in selector.select(timeout=0.1):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    dest: socket.socket = key.data
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is server:
                        if limit is not None and sent_to_client + len(data) >= limit:
                            dest.sendall(data[: limit - sent_to_client])
                            with self._lock:
                                self.server_bytes += limit - sent_to_client
                                self.cuts += 1
                            _reset(client)
                            _reset(server)
                            return
                        sent_to_client += len(data)
                        with self._lock:
                            self.server_bytes += len(data)
                    else:
                        with self._lock:
                            self.client_bytes += len(data)
                    dest.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, like a dropped line or a killed middlebox."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
