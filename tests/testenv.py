"""Test-run defaults, set before Django's settings are imported (pytest loads
this root conftest first). Real values come from `make test` / the environment."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("SOURCE_SECRET_KEY", "test-only-source-secret-key")
os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="webadmin-test-"))
os.environ.setdefault("HTTPS", "false")
