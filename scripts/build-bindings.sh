#!/usr/bin/env bash
# Generates the Kotlin and Swift bindings (and the C header and modulemap
# Swift needs) from the countersign-ffi library, with the uniffi-bindgen
# built from this workspace, so generator and library are the same version.
#
#   scripts/build-bindings.sh [OUT_DIR]        (default: target/bindings)
#
# Needs a Rust toolchain and python3. Output: OUT_DIR/kotlin/io/countersign/countersign.kt,
# OUT_DIR/swift/{Countersign.swift,CountersignFFI.h,CountersignFFI.modulemap}.
# Generated code is never committed; run this instead.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-target/bindings}"
# Generated from the unstripped debug library: stripping removes the
# metadata uniffi reads. The API is the same in every profile.
cargo build --locked -p countersign-ffi
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
case "$(uname -s)" in
  Darwin) library="$target_dir/debug/libcountersign_ffi.dylib" ;;
  *) library="$target_dir/debug/libcountersign_ffi.so" ;;
esac
if [[ ! -f "$library" ]]; then
  echo "build-bindings: $library was not built" >&2
  exit 1
fi
rm -rf "$out/kotlin" "$out/swift"
for language in kotlin swift; do
  cargo run --locked --quiet -p uniffi-bindgen -- generate --no-format \
    --language "$language" --out-dir "$out/$language" "$library"
done
echo "bindings generated in $out/kotlin and $out/swift"
