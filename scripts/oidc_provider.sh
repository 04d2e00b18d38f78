#!/usr/bin/env bash
# The OpenID Connect provider the sign-in tests start on loopback
# (tests/fakes/oidc/provider.mjs): the npm package oidc-provider at the version
# pinned in tests/fakes/oidc/package.json, installed exactly as its
# package-lock.json says (npm ci checks every package's integrity hash).
# Nothing is fetched when the installed tree already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/../tests/fakes/oidc"

die() { echo "ERROR: $*" >&2; exit 1; }
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f node_modules/.webadmin-lock-sha256 ] && [ "$(cat node_modules/.webadmin-lock-sha256)" = "$lock_sum" ]; then
  exit 0
fi
command -v npm >/dev/null || die "npm not found: it installs the test OIDC provider (Debian: apt-get install npm)"
echo "==> installing the test OIDC provider (oidc-provider) into tests/fakes/oidc/node_modules"
npm ci --no-audit --no-fund --ignore-scripts --silent || die "npm ci of tests/fakes/oidc failed"
echo "$lock_sum" > node_modules/.webadmin-lock-sha256
