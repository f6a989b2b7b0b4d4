#!/usr/bin/env bash
# Prints the size of the mobile library as it ships: countersign-ffi as a
# cdylib for x86_64 Linux (a proxy for the Android and iOS builds), built
# with the `release-size` profile (opt-level z, LTO, one codegen unit,
# unwinding kept so uniffi can catch panics), the bundled SQLite trimmed
# and identical code folded (scripts/build-env.sh), then stripped.
#
#   scripts/build-size.sh      exits 1 when the stripped library is over
#                              the 3 MB budget (3,000,000 bytes), or when
#                              core's client tests fail on the trimmed SQLite
#
# Needs a Rust toolchain and binutils' `strip`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=build-env.sh
source scripts/build-env.sh

budget=3000000
if ! command -v strip >/dev/null 2>&1; then
  echo "build-size: binutils' strip is needed (apt-get install binutils)" >&2
  exit 1
fi
# Relocations packed as Android does since API 23 (--pack-dyn-relocs in
# build-android.sh); RELR is the Linux form (glibc 2.36).
cargo rustc --locked --profile release-size -p countersign-ffi --lib --crate-type cdylib -- \
  "${mobile_link_args[@]}" -C link-arg=-Wl,-z,pack-relative-relocs
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
built="$target_dir/release-size/libcountersign_ffi.so"
stripped="$target_dir/release-size/libcountersign_ffi.stripped.so"
strip --strip-all -o "$stripped" "$built"
size=$(stat -c %s "$stripped")
awk -v size="$size" -v budget="$budget" 'BEGIN {
  printf "libcountersign_ffi.so (x86_64 Linux, release-size, stripped): %d bytes (%.2f MB; budget %.2f MB)\n",
    size, size / 1e6, budget / 1e6 }'
# The trimmed SQLite must still serve the device database: core's client
# tests, built the same way.
cargo test --locked --quiet --profile release-size -p countersign-core --lib client:: >/dev/null
echo "core's client tests pass on the trimmed SQLite"
if ((size > budget)); then
  echo "build-size: over budget" >&2
  exit 1
fi
