#!/usr/bin/env bash
# Makes PostgreSQL's server binaries available to the tests, which start
# throwaway clusters of their own (initdb + pg_ctl on a free port in a
# temporary directory; see server/tests/support/postgres.rs). Installs the
# Debian package when they are missing. Safe to run again. Prints the
# directory holding initdb and pg_ctl, which the tests read from
# $COUNTERSIGN_TEST_PG_BIN. Fails, loudly, when it cannot: the PostgreSQL
# tests are never skipped.
set -euo pipefail

# Debian and Ubuntu keep the server binaries out of PATH, one directory per
# major version; the newest wins.
find_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return 0
  fi
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

if ! bin="$(find_bin)"; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing postgresql with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin="$(find_bin)" || { echo "postgresql was installed but initdb is still missing" >&2; exit 1; }
  else
    echo "PostgreSQL's server binaries (initdb, pg_ctl) are needed: on Debian or Ubuntu run" >&2
    echo "  sudo apt-get install -y postgresql" >&2
    exit 1
  fi
fi

# initdb refuses to run as root: as root the tests run the cluster as the
# `postgres` user, which the Debian package creates.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "running as root, the tests start PostgreSQL as the 'postgres' user, which does not exist" >&2
  exit 1
fi

echo "$bin"
