"""IMAP fixtures, loaded by tests/conftest.py via ``pytest_plugins = ["tests.conftest_imap"]``.

- ``dovecot`` (session): the running private ``DovecotServer``.
- ``imap_mailbox`` (function): a ``Mailbox`` of a fresh user on it (empty INBOX).
- ``imap_mailbox_factory`` (function): ``make(capabilities=None) -> Mailbox`` for more users.
- ``tcp_proxy_factory`` (function): ``make(host, port, cut_after_server_bytes=None) -> TcpProxy``,
  closed after the test.
"""

from __future__ import annotations

import imaplib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.imap_server import DovecotServer, Mailbox, find_dovecot
from tests.tcp_proxy import TcpProxy


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    try:
        find_dovecot()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)  # a missing server is a failure, never a skip
    with DovecotServer() as server:
        yield server


@pytest.fixture
def imap_mailbox_factory(dovecot: DovecotServer) -> Callable[..., Mailbox]:
    def make(capabilities: str | None = None) -> Mailbox:
        return dovecot.mailbox(dovecot.add_user(capabilities=capabilities))

    return make


@pytest.fixture
def imap_mailbox(imap_mailbox_factory: Callable[..., Mailbox]) -> Mailbox:
    return imap_mailbox_factory()


@pytest.fixture
def tcp_proxy_factory() -> Iterator[Callable[..., TcpProxy]]:
    proxies: list[TcpProxy] = []

    def make(host: str, port: int, cut_after_server_bytes: int | None = None) -> TcpProxy:
        proxy = TcpProxy(host, port, cut_after_server_bytes=cut_after_server_bytes)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def imap_commands(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Every IMAP command sent through imaplib from now on, as (name, *args) strings.

    IMAPClient sends FETCH, SELECT/EXAMINE, LOGIN, AUTHENTICATE, MOVE, STORE and
    EXPUNGE this way; SEARCH and ENABLE it writes itself, so they are not listed.
    """
    sent: list[tuple[str, ...]] = []
    original = imaplib.IMAP4._command  # type: ignore[attr-defined]

    def recording(self: imaplib.IMAP4, name: str, *args: Any) -> Any:
        # IMAPClient passes bytes and leaves unused trailing arguments None.
        sent.append((name, *(a.decode() if isinstance(a, bytes) else str(a) for a in args if a is not None)))
        return original(self, name, *args)

    monkeypatch.setattr(imaplib.IMAP4, "_command", recording)
    return sent
