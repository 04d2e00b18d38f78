# Shared by run.sh, test.sh and bench.sh: the virtualenv and the project install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

die() { echo "ERROR: $*" >&2; exit 1; }

ensure_venv() {  # $1: pip extras, e.g. "" or "[test,mariadb]"
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv)"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create a virtualenv (Debian: apt-get install python3.11-venv)"
  fi
  local stamp="$VENV/.installed$1"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing WebAdmin$1 into $VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -e ".$1"
    touch "$stamp"
  fi
}

ensure_debian_packages() {  # installs them as root; otherwise says exactly what to install
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "missing Debian packages; run: sudo apt-get install ${missing[*]}"
  fi
}

ensure_translations() {  # locale/*/django.po -> .mo (not in git); msgfmt comes with Debian's gettext
  command -v msgfmt >/dev/null || ensure_debian_packages gettext
  # compilemessages only loads the settings: a throwaway key if none is set yet (run.sh sets it later).
  local key=()
  [ -n "${SECRET_KEY:-}${SECRET_KEY_FILE:-}" ] || key=(SECRET_KEY=compilemessages-only)
  env "${key[@]}" "$VENV/bin/python" manage.py compilemessages --ignore=.venv --ignore=var -v 0 \
    || die "could not compile the translations (locale/)"
}

ensure_vendor_static() {  # PDF.js into static/vendor/ (pinned, checksummed; needs npm once)
  [ -f static/vendor/pdfjs/pdf.min.mjs ] || command -v npm >/dev/null || ensure_debian_packages npm
  bash scripts/vendor_static.sh || die "could not install the vendored static files (scripts/vendor_static.sh)"
}
