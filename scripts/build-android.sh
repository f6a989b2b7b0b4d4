#!/usr/bin/env bash
# Builds the Android libraries: libcountersign_ffi.so for each ABI with
# cargo-ndk into bindings/android/src/main/jniLibs/<abi>/, and the Kotlin
# bindings (Android flavour, bindings/countersign-ffi/uniffi-android.toml)
# into bindings/android/src/main/kotlin/. Both are build output, not
# committed. The app adds them to its module and depends on
# net.java.dev.jna:jna (the @aar artifact) 5.13 or newer.
#
#   scripts/build-android.sh [PROFILE]     (default: release-size)
#
# Needs: the Android NDK (ANDROID_NDK_HOME, or ANDROID_HOME with an ndk/),
# cargo-ndk (cargo install cargo-ndk), and the Rust targets
# aarch64-linux-android, armv7-linux-androideabi, x86_64-linux-android.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=build-env.sh
source scripts/build-env.sh

profile="${1:-release-size}"
out=bindings/android/src/main

fail() {
  echo "build-android: $*" >&2
  exit 1
}

if [[ -z "${ANDROID_NDK_HOME:-}" && -n "${ANDROID_HOME:-}" && -d "$ANDROID_HOME/ndk" ]]; then
  ANDROID_NDK_HOME="$(find "$ANDROID_HOME/ndk" -mindepth 1 -maxdepth 1 -type d | sort -V | tail -1)"
  export ANDROID_NDK_HOME
fi
[[ -n "${ANDROID_NDK_HOME:-}" && -d "${ANDROID_NDK_HOME:-}" ]] ||
  fail "the Android NDK is needed: install it (Android Studio > SDK Manager > NDK) and set ANDROID_NDK_HOME"
cargo ndk --version >/dev/null 2>&1 || fail "cargo-ndk is needed: cargo install cargo-ndk"
targets=(aarch64-linux-android armv7-linux-androideabi x86_64-linux-android)
if command -v rustup >/dev/null 2>&1; then
  rustup target add "${targets[@]}" >/dev/null
fi

# Only the Android targets get these flags, so no other build is rebuilt.
# Packed relocations need API 23 or newer on the device.
android_flags="${mobile_link_args[*]} -C link-arg=-Wl,--pack-dyn-relocs=android"
export CARGO_TARGET_AARCH64_LINUX_ANDROID_RUSTFLAGS="$android_flags"
export CARGO_TARGET_ARMV7_LINUX_ANDROIDEABI_RUSTFLAGS="$android_flags"
export CARGO_TARGET_X86_64_LINUX_ANDROID_RUSTFLAGS="$android_flags"

rm -rf "$out/jniLibs" "$out/kotlin"
cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 -o "$out/jniLibs" \
  build --locked --profile "$profile" -p countersign-ffi

# The Kotlin comes from the host's debug library: uniffi reads metadata that
# stripping removes, and the API is the same on every target. (Built with
# the usual SQLite flags, so the tests' debug build is not rebuilt.)
env -u LIBSQLITE3_FLAGS cargo build --locked -p countersign-ffi
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
case "$(uname -s)" in
  Darwin) host_library="$target_dir/debug/libcountersign_ffi.dylib" ;;
  *) host_library="$target_dir/debug/libcountersign_ffi.so" ;;
esac
cargo run --locked --quiet -p uniffi-bindgen -- generate --no-format --language kotlin \
  --config bindings/countersign-ffi/uniffi-android.toml --out-dir "$out/kotlin" "$host_library"

echo "Android libraries in $out/jniLibs, Kotlin bindings in $out/kotlin"
