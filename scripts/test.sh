#!/usr/bin/env bash
# `make test`: install what the suite needs, then run the whole suite on SQLite
# and on MariaDB, with Redis. A missing service fails the run with a clear
# message; nothing is skipped.
source "$(dirname "$0")/common.sh"

ensure_debian_packages chromium dovecot-imapd isync openssl libmariadb-dev pkg-config \
  libldap2-dev libsasl2-dev slapd ldap-utils gettext  # LDAP sign-in (python-ldap, a test slapd)
ensure_debian_packages pst-utils  # readpst (libpst): the PST import tests compare with it
# npm for the test OIDC provider: Debian's package only where no Node.js brought its own
# (NodeSource's nodejs includes npm and conflicts with Debian's npm package).
command -v npm >/dev/null || ensure_debian_packages npm
ensure_venv "[test,mariadb]"
ensure_vendor_static
ensure_translations
bash scripts/oidc_provider.sh || die "could not install the test OIDC provider (scripts/oidc_provider.sh)"

MARIADB_URL=${TEST_MARIADB_URL:-mysql://root@127.0.0.1:3306/test}
export TEST_REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
"$VENV/bin/python" scripts/check_services.py "$MARIADB_URL" "$TEST_REDIS_URL"

run_suite() {  # $1: label, $2: DATABASE_URL
  echo "==> test suite on $1"
  local data; data=$(mktemp -d /tmp/webadmin-test-XXXXXX)
  DATABASE_URL="$2" DATA_DIR="$data" "$VENV/bin/pytest" "${PYTEST_ARGS[@]}" || status=1
  rm -rf "$data"
}

PYTEST_ARGS=("$@")
status=0
[ "${ONLY:-sqlite}" = mariadb ] || run_suite SQLite "sqlite:////tmp/webadmin-test-unused.sqlite3"
[ "${ONLY:-mariadb}" = sqlite ] || run_suite MariaDB "$MARIADB_URL"
exit $status
