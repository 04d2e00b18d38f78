"""Fail fast, and clearly, when a service the test suite needs is not there."""

import socket
import sys
from urllib.parse import urlsplit


def reachable(url: str, default_port: int) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=3).close()
        return host, port, True
    except OSError:
        return host, port, False


def main() -> int:
    mariadb_url, redis_url = sys.argv[1], sys.argv[2]
    problems = []
    for name, url, port, hint in (
        (
            "MariaDB",
            mariadb_url,
            3306,
            "start it (start-stop-daemon --start --background --exec /usr/sbin/mariadbd) or set TEST_MARIADB_URL",
        ),
        ("Redis", redis_url, 6379, "start it (redis-server --daemonize yes --bind 127.0.0.1) or set TEST_REDIS_URL"),
    ):
        host, port, ok = reachable(url, port)
        if not ok:
            problems.append(f"{name} is not reachable at {host}:{port}: {hint}")
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
