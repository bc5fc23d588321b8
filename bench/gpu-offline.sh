#!/usr/bin/env bash
# bench/gpu.sh on a CUDA machine with no npm, no package registry and no network, from what
# bench/gpu-bundle.sh packed into BUNDLE (default .gpu): unpacks dist/ and node_modules into the
# checkout and Node into the bundle, installs the wheels (and the polars stand-in, where polars is
# missing) into a scratch folder on PYTHONPATH, runs jobs with the machine's python3 (PYTHON_BIN),
# then `bash bench/gpu.sh "$@"` (--smoke: the tiny chain on the GPU first). The machine's own
# torch/timm/transformers are used as they are: gpu.sh prints their versions with the results.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${BUNDLE:-.gpu}
site=${GPU_SITE:-/tmp/vision-trainer-site}
if [[ ! -x "$bundle/bin/node" ]]; then
  tar xJf "$bundle/bundle.tar.xz"
  mkdir -p "$bundle/bin" && xz -dc "$bundle/node.xz" >"$bundle/bin/node" && chmod +x "$bundle/bin/node"
fi
python=${PYTHON_BIN:-$(command -v python3)}
if [[ ! -d "$site" ]]; then
  mkdir -p "$site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$bundle"/wheels/*.whl
  "$python" -c 'import polars' 2>/dev/null || cp -r "$bundle/shim/polars" "$site/"
  # Jobs run Python with PYTHONDONTWRITEBYTECODE: without .pyc files here every process compiled
  # ultralytics and our package again.
  "$python" -m compileall -q -j 0 "$site" python >/dev/null
fi
export PATH="$PWD/$bundle/bin:$PATH" PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHON_BIN="$python" BENCH_SKIP_BUILD=1
exec bash bench/gpu.sh "$@"
