#!/usr/bin/env bash
# Runs the project's Python with the given arguments: PYTHON_BIN when set, else the venv that
# scripts/setup.sh built (the same cache key as src/paths.ts). `npm run lint` and `npm test`
# call ruff and pytest through it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${PYTHON_BIN:-}" ]]; then
  python=$PYTHON_BIN
else
  cache_root="${VISION_TRAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vision-trainer}"
  python="$cache_root/venv-$(sha256sum python/requirements.txt | cut -c1-12)/bin/python"
fi
if [[ ! -x "$python" ]]; then
  echo "No Python venv at $python: run \`npm run setup\` (or set PYTHON_BIN)." >&2
  exit 1
fi
exec "$python" "$@"
