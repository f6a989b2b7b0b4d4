#!/usr/bin/env bash
# Builds the iOS XCFramework (device and simulator static libraries with the
# C header and module map) at bindings/swift/CountersignFFI.xcframework and
# the generated Swift at bindings/swift/Sources/Countersign/Countersign.swift,
# completing the Swift package in bindings/swift (Package.swift declares the
# XCFramework as a binaryTarget). Both are build output, not committed.
#
#   scripts/build-ios.sh [PROFILE]     (default: release-size)
#
# Needs: macOS with Xcode (xcodebuild, lipo) and the Rust targets
# aarch64-apple-ios, aarch64-apple-ios-sim, x86_64-apple-ios.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=build-env.sh
source scripts/build-env.sh

profile="${1:-release-size}"
package=bindings/swift

fail() {
  echo "build-ios: $*" >&2
  exit 1
}

[[ "$(uname -s)" == Darwin ]] || fail "an iOS build needs macOS with Xcode"
command -v xcodebuild >/dev/null 2>&1 || fail "Xcode is needed (xcode-select --install is not enough)"
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
if command -v rustup >/dev/null 2>&1; then
  rustup target add "${targets[@]}" >/dev/null
fi

for target in "${targets[@]}"; do
  cargo build --locked --profile "$profile" --target "$target" -p countersign-ffi
done
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
lib() { echo "$target_dir/$1/$profile/libcountersign_ffi.a"; }

work="$target_dir/ios-package"
rm -rf "$work"
mkdir -p "$work/headers" "$work/simulator"
# Static libraries keep uniffi's metadata, so the Swift is generated from one.
cargo run --locked --quiet -p uniffi-bindgen -- generate --no-format --language swift \
  --out-dir "$work/generated" "$(lib aarch64-apple-ios)"
cp "$work/generated/CountersignFFI.h" "$work/headers/"
cp "$work/generated/CountersignFFI.modulemap" "$work/headers/module.modulemap"
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" \
  -output "$work/simulator/libcountersign_ffi.a"

rm -rf "$package/CountersignFFI.xcframework"
xcodebuild -create-xcframework \
  -library "$(lib aarch64-apple-ios)" -headers "$work/headers" \
  -library "$work/simulator/libcountersign_ffi.a" -headers "$work/headers" \
  -output "$package/CountersignFFI.xcframework"
cp "$work/generated/Countersign.swift" "$package/Sources/Countersign/Countersign.swift"

echo "Swift package ready in $package (add it to Xcode as a local package)"
