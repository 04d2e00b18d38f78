"""The integrity tests' TSA: a real one (OpenSSL) on loopback, with its test CA."""

from __future__ import annotations

import pytest

from tests.fakes.tsa import FakeTsa


@pytest.fixture(scope="session")
def tsa_server(tmp_path_factory):
    server = FakeTsa(tmp_path_factory.mktemp("tsa")).start()
    yield server
    server.stop()


@pytest.fixture
def tsa_up(tsa_server, settings):
    """The TSA, configured for this test (up, its CA trusted)."""
    tsa_server.down = False
    settings.TSA_URL = tsa_server.url
    settings.TSA_CA_FILE = tsa_server.ca_file
    settings.TSA_CERT_FILE = tsa_server.cert_file
    yield tsa_server
    tsa_server.down = False
