#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, unit tests, the
# protocol vectors and the end-to-end suites over real HTTP. Installs what
# it needs beyond a Rust toolchain (1.85 or newer, with rustfmt and clippy).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "Rust is needed: install it with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

echo "== formatting"
cargo fmt --all --check

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== test tools"
# The real SMTP server (aiosmtpd) the email tests send to, and schemathesis.
COUNTERSIGN_TEST_PYTHON="$(scripts/ensure-python-tools.sh)"
export COUNTERSIGN_TEST_PYTHON
# PostgreSQL's server binaries: the storage contract and several-node tests start throwaway clusters (never skipped).
COUNTERSIGN_TEST_PG_BIN="$(scripts/ensure-postgres.sh)"; export COUNTERSIGN_TEST_PG_BIN

echo "== tests"
cargo test --workspace --locked
# The end-to-end suites again over PostgreSQL (its pages in Chromium are the same over either: once is enough).
COUNTERSIGN_TEST_BACKEND=postgres cargo test --locked -p countersign-tests --test e2e -- --skip browser_
# The benchmark's smoke run (never asserts a speed), repeated and with a
# sweep so that the medians and the extra fixed-rate runs are exercised too.
cargo run -q --locked -p countersign-bench -- --smoke --repeat 2 --sweep 0.25

# The running server against its OpenAPI document (schemathesis).
scripts/test-api-fuzz.sh

scripts/test-browser.sh

scripts/test-bindings.sh
