"""Settings come from the environment and fail loudly on bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    base.update({"SECRET_KEY": "x" * 60, "DATA_DIR": str(ROOT / "var" / "test-config")})
    base.update(env)
    base = {k: v for k, v in base.items() if v is not None}
    return subprocess.run(
        [sys.executable, "manage.py", *(args or ("check",))],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY (or SECRET_KEY_FILE) must be set"),
        ({"SECRET_KEY_FILE": "/nonexistent/key"}, "SECRET_KEY_FILE='/nonexistent/key'"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DATABASE_URL": "postgres://localhost/x"}, "unsupported database"),
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL='nonsense'"),
        ({"CELERY_BROKER_URL": "amqp://guest@localhost//"}, "CELERY_BROKER_URL='amqp://guest@localhost//'"),
        ({"MAIL_MAX_MESSAGE_BYTES": "lots"}, "MAIL_MAX_MESSAGE_BYTES='lots' is not an integer"),
        ({"GRAPH_URL": "graph.example"}, "GRAPH_URL='graph.example' must start with"),
    ],
)
def test_bad_settings_stop_start_up_with_a_clear_message(env, message):
    result = start(env)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_secret_key_can_come_from_a_file(tmp_path):
    key = tmp_path / "key"
    key.write_text("k" * 60)
    result = start(
        {"SECRET_KEY": None, "SECRET_KEY_FILE": str(key)},
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY == 'k' * 60)",
    )
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr


def test_production_settings_pass_the_deploy_check():
    result = start(
        {
            "SECRET_KEY": "p" * 20 + "Q7#x" * 12,
            "DEBUG": "false",
            "HTTPS": "true",
            "ALLOWED_HOSTS": "archive.example.com",
        },
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_every_response_carries_the_security_headers(client, alice):
    client.force_login(alice)
    for url in ("/login/", "/dms/", "/healthz"):
        response = client.get(url)
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'self'" in response["Content-Security-Policy"]
        assert "script-src 'self'" in response["Content-Security-Policy"]
        assert response["Referrer-Policy"] == "same-origin"


def test_webadmin_home_links_every_administration_page(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/webadmin/").content.decode()
    for target in (
        "/webadmin/archive/",
        "/webadmin/sources/",
        "/webadmin/manage/archive/fielddefinition/",
        "/webadmin/users/",
        "/webadmin/groups/",
    ):
        assert f'href="{target}"' in page
        assert client.get(target).status_code == 200, target
