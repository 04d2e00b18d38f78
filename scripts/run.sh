#!/usr/bin/env bash
# `make run`: the whole product on one machine with no external service —
# SQLite, local storage, Celery on kombu's filesystem broker — until Ctrl+C.
source "$(dirname "$0")/common.sh"
ensure_debian_packages libldap2-dev libsasl2-dev gettext  # gettext: compilemessages; python-ldap (LDAP / Active Directory sign-in) builds against them
ensure_venv ""
ensure_vendor_static
ensure_translations

export DATA_DIR=${DATA_DIR:-$PWD/var}
mkdir -p "$DATA_DIR"
if [ -z "${SECRET_KEY:-}${SECRET_KEY_FILE:-}" ]; then
  if [ ! -s "$DATA_DIR/secret_key" ]; then
    (umask 077; "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))' > "$DATA_DIR/secret_key")
  fi
  export SECRET_KEY_FILE="$DATA_DIR/secret_key"
fi
# Plain HTTP on localhost: no HTTPS redirect, no secure-only cookies.
export HTTPS=${HTTPS:-false}
export DEBUG=${DEBUG:-false}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}

PY="$VENV/bin/python"
"$PY" manage.py migrate --noinput
"$PY" manage.py ledger_baseline  # documents archived before the integrity ledger get their first entry (once)
"$PY" manage.py collectstatic --noinput >/dev/null
"$PY" manage.py ensure_admin

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "==> stopping"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# A worker only for syncs (two sources at once), so a sync never waits behind derived work; one for
# processing and text extraction (queues and routing: CELERY_TASK_ROUTES in settings).
"$VENV/bin/celery" -A webadmin worker --queues=sync --hostname=sync@%h --loglevel=INFO --concurrency=2 & pids+=($!)
"$VENV/bin/celery" -A webadmin worker --queues=processing,extraction --hostname=derived@%h --loglevel=INFO \
  --concurrency=2 & pids+=($!)
"$VENV/bin/celery" -A webadmin beat --loglevel=INFO & pids+=($!)
"$VENV/bin/gunicorn" webadmin.wsgi --bind "$HOST:$PORT" --workers 2 --access-logfile - & pids+=($!)
echo "==> WebAdmin is running at http://$HOST:$PORT/  (Ctrl+C stops web server, workers and beat)"
wait -n "${pids[@]}"
