"""A private OpenLDAP ``slapd`` (Debian's slapd package) for the LDAP sign-in
tests: a temporary slapd.conf and MDB database loaded from directory.ldif with
``slapadd``, served on a loopback port with StartTLS (a trustme CA)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import trustme

from tests.imap_server import _die_with_parent, free_port

HERE = Path(__file__).resolve().parent
SUFFIX = "dc=example,dc=org"
READER_DN = f"cn=reader,{SUFFIX}"
READER_PASSWORD = "reader-ldap-pass"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-ldap-pass"
PEOPLE = ("dora", "erik", "carol", "alice")
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")

CONFIG = """\
{includes}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {root}/slapd.pid
TLSCACertificateFile {root}/ca.pem
TLSCertificateFile {root}/server.pem
TLSCertificateKeyFile {root}/server.key
database mdb
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw {admin_password}
directory {root}/db
access to attrs=userPassword by anonymous auth by self read by * none
access to * by dn.exact="{reader}" read by users read by * none
"""


def password_of(uid: str) -> str:
    return f"{uid}-ldap-pass"


def find(binary: str) -> str:
    for candidate in (shutil.which(binary), f"/usr/sbin/{binary}"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError(f"The LDAP tests need {binary}: apt-get install -y slapd ldap-utils")


class SlapdServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="webadmin-slapd-"))
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.ca = trustme.CA()
        self.ca_file = str(self.root / "ca.pem")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        root = self.root
        (root / "db").mkdir()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(root / "server.key"))
        (root / "server.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        self.ca.cert_pem.write_to_path(self.ca_file)
        includes = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
        conf = root / "slapd.conf"
        conf.write_text(
            CONFIG.format(includes=includes, root=root, suffix=SUFFIX, reader=READER_DN, admin_password=ADMIN_PASSWORD)
        )
        values = {f"{uid}_password": password_of(uid) for uid in PEOPLE} | {"reader_password": READER_PASSWORD}
        (root / "data.ldif").write_text((HERE / "directory.ldif").read_text().format(**values))
        subprocess.run(
            [find("slapadd"), "-f", str(conf), "-l", str(root / "data.ldif")], check=True, capture_output=True
        )
        self._process = subprocess.Popen(
            [find("slapd"), "-f", str(conf), "-h", self.uri, "-d", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Up when the reader can bind: at most 300 tries, 50 ms apart."""
        import ldap

        assert self._process is not None
        for _ in range(300):
            if self._process.poll() is not None:
                raise RuntimeError(f"slapd exited at start:\n{self._process.communicate()[0].decode()}")
            try:
                ldap.initialize(self.uri).simple_bind_s(READER_DN, READER_PASSWORD)
                return
            except ldap.SERVER_DOWN:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("slapd did not start")

    def modify(self, dn: str, changes: list[tuple[int, str, list[bytes]]]) -> None:
        """Change the directory as its administrator would (python-ldap, over StartTLS)."""
        import ldap

        connection = ldap.initialize(self.uri)
        connection.set_option(ldap.OPT_X_TLS_CACERTFILE, self.ca_file)
        connection.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        connection.start_tls_s()
        connection.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
        try:
            connection.modify_s(dn, changes)
        finally:
            connection.unbind_s()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
        shutil.rmtree(self.root, ignore_errors=True)
