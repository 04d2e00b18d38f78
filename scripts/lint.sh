#!/usr/bin/env bash
# `make lint`: ruff (rules and formatting) and mypy with django-stubs
# (strict on archive/ and mailsources/, see pyproject.toml).
source "$(dirname "$0")/common.sh"

# mypy imports everything: the packages python-ldap and mysqlclient build against.
ensure_debian_packages libmariadb-dev pkg-config libldap2-dev libsasl2-dev
ensure_venv "[test,mariadb]"

status=0
echo "==> ruff check"; "$VENV/bin/ruff" check . || status=1
echo "==> ruff format --check"; "$VENV/bin/ruff" format --check . || status=1
# The django-stubs plugin imports the settings: give it a throw-away environment.
lint_data=$(mktemp -d /tmp/webadmin-lint-XXXXXX)
echo "==> mypy"
SECRET_KEY=lint-only SOURCE_SECRET_KEY=lint-only DATA_DIR="$lint_data" \
  "$VENV/bin/mypy" || status=1
rm -rf "$lint_data"
exit $status
