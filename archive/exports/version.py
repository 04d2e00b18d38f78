"""The software version the exports and the procedure documentation name."""

from __future__ import annotations

import functools
import subprocess
import tomllib
from pathlib import Path

from django.conf import settings


@functools.cache
def software_version() -> str:
    """``0.1.0`` from pyproject.toml, with the git commit when the code is a checkout."""
    base = Path(settings.BASE_DIR)
    try:
        version = str(tomllib.loads((base / "pyproject.toml").read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "-C", str(base), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version} (commit {commit})" if commit else version
