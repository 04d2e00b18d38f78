#!/usr/bin/env bash
# An Outlook .msg reader apart from extract-msg (which the import uses), for the import
# tests: the npm package @kenjiuno/msgreader at the version pinned in
# tests/data/msgreader/package.json, installed as its package-lock.json says (npm ci
# checks every package's integrity hash) into var/test-data/msgreader, with
# read_msg.cjs beside it. Nothing is fetched when the installed tree matches the lock
# file. Prints the path of read_msg.cjs (`node read_msg.cjs FILE.msg` prints JSON).
set -euo pipefail
cd "$(dirname "$0")/../.."

SRC=tests/data/msgreader
DEST=var/test-data/msgreader
die() { echo "ERROR: $*" >&2; exit 1; }

lock_sum=$(cat "$SRC/package.json" "$SRC/package-lock.json" | sha256sum | cut -d' ' -f1)
if ! [ -f "$DEST/node_modules/.webadmin-lock-sha256" ] || [ "$(cat "$DEST/node_modules/.webadmin-lock-sha256")" != "$lock_sum" ]; then
  command -v npm >/dev/null || die "npm not found: it installs @kenjiuno/msgreader (Debian: apt-get install npm)"
  mkdir -p "$DEST"
  cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/"
  (cd "$DEST" && npm ci --no-audit --no-fund --ignore-scripts --silent >&2) || die "npm ci of $SRC failed"
  echo "$lock_sum" > "$DEST/node_modules/.webadmin-lock-sha256"
fi
cp "$SRC/read_msg.cjs" "$DEST/"
echo "$DEST/read_msg.cjs"
