#!/usr/bin/env bash
# The PST and OST files of the import tests, as shipped in the npm package pst-extractor
# (MIT) under example/testdata/: enron.pst, a mailbox of the EDRM Enron e-mail data set
# (CC BY 3.0 US, produced as PST by ZL Technologies), and an Outlook.com account's OST.
# 14 and 16 MB, so fetched here with npm, not kept in git: a pinned version, its tarball
# and the files checked against pinned SHA-256 sums; when the files are there and
# match, nothing is fetched. Prints the directory they are in.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=1.12.0
TARBALL_SHA256=c4c9eb9e75d09171452a4706df7d0e0e49606c1ca04aa81f30417dd385ad0e30
PST_SHA256=6152489de3472be6f1f840935d34b6dbf5f62b025dd015929ea9cf66eb5a5b46
DEST=var/test-data/pst-extractor-$VERSION
OST_SHA256=daacd8d441428634e103b7c1e37fe1e5909256cc917551667049b5e84dfcf5f0
FILES=(enron.pst pstextractortest@outlook.com.ost)

die() { echo "ERROR: $*" >&2; exit 1; }
matches() {  # $1: the directory the files are in
  printf '%s  %s\n' "$PST_SHA256" "$1/enron.pst" "$OST_SHA256" "$1/pstextractortest@outlook.com.ost" \
    | sha256sum --check --quiet --strict >/dev/null 2>&1
}

if matches "$DEST"; then
  echo "$DEST"
  exit 0
fi

command -v npm >/dev/null || die "npm not found: it fetches the test PST (Debian: apt-get install npm)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "pst-extractor@$VERSION" >/dev/null) || die "npm pack pst-extractor@$VERSION failed"
tarball="$tmp/pst-extractor-$VERSION.tgz"
echo "$TARBALL_SHA256  $tarball" | sha256sum --check --quiet --strict \
  || die "pst-extractor-$VERSION.tgz does not match its pinned SHA-256"
tar -xzf "$tarball" -C "$tmp" "${FILES[@]/#/package/example/testdata/}" package/readme.md
matches "$tmp/package/example/testdata" || die "the test files do not match their pinned SHA-256"
mkdir -p "$DEST"
for name in "${FILES[@]}"; do mv "$tmp/package/example/testdata/$name" "$DEST/"; done
mv "$tmp/package/readme.md" "$DEST/"
echo "$DEST"
