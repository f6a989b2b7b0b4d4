#!/usr/bin/env bash
# Makes <repo>/.tools/venv hold the Python tools the tests drive: aiosmtpd,
# the real SMTP server the email-delivery tests send to, and schemathesis,
# which fuzzes the running server against its OpenAPI document
# (scripts/test-api-fuzz.sh). Safe to run again:
# it only creates or installs what is missing. Prints the venv's python,
# which the tests find there (or at $COUNTERSIGN_TEST_PYTHON).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.tools/venv"
python="$venv/bin/python"
aiosmtpd_version="1.4.6"
schemathesis_version="4.32.5"

# A fresh Debian has python3 but not always its venv module (python3-venv).
install_debian_python() {
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing python3 and python3-venv with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  else
    echo "python3 with its venv module is needed: on Debian or Ubuntu run" >&2
    echo "  sudo apt-get install -y python3 python3-venv" >&2
    exit 1
  fi
}

if ! "$python" -c 'import sys' >/dev/null 2>&1; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    install_debian_python
  fi
  # --clear: a venv left half-made by an earlier failure is rebuilt whole.
  python3 -m venv --clear "$venv"
fi

# Installs NAME==VERSION unless that version is already there.
ensure() {
  local installed
  installed="$("$python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true)"
  if [ "$installed" != "$2" ]; then
    "$python" -m pip install --quiet --disable-pip-version-check "$1==$2" >&2
  fi
}
ensure aiosmtpd "$aiosmtpd_version"
ensure schemathesis "$schemathesis_version"

echo "$python"
