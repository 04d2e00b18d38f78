"""A real OpenID Connect provider (the npm package oidc-provider, installed by
scripts/oidc_provider.sh) run by node on a loopback port, and a user agent that
signs in at it for tests that drive WebAdmin with Django's test client."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from tests.imap_server import _die_with_parent, free_port

HERE = Path(__file__).resolve().parent
CLIENT_ID = "webadmin"
CLIENT_SECRET = "test-only-oidc-client-secret"
ACCOUNTS: dict[str, dict[str, Any]] = {
    "olga": {"email": "olga@example.org", "name": "Olga Oidc", "groups": ["finance"]},
    "oskar": {"email": "oskar@example.org", "name": "Oskar Admin", "groups": ["archive-admins", "finance"]},
    "alice": {"email": "alice@example.org", "name": "Alice Namesake", "groups": []},
}


class OidcProvider:
    def __init__(self, redirect_uris: list[str]) -> None:
        node = shutil.which("node")
        if node is None or not (HERE / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(
                "The OIDC tests need node and oidc-provider: apt-get install npm; bash scripts/oidc_provider.sh"
            )
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        config = {
            "port": self.port,
            "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": redirect_uris}],
            "accounts": ACCOUNTS,
        }
        self._process = subprocess.Popen(
            [node, str(HERE / "provider.mjs")],
            env={"PATH": "/usr/bin:/bin", "OIDC_TEST_CONFIG": json.dumps(config)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().decode()  # blocks until it listens, or exits
        if not line.startswith("LISTENING"):
            self.stop()
            raise RuntimeError(f"the OIDC provider did not start: {line!r}")

    def discovery(self) -> dict[str, str]:
        document: dict[str, str] = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10).json()
        return document

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        if self._process.stdout:
            self._process.stdout.close()


def log_in_at_provider(authorize_url: str, account: str, back_to: str) -> str:
    """Sign in at the provider's pages and consent, as a person would in a
    browser; answers the URL the provider sends the browser back to (on ``back_to``)."""
    agent = requests.Session()
    url = authorize_url
    for _ in range(12):
        response = agent.get(url, allow_redirects=False, timeout=10)
        while response.is_redirect:
            url = urljoin(url, response.headers["Location"])
            if url.startswith(back_to):
                return url
            response = agent.get(url, allow_redirects=False, timeout=10)
        page = response.text
        action = re.search(r'<form[^>]*action="([^"]+)"', page)
        prompt = re.search(r'name="prompt" value="(\w+)"', page)
        if action is None or prompt is None:
            raise AssertionError(f"the provider showed no form at {url}: {page[:500]}")
        fields = {"prompt": prompt.group(1), "login": account, "password": "any"}
        submitted = agent.post(urljoin(url, action.group(1)), data=fields, allow_redirects=False, timeout=10)
        url = urljoin(url, submitted.headers["Location"])
        if url.startswith(back_to):
            return url
    raise AssertionError("the provider never sent the browser back")


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path
