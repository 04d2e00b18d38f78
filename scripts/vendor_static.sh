#!/usr/bin/env bash
# Vendored browser code for static/vendor/, from the npm registry: Mozilla's PDF.js
# (the View tab's PDF renderer, scripting off). A pinned version, its tarball and
# every installed file checked against pinned SHA-256 sums; when the installed
# files already match, nothing is fetched. Not in git: `make run` and `make test`
# install it through scripts/common.sh. Only the display library, its worker and
# the licence are installed — never pdf.js's scripting sandbox bundle.
set -euo pipefail
cd "$(dirname "$0")/.."

PDFJS_VERSION=6.5.438
PDFJS_TARBALL_SHA256=7461aefcd27c4ef0dd76f9ca5760f09466eb6b3f934432670c12132e7b3d6faa
DEST=static/vendor/pdfjs

installed_sums() {  # sha256sum -c input for the files as installed in $DEST
  cat <<SUMS
3a88402882cfa3e7e72c2c9b5149f52f0f88baf1c5b62aa11a41abdbc2072440  pdf.min.mjs
1e64c8240e54735ec5913b37acd5134747799cb8c6bb3777c70adbc01232d2aa  pdf.worker.min.mjs
0d542e0c8804e39aa7f37eb00da5a762149dc682d7829451287e11b938e94594  LICENSE
SUMS
}

die() { echo "ERROR: $*" >&2; exit 1; }

if [ -d "$DEST" ] && (cd "$DEST" && installed_sums | sha256sum --check --quiet --strict >/dev/null 2>&1); then
  exit 0
fi

command -v npm >/dev/null || die "npm not found: it fetches PDF.js (Debian: apt-get install npm)"
echo "==> installing PDF.js $PDFJS_VERSION into $DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "pdfjs-dist@$PDFJS_VERSION" >/dev/null) || die "npm pack pdfjs-dist@$PDFJS_VERSION failed"
tarball="$tmp/pdfjs-dist-$PDFJS_VERSION.tgz"
echo "$PDFJS_TARBALL_SHA256  $tarball" | sha256sum --check --quiet --strict \
  || die "pdfjs-dist-$PDFJS_VERSION.tgz does not match its pinned SHA-256: not installed"
tar -xzf "$tarball" -C "$tmp" package/build/pdf.min.mjs package/build/pdf.worker.min.mjs package/LICENSE
mkdir -p "$tmp/out"
cp "$tmp/package/build/pdf.min.mjs" "$tmp/package/build/pdf.worker.min.mjs" "$tmp/package/LICENSE" "$tmp/out/"
(cd "$tmp/out" && installed_sums | sha256sum --check --quiet --strict) || die "PDF.js files do not match their pinned SHA-256"
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$tmp/out" "$DEST"
chmod 755 "$DEST"
