#!/usr/bin/env bash
# Builds the Python venv jobs run in, installing only what is missing: `npm run setup` in a clone
# and `npx vision-trainer setup` in an installed package both run this. It needs nothing but this
# folder's python/ (the package ships it) and a Python 3.10-3.13 with venv.
#   1. the core, python/requirements.txt (exact pins: the Python side's lock), in a cache folder
#      keyed by the file's hash: another checkout or package of the same requirements reuses it,
#      a changed core requirement builds a new one beside it;
#   2. optional groups python/requirements-<group>.txt on top, each when its own file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*" >&2; }

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
