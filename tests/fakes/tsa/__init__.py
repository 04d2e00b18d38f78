"""A real RFC 3161 Time-Stamping Authority on loopback: OpenSSL's
``openssl ts -reply`` behind a small HTTP server, with a CA and a TSA
certificate generated for it by the openssl CLI.

``FakeTsa(folder).start()`` → ``url``, ``ca_file``, ``cert_file``; ``down = True``
makes it answer 503 (a TSA that is unreachable for the client's purposes), and
``requests`` counts the requests answered."""

from __future__ import annotations

import http.server
import subprocess
import threading
from pathlib import Path

_CONFIG = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = {cn}
[ ca_ext ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ tsa_ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ tsa ]
default_tsa = tsa_section
[ tsa_section ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_authority(folder: Path, name: str = "Test TSA") -> None:
    """CA key and certificate, TSA key and certificate (critical EKU timeStamping) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "openssl.cnf").write_text(_CONFIG.format(dir=folder, cn=name))
    (folder / "serial").write_text("01\n")
    cnf = str(folder / "openssl.cnf")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        f"/CN={name} CA",
        "-config",
        cnf,
        "-extensions",
        "ca_ext",
        cwd=folder,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tsa.key",
        "-out",
        "tsa.csr",
        "-subj",
        f"/CN={name}",
        "-config",
        cnf,
        cwd=folder,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "tsa.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tsa.crt",
        "-days",
        "3650",
        "-extfile",
        cnf,
        "-extensions",
        "tsa_ext",
        cwd=folder,
    )


class FakeTsa:
    def __init__(self, folder: Path, name: str = "Test TSA") -> None:
        self.folder = folder
        make_authority(folder, name)
        self.ca_file = str(folder / "ca.crt")
        self.cert_file = str(folder / "tsa.crt")
        self.down = False
        self.requests = 0
        self._lock = threading.Lock()  # openssl's serial file: one reply at a time
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/tsa"

    def reply(self, query: bytes) -> bytes:
        with self._lock:
            (self.folder / "query.tsq").write_bytes(query)
            _openssl(
                "ts",
                "-reply",
                "-config",
                str(self.folder / "openssl.cnf"),
                "-queryfile",
                "query.tsq",
                "-out",
                "reply.tsr",
                cwd=self.folder,
            )
            self.requests += 1
            return (self.folder / "reply.tsr").read_bytes()

    def start(self) -> FakeTsa:
        tsa = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                query = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if tsa.down or self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_response(503 if tsa.down else 400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = tsa.reply(query)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
