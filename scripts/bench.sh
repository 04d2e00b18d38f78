#!/usr/bin/env bash
# `make bench`: the benchmarks. They print numbers and ratios; they are not tests.
# Runs every bench/*_bench.py as `python -m bench.<name>_bench`. BENCH picks some:
#   BENCH=imap make bench            # only bench/imap_bench.py
#   BENCH="imap search" make bench   # those two
# Arguments after `bash scripts/bench.sh` go to each selected bench, e.g.
#   BENCH=imap bash scripts/bench.sh --mails 5000 --phases
source "$(dirname "$0")/common.sh"

ensure_debian_packages dovecot-imapd isync libmariadb-dev pkg-config
ensure_venv "[test,mariadb]"

# The bench database is dropped and created again by every run; Redis db 13 is
# the benches' own (the test suite uses 15).
export BENCH_MARIADB_URL=${BENCH_MARIADB_URL:-mysql://root@127.0.0.1:3306/webadmin_bench}
export BENCH_REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/13}
"$VENV/bin/python" scripts/check_services.py "$BENCH_MARIADB_URL" "$BENCH_REDIS_URL"

if [ -n "${BENCH:-}" ]; then
  read -r -a names <<< "$BENCH"
else
  names=()
  for file in bench/*_bench.py; do
    [ -e "$file" ] || continue
    name=$(basename "$file" .py)
    names+=("${name%_bench}")
  done
fi
[ ${#names[@]} -gt 0 ] || die "no benchmarks found (bench/*_bench.py)"

status=0
for name in "${names[@]}"; do
  [ -f "bench/${name}_bench.py" ] || die "no benchmark bench/${name}_bench.py (BENCH=$BENCH)"
  echo "==> bench: $name"
  "$VENV/bin/python" -m "bench.${name}_bench" "$@" || status=1
done
exit $status
