#!/usr/bin/env bash
# Tests of the mobile bindings (called by scripts/test.sh):
#   - Kotlin on the JVM: the real debug cdylib through the generated Kotlin
#     and JNA, against a real `countersign serve` the tests start
#     (bindings/kotlin-tests/src);
#   - Swift: the generated Swift and every hand-written .swift file under
#     bindings/ pass a tree-sitter-swift syntax check; the generated C
#     header compiles with gcc -fsyntax-only.
#
# Installs what it needs when missing: Debian's libjna-java and junit5 (and
# a JRE, gcc, npm, python3-venv) with apt-get; the Kotlin compiler from npm
# and tree-sitter from PyPI into .tools/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."

tools=.tools
java_lib=/usr/share/java
kotlin_home="$tools/kotlin/node_modules/kotlin-compiler"
swift_venv="$tools/swift-syntax"

echo "== bindings: tools"
missing=()
[[ -f $java_lib/jna.jar ]] || missing+=(libjna-java)
[[ -f $java_lib/junit-platform-console-standalone.jar ]] || missing+=(junit5)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v npm >/dev/null 2>&1 || missing+=(npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv)
if ((${#missing[@]})); then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo=sudo; fi
  echo "installing ${missing[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [[ ! -x $kotlin_home/bin/kotlinc ]]; then
  echo "installing the Kotlin compiler from npm"
  mkdir -p "$tools/kotlin"
  (cd "$tools/kotlin" && npm install --silent --no-audit --no-fund kotlin-compiler@2.4.20)
fi
if ! "$swift_venv/bin/python" -c 'import tree_sitter, tree_sitter_swift' 2>/dev/null; then
  echo "installing tree-sitter-swift from PyPI"
  python3 -m venv --clear "$swift_venv"
  "$swift_venv/bin/pip" install --quiet tree-sitter==0.26.1 tree-sitter-swift==0.7.4
fi

echo "== bindings: build and generate"
cargo build --locked -p countersign-ffi -p countersign-server
scripts/build-bindings.sh target/bindings >/dev/null
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
generated=target/bindings

echo "== bindings: Swift syntax, C header"
mapfile -t swift_files < <(find bindings -name '*.swift' -not -path '*/.build/*' | sort)
"$swift_venv/bin/python" bindings/tools/check_swift_syntax.py "$generated/swift/Countersign.swift" "${swift_files[@]}"
# The check must be able to fail: a broken file has to be flagged.
printf 'public func broken( {\n    let x =\n}\n' >"$generated/broken.swift"
"$swift_venv/bin/python" bindings/tools/check_swift_syntax.py --expect-error "$generated/broken.swift"
printf '#include "CountersignFFI.h"\n' |
  gcc -std=c11 -D_Nonnull= -D_Nullable= -Wall -Werror -fsyntax-only -I "$generated/swift" -x c -
echo "Swift: ${#swift_files[@]} hand-written file(s) and the generated bindings parse; the C header compiles"

echo "== bindings: Kotlin on the JVM"
classes="$target_dir/kotlin-tests/classes"
rm -rf "$classes"
# One kotlinc call (it has no daemon here: each start costs seconds).
"$kotlin_home/bin/kotlinc" -Werror -d "$classes" \
  -cp "$java_lib/jna.jar:$java_lib/junit-jupiter-api.jar:$java_lib/apiguardian-api.jar:$java_lib/opentest4j.jar:$kotlin_home/lib/kotlin-test.jar" \
  "$generated/kotlin/io/countersign/countersign.kt" bindings/kotlin-tests/src/*.kt
report="$target_dir/kotlin-tests/junit.txt"
java \
  -Djna.library.path="$target_dir/debug" \
  -Dcountersign.server="$target_dir/debug/countersign" \
  -Dcountersign.vectors="$PWD/test-vectors" \
  -jar "$java_lib/junit-platform-console-standalone.jar" \
  --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests \
  --class-path "$classes:$java_lib/jna.jar:$kotlin_home/lib/kotlin-stdlib.jar:$kotlin_home/lib/kotlin-test.jar:$kotlin_home/lib/kotlin-test-junit5.jar" \
  --select-package io.countersign.tests | tee "$report"
passed=$(sed -n 's/^\[ *\([0-9]*\) tests successful.*/\1/p' "$report")
failed=$(sed -n 's/^\[ *\([0-9]*\) tests failed.*/\1/p' "$report")
echo "bindings: ${passed:-0} passed, ${failed:-0} failed"
