#!/usr/bin/env bash
# Installs what is missing and nothing else, so it is fast when nothing changed:
#   1. npm packages (npm ci when package-lock.json changed),
#   2. the Python venv, kept in a cache folder keyed by python/requirements.txt's hash
#      (a fresh clone reuses it; a changed core requirement builds a new one beside it), plus
#      the optional groups python/requirements-<group>.txt, each installed when it changed,
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

# --- 2. Python venv -------------------------------------------------------------------
# The core (python/requirements.txt, torch included: gigabytes) keys the venv's folder. Groups
# (python/requirements-<group>.txt) are installed on top, each when its own hash changed, so
# adding a test tool does not rebuild torch. VISION_TRAINER_GROUPS picks groups ("dev export",
# "none"); the default is every group file. A group removed from a file stays installed until
# the core changes (harmless: nothing imports it any more).
cache_root="${VISION_TRAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vision-trainer}"
req_hash=$(sha256sum python/requirements.txt | cut -c1-12)
venv="$cache_root/venv-$req_hash"
if [[ -n "${PYTHON_BIN:-}" ]]; then
  say "PYTHON_BIN is set ($PYTHON_BIN): not building a venv"
else
  if [[ ! -f "$venv/.complete" ]]; then
    python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
      say "need Python 3.10-3.13 for torch 2.14.1 (set PYTHON=/path/to/python3.11); found: $("$python" --version 2>&1 || echo none)"
      exit 1
    fi
    say "building Python venv $venv (torch, ultralytics, timm, transformers: several minutes the first time)"
    rm -rf "$venv"
    mkdir -p "$cache_root"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r python/requirements.txt
    # The marker is written last: an interrupted install is rebuilt next time, never half-used.
    touch "$venv/.complete"
  fi
  groups=${VISION_TRAINER_GROUPS:-$(for f in python/requirements-*.txt; do [[ -e $f ]] && basename "$f" .txt | sed 's/^requirements-//'; done)}
  for group in ${groups//,/ }; do
    [[ "$group" == none ]] && continue
    file="python/requirements-$group.txt"
    [[ -f "$file" ]] || { say "no such requirements group: $file"; exit 1; }
    group_hash=$(sha256sum "$file" | cut -c1-12)
    marker="$venv/.group-$group"
    if [[ ! -f "$marker" || "$(cat "$marker")" != "$group_hash" ]]; then
      say "installing Python group '$group' ($file)"
      # The core file as constraints: a group can add packages but never move a core pin.
      "$venv/bin/python" -m pip install --quiet -r "$file" -c python/requirements.txt
      echo "$group_hash" > "$marker"
    fi
  done
fi

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
