#!/usr/bin/env bash
# Installs what is missing and nothing else, so it is fast when nothing changed:
#   1. npm packages (npm ci when package-lock.json changed),
#   2. the Python venv (scripts/setup-python.sh, also `vision-trainer setup` of an installed
#      package), kept in a cache folder keyed by python/requirements.txt's hash, plus the
#      optional groups python/requirements-<group>.txt, each installed when it changed,
#   3. OpenCV, CMake and g++ for the export packages' C++ wrapper and Chromium for the
#      dashboard's browser test (apt, when root),
#   4. the TypeScript build (incremental).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*" >&2; }

# --- 1. npm -----------------------------------------------------------------------------
# onnxruntime-node's install script fetches CUDA providers from a feed we cannot reach; its
# CPU binaries ship inside the package.
export ONNXRUNTIME_NODE_INSTALL=skip
# Only the lock decides: editing a script in package.json must not reinstall everything.
lock_hash=$(sha256sum package-lock.json | cut -c1-16)
if [[ ! -f node_modules/.vision-trainer-stamp || "$(cat node_modules/.vision-trainer-stamp)" != "$lock_hash" ]]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.vision-trainer-stamp
fi

# --- 2. Python venv (the part an installed package runs too: `vision-trainer setup`) -------
bash scripts/setup-python.sh

# --- 3. System packages the tests use: OpenCV for the export packages' C++ wrapper, Chromium
# for the dev dashboard's browser test ---------------------------------------------------------
# The export tests build and run runtime/cpp against Debian's OpenCV; the dashboard test drives
# Debian's Chromium with playwright-core (no browser download). Installed only where apt is
# available and we are root (containers, CI); elsewhere those tests say what is missing.
if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
  missing=()
  for pkg in libopencv-dev cmake g++ pkg-config chromium; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if (( ${#missing[@]} )); then
    say "installing ${missing[*]} (C++ wrapper of export packages, dashboard browser test)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# --- 4. TypeScript build ----------------------------------------------------------------
npx tsc -p tsconfig.json
