#!/usr/bin/env bash
# Compiles the deployment wrappers that the export tests cannot run on Linux: Kotlin (TFLite on
# Android) and Swift (CoreML on iOS/macOS). The Python, Node and C++ wrappers are built and run
# by test/integration/export-*.test.ts; these two are not, because their platforms are absent.
#
#   bash scripts/check-wrappers.sh [PACKAGE_DIR]
#
# PACKAGE_DIR: an extracted export package (its runtimes/kotlin, runtimes/swift); by default the
# sources every package copies them from (runtime/kotlin, runtime/swift).
#
# Kotlin: kotlinc (Debian: apt-get install kotlin libandroid-json-java) compiles ModelWrapper.kt
#   and Example.kt against Android's org.json (the real one, from libandroid-json-java) and the
#   signature stubs in scripts/wrapper-stubs/ for android.graphics, android.util.Log and
#   TensorFlow Lite's Interpreter (no Android SDK or Maven here). It proves the code type-checks
#   against those APIs; it does not run it.
# Swift: the package imports CoreML, which exists only on Apple platforms: `swift build` on
#   macOS with Xcode. Elsewhere it is reported as not compiled.
#
# Exit: 0 every wrapper compiled; 1 a wrapper failed to compile; 2 a toolchain is missing (said
# which, with how to get it). Each wrapper's outcome is printed as COMPILED / FAILED / NOT COMPILED.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pkg="${1:-}"
if [[ -n "$pkg" ]]; then
  kotlin_dir="$pkg/runtimes/kotlin"
  swift_dir="$pkg/runtimes/swift"
else
  kotlin_dir="$root/runtime/kotlin"
  swift_dir="$root/runtime/swift"
fi
work="$(mktemp -d -t vt-check-wrappers-XXXXXX)"
trap 'rm -rf "$work"' EXIT
status=0
missing() { echo "NOT COMPILED: $1"; ((status == 0)) && status=2; }

# --- Kotlin -------------------------------------------------------------------------------
json_jar=/usr/share/java/com.android.json.jar
if [[ ! -d "$kotlin_dir" ]]; then
  echo "kotlin: $kotlin_dir does not exist (only TFLite packages ship runtimes/kotlin)"
elif ! command -v kotlinc >/dev/null || ! command -v javac >/dev/null || [[ ! -f "$json_jar" ]]; then
  missing "kotlin: needs kotlinc, javac and $json_jar (Debian: apt-get install kotlin openjdk-17-jdk-headless libandroid-json-java)"
else
  find "$root/scripts/wrapper-stubs" -name '*.java' > "$work/stubs.txt"
  if ! javac -d "$work/stubs" @"$work/stubs.txt"; then
    echo "FAILED: kotlin (the API stubs in scripts/wrapper-stubs did not compile)"
    status=1
  else
    # kotlinc prints a JVM warning about -Xverify on every run; keep everything else.
    if kotlinc -jvm-target 1.8 -cp "$work/stubs:$json_jar" -d "$work/kotlin" \
      "$kotlin_dir/ModelWrapper.kt" "$kotlin_dir/Example.kt" 2> >(grep -v Xverify >&2); then
      echo "COMPILED: kotlin ($kotlin_dir: ModelWrapper.kt, Example.kt -> $(find "$work/kotlin" -name '*.class' | wc -l) classes)"
    else
      echo "FAILED: kotlin ($kotlin_dir)"
      status=1
    fi
  fi
fi

# --- Swift --------------------------------------------------------------------------------
if [[ ! -d "$swift_dir" ]]; then
  echo "swift: $swift_dir does not exist (only CoreML packages ship runtimes/swift)"
elif [[ "$(uname -s)" != Darwin ]]; then
  missing "swift: the wrapper imports CoreML, which only Apple platforms have; run this script on macOS with Xcode"
elif ! command -v swift >/dev/null; then
  missing "swift: needs the Swift toolchain (Xcode or the Command Line Tools)"
else
  cp -R "$swift_dir" "$work/swift"
  if (cd "$work/swift" && swift build); then
    echo "COMPILED: swift ($swift_dir: ModelWrapper library and Example)"
  else
    echo "FAILED: swift ($swift_dir)"
    status=1
  fi
fi
exit "$status"
