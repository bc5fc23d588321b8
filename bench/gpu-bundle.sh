#!/usr/bin/env bash
# Packs what bench/gpu.sh needs for a CUDA machine that has a Python with torch but no npm, no
# package registry and no network (an air-gapped GPU node, a lent accelerator), into OUT_DIR
# (default .gpu, which git ignores):
#   node.xz          this machine's Node binary (x86-64 Linux, glibc)
#   bundle.tar.xz    dist/ and the production node_modules, native parts for linux-x64 only
#   wheels/          ultralytics and the packages it needs that GPU images rarely hold (pinned
#                    versions from python/requirements.txt and the venv), for PYTHON_VERSION
#   shim/polars      ultralytics reads its results.csv through polars, whose wheel (54 MB) is more
#                    than a small transfer allows: a pandas-backed stand-in for the three calls it
#                    makes (read_csv().to_dict(), DataFrame(rows, schema)); installed only where
#                    polars is missing
# Then on the GPU machine, from the checkout: `bash bench/gpu-offline.sh [--smoke]`.
# Needs `npm run setup` done here and pip that reaches PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu}
python_version=${PYTHON_VERSION:-3.12}
npm run build >/dev/null
rm -rf "$out" && mkdir -p "$out/wheels" "$out/shim/polars"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

{ npm ls --omit=dev --all --parseable 2>/dev/null || true; } | sed "s|^$PWD/||" | grep '^node_modules/' >"$stage/packages"
tar cf - --exclude='*.map' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.d.cts' -T "$stage/packages" dist | tar xf - -C "$stage"
# onnxruntime-node ships every platform's library (288 MB); this bundle runs on linux-x64
find "$stage"/node_modules/onnxruntime-node/bin/napi-v*/ -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} +
find "$stage"/node_modules/onnxruntime-node/bin/napi-v*/linux/ -mindepth 1 -maxdepth 1 ! -name x64 -exec rm -rf {} +
tar cf - -C "$stage" node_modules dist | xz -T0 -6 >"$out/bundle.tar.xz"
xz -T0 -6 <"$(command -v node)" >"$out/node.xz"

venv_python="$(bash scripts/py.sh -c 'import sys; print(sys.executable)')"
version() { "$venv_python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
pinned() { grep -E "^$1==" python/requirements.txt | cut -d= -f3; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$out/wheels" \
  "ultralytics==$(pinned ultralytics)" "ultralytics-thop==$(version ultralytics-thop)" \
  "ultralytics-platform==$(version ultralytics-platform)" "onnxslim==$(pinned onnxslim)"

cat >"$out/shim/polars/__init__.py" <<'PY'
"""A pandas-backed stand-in for the few polars calls ultralytics makes (see bench/gpu-bundle.sh)."""

import io

import pandas as pd


class DataFrame(pd.DataFrame):
    def __init__(self, data=None, schema=None, **kwargs):
        super().__init__(data, columns=schema, **kwargs) if schema is not None else super().__init__(data, **kwargs)

    def to_dict(self, *args, as_series=True, **kwargs):
        if args or kwargs:
            return pd.DataFrame.to_dict(self, *args, **kwargs)
        return {column: self[column].tolist() for column in self.columns}


def read_csv(source, infer_schema_length=None, **kwargs):
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    return DataFrame(pd.read_csv(source, **kwargs))
PY
du -sh "$out"/* | sed 's/^/bundle: /'
