"""A private Dovecot for the tests, and a fake IMAP server for what Dovecot won't do.

Dovecot comes from Debian's ``dovecot-imapd`` package and runs with its own
config, base_dir and maildirs in a temp dir, on loopback and free ports:
never the system instance. It serves plain IMAP with STARTTLS and implicit
TLS, with a certificate for "localhost" only (connecting to 127.0.0.1 thus
fails host name verification, as a wrong host name should) issued by a
throwaway test CA (``trustme``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import imaplib
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import trustme
from imapclient.imap_utf7 import encode as encode_utf7

DOVECOT_PACKAGE = "dovecot-imapd"
HOST = "localhost"  # the name in the server certificate; 127.0.0.1 is *not* in it

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = webadmin-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
mail_location = maildir:{root}/mail/%n
# Throwaway mail: loading a big test mailbox need not wait for the disk.
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {root}/users/%n
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%n
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No growing penalty for repeated wrong passwords: the tests make them on purpose.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
"""


def encode_folder_name(name: str) -> str:
    """A folder name in IMAP's modified UTF-7, as Dovecot's maildir names it."""
    return encode_utf7(name).decode("ascii")


def quote_folder_name(name: str) -> str:
    """The folder as an IMAP quoted string, for the raw imaplib commands below."""
    return '"' + encode_folder_name(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_dovecot() -> str:
    for candidate in (shutil.which("dovecot"), "/usr/sbin/dovecot"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "The tests need Dovecot, which is not installed: install the Debian package "
        f"'{DOVECOT_PACKAGE}' (apt-get install -y {DOVECOT_PACKAGE})."
    )


def _die_with_parent() -> None:
    """Linux: SIGTERM Dovecot when the test process dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class ImapUser:
    name: str
    password: str


class DovecotServer:
    """A running private Dovecot. ``start()`` / ``stop()``, or use as a context manager."""

    def __init__(self) -> None:
        self.binary = find_dovecot()
        self.doveadm = str(Path(self.binary).with_name("doveadm"))
        if not os.access(self.doveadm, os.X_OK):
            self.doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        self.host = HOST
        self.root = Path(tempfile.mkdtemp(prefix="webadmin-dovecot-"))
        self.port = 0  # plain IMAP, offers STARTTLS
        self.tls_port = 0  # implicit TLS
        self.ca = trustme.CA()
        self.ca_file = str(self.root / "tls" / "ca.pem")
        self.config = self.root / "dovecot.conf"
        self._process: subprocess.Popen[bytes] | None = None
        self._users: dict[str, ImapUser] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        root = self.root
        for sub in ("run", "state", "tls", "mail"):
            (root / sub).mkdir()
        if os.geteuid() == 0:
            # Dovecot refuses to run mail or login processes as root: mail belongs
            # to "nobody", logins run as Debian's "dovenull".
            mail = pwd.getpwnam("nobody")
            mail_uid, mail_gid = mail.pw_uid, mail.pw_gid
            login_user, internal_user, internal_group = "dovenull", "root", "root"
            os.chmod(root, 0o755)  # mkdtemp's 0700 would lock "nobody" out
            os.chown(root / "mail", mail_uid, mail_gid)
        else:  # a developer running as themselves: Dovecot then serves only them
            me = pwd.getpwuid(os.geteuid())
            mail_uid, mail_gid = me.pw_uid, me.pw_gid
            login_user = internal_user = me.pw_name
            internal_group = str(me.pw_gid)
        cert = self.ca.issue_cert(HOST)
        cert.private_key_pem.write_to_path(str(root / "tls" / "key.pem"))
        (root / "tls" / "cert.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        self.ca.cert_pem.write_to_path(self.ca_file)
        # One passwd-file per user: a new file is read fresh, while a changed
        # shared file may be served from Dovecot's stale copy for a moment.
        (root / "users").mkdir()
        self.port, self.tls_port = free_port(), free_port()
        self.config.write_text(
            _CONFIG.format(
                root=root,
                port=self.port,
                tls_port=self.tls_port,
                mail_uid=mail_uid,
                mail_gid=mail_gid,
                login_user=login_user,
                internal_user=internal_user,
                internal_group=internal_group,
            )
        )
        self._process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                output = self._process.stdout.read().decode() if self._process.stdout else ""
                raise RuntimeError(f"Dovecot exited at start:\n{output}\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Dovecot did not start within 15 s:\n{self.log()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # the master stops all its children
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdout:
            process.stdout.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------- users and mail

    def add_user(
        self, name: str | None = None, password: str | None = None, *, capabilities: str | None = None
    ) -> ImapUser:
        """Create a user with an empty INBOX.

        ``capabilities``: replaces the post-login CAPABILITY list for this user
        (e.g. "IMAP4rev1 LITERAL+" for a server without MOVE/UIDPLUS).
        """
        with self._lock:
            name = name or f"user{next(self._counter)}-{secrets.token_hex(3)}"
            password = password or f"pw-{secrets.token_urlsafe(12)}"
            if ":" in name + password or "\n" in name + password:
                raise ValueError("passwd-file cannot hold ':' or newlines")
            extra = f"userdb_imap_capability={capabilities}" if capabilities else ""
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError("user names here are letters, digits, '-' and '_'")
            path = self.root / "users" / name
            path.write_text(f"{name}:{{PLAIN}}{password}::::::{extra}\n")
            user = ImapUser(name, password)
            self._users[name] = user
        return user

    def mailbox(self, user: ImapUser) -> Mailbox:
        return Mailbox(self, user)

    def doveadm_run(self, *args: str) -> str:
        result = subprocess.run(
            [self.doveadm, "-c", str(self.config), *args], capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stderr}")
        return result.stdout


class Mailbox:
    """One user's mailbox on the test Dovecot, with helpers to set up scenarios.

    Helpers talk IMAP to the real server (as mail delivery would), through their
    own connection, never through the client under test.
    """

    def __init__(self, server: DovecotServer, user: ImapUser) -> None:
        self.server = server
        self.user = user

    def client_kwargs(self, security: str = "tls", **overrides: Any) -> dict[str, Any]:
        """Constructor arguments for ``ImapClient`` pointing at this mailbox."""
        port = self.server.tls_port if security == "tls" else self.server.port
        kwargs: dict[str, Any] = {
            "host": self.server.host,
            "port": port,
            "security": security,
            "username": self.user.name,
            "password": self.user.password,
            "ca_file": self.server.ca_file,
            "timeout": 10.0,
            "allow_unencrypted": security == "none",
        }
        kwargs.update(overrides)
        return kwargs

    @contextlib.contextmanager
    def connect(self) -> Iterator[imaplib.IMAP4_SSL]:
        context = ssl.create_default_context(cafile=self.server.ca_file)
        conn = imaplib.IMAP4_SSL(self.server.host, self.server.tls_port, ssl_context=context, timeout=10)
        try:
            conn.login(self.user.name, self.user.password)
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def create_folder(self, name: str) -> None:
        with self.connect() as conn:
            typ, data = conn.create(quote_folder_name(name))
            assert typ == "OK", data

    def append(
        self, folder: str, raw: bytes, *, internal_date: datetime | None = None, flags: str = "", create: bool = True
    ) -> int:
        """APPEND one message; returns its UID (Dovecot answers APPENDUID)."""
        return self.append_many(folder, [raw], internal_date=internal_date, flags=flags, create=create)[0]

    def append_many(
        self,
        folder: str,
        raws: list[bytes],
        *,
        internal_date: datetime | None = None,
        flags: str = "",
        create: bool = True,
    ) -> list[int]:
        uids: list[int] = []
        with self.connect() as conn:
            if create and folder.upper() != "INBOX":
                conn.create(quote_folder_name(folder))  # NO if it exists: fine
            date = imaplib.Time2Internaldate(internal_date) if internal_date else None
            for raw in raws:
                typ, data = conn.append(quote_folder_name(folder), f"({flags})" if flags else None, date, raw)
                assert typ == "OK", data
                text = data[-1].decode()
                uids.append(int(text.split("APPENDUID ", 1)[1].split()[1].rstrip("]")))
        return uids

    def import_many(
        self, folder: str, raws: list[bytes], *, internal_dates: list[datetime] | None = None, seen: bool = False
    ) -> None:
        """Bulk-load mails (thousands per second, for benchmarks) with ``doveadm import``.

        The mails are written as a maildir, their mtime the INTERNALDATE, and
        imported into ``folder`` (created if needed). UIDs follow list order.
        """
        source = Path(tempfile.mkdtemp(prefix="import-", dir=self.server.root))
        try:
            sub = "" if folder.upper() == "INBOX" else "." + encode_folder_name(folder)
            base = source / sub if sub else source
            for directory in (source, base):
                for part in ("cur", "new", "tmp"):
                    (directory / part).mkdir(parents=True, exist_ok=True)
            now = time.time()
            for index, raw in enumerate(raws):
                path = base / "cur" / f"{int(now)}.M{index}P{os.getpid()}.import:2,{'S' if seen else ''}"
                path.write_bytes(raw)
                stamp = internal_dates[index].timestamp() if internal_dates else now
                os.utime(path, (stamp, stamp))
            if os.geteuid() == 0:  # doveadm reads it as the mail user
                mail_uid = (self.server.root / "mail").stat().st_uid
                for path in [source, *source.rglob("*")]:
                    os.chown(path, mail_uid, -1)
            self.server.doveadm_run("import", "-u", self.user.name, f"maildir:{source}", "", "all")
        finally:
            shutil.rmtree(source, ignore_errors=True)

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.connect() as conn:
            typ, data = conn.select(quote_folder_name(folder), readonly=True)
            assert typ == "OK", data
            typ, data = conn.uid("SEARCH", "ALL")
            return sorted(int(u) for u in (data[0] or b"").split())

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        """{uid: {"\\Seen", ...}} without changing anything (EXAMINE)."""
        result: dict[int, set[str]] = {}
        with self.connect() as conn:
            typ, data = conn.select(quote_folder_name(folder), readonly=True)
            assert typ == "OK", data
            typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS)")
            for item in data:
                if not isinstance(item, bytes):
                    continue
                text = item.decode()
                uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
                flags = text.split("FLAGS (", 1)[1].split(")", 1)[0].split()
                result[uid] = {f for f in flags if f != "\\Recent"}
        return result

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.connect() as conn:
            typ, data = conn.status(quote_folder_name(folder), "(UIDVALIDITY)")
            assert typ == "OK", data
            return int(data[0].decode().rsplit("UIDVALIDITY ", 1)[1].rstrip(")"))

    def change_uidvalidity(self, folder: str = "INBOX") -> int:
        """Give the folder a new UIDVALIDITY (as after a server restore); returns it."""
        new = self.uidvalidity(folder) + 1000
        self.server.doveadm_run("mailbox", "update", "--uid-validity", str(new), "-u", self.user.name, folder)
        return new


class FakeImapServer:
    """A tiny scripted IMAP server for cases Dovecot cannot show.

    Greets, answers CAPABILITY with ``capabilities`` and everything else with
    BAD; with ``tls_context`` it speaks implicit TLS (e.g. a certificate for
    another host name). ``silent=True`` accepts and never greets (a timeout).
    """

    def __init__(
        self,
        capabilities: str = "IMAP4rev1 AUTH=PLAIN",
        *,
        tls_context: ssl.SSLContext | None = None,
        silent: bool = False,
    ) -> None:
        self.capabilities = capabilities
        self.tls_context = tls_context
        self.silent = silent
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.received: list[bytes] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __enter__(self) -> FakeImapServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self._listener.settimeout(0.1)
        while not self._closing.is_set():
            try:
                conn, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        conn: socket.socket = raw
        try:
            conn.settimeout(5)
            if self.tls_context is not None:
                conn = self.tls_context.wrap_socket(raw, server_side=True)
            if self.silent:
                self._closing.wait(10)
                return
            conn.sendall(b"* OK fake IMAP ready\r\n")
            stream = conn.makefile("rb")
            for line in stream:
                self.received.append(line)
                tag, _, rest = line.decode(errors="replace").strip().partition(" ")
                command = rest.split(" ", 1)[0].upper()
                if command == "CAPABILITY":
                    conn.sendall(f"* CAPABILITY {self.capabilities}\r\n{tag} OK done\r\n".encode())
                elif command == "LOGOUT":
                    conn.sendall(f"* BYE bye\r\n{tag} OK done\r\n".encode())
                    return
                else:
                    conn.sendall(f"{tag} BAD not supported here\r\n".encode())
        except (OSError, ssl.SSLError):
            pass  # the client hung up (e.g. after rejecting our certificate)
        finally:
            with contextlib.suppress(OSError):
                conn.close()
