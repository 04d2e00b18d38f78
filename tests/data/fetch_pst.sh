#!/usr/bin/env bash
# The PST file of the import tests: a mailbox of the EDRM Enron e-mail data set (CC BY
# 3.0 US, produced as PST by ZL Technologies), as shipped in the npm package pst-extractor
# (MIT) under example/testdata/. 14 MB, so fetched here with npm, not kept in git:
# a pinned version, its tarball and the file checked against pinned SHA-256 sums;
# when the file is there and matches, nothing is fetched. Prints the file's path.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=1.12.0
TARBALL_SHA256=c4c9eb9e75d09171452a4706df7d0e0e49606c1ca04aa81f30417dd385ad0e30
PST_SHA256=6152489de3472be6f1f840935d34b6dbf5f62b025dd015929ea9cf66eb5a5b46
DEST=var/test-data/pst-extractor-$VERSION
PST=$DEST/enron.pst

die() { echo "ERROR: $*" >&2; exit 1; }
matches() { echo "$PST_SHA256  $1" | sha256sum --check --quiet --strict >/dev/null 2>&1; }

if [ -f "$PST" ] && matches "$PST"; then
  echo "$PST"
  exit 0
fi

command -v npm >/dev/null || die "npm not found: it fetches the test PST (Debian: apt-get install npm)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "pst-extractor@$VERSION" >/dev/null) || die "npm pack pst-extractor@$VERSION failed"
tarball="$tmp/pst-extractor-$VERSION.tgz"
echo "$TARBALL_SHA256  $tarball" | sha256sum --check --quiet --strict \
  || die "pst-extractor-$VERSION.tgz does not match its pinned SHA-256"
tar -xzf "$tarball" -C "$tmp" package/example/testdata/enron.pst package/readme.md
matches "$tmp/package/example/testdata/enron.pst" || die "enron.pst does not match its pinned SHA-256"
mkdir -p "$DEST"
mv "$tmp/package/example/testdata/enron.pst" "$tmp/package/readme.md" "$DEST/"
echo "$PST"
