#!/usr/bin/env bash
# The challenge window in real Chromium: installs Debian's Chromium and
# playwright-core (pinned in tests/browser/package.json) when missing, then
# runs the window suite, which starts the real server and drives
# tests/browser/run.mjs. Screenshots: target/browser-screenshots/.
# Never `npx playwright install`: it downloads browsers from elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq nodejs npm
fi
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq chromium
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm install --no-audit --no-fund --loglevel=error)
fi

rm -rf target/browser-screenshots
echo "== browser tests (Chromium)"
CHROMIUM="$CHROMIUM" COUNTERSIGN_BROWSER_TESTS=require \
  cargo test -p countersign-tests --test e2e window:: -- --test-threads=2
echo "screenshots: target/browser-screenshots/"
