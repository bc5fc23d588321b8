"""What the native sides of the training benches share: their report lines on the real stdout,
and vision_trainer/common/run_settings.py loaded by itself, so that the native run reports its
resolved settings exactly as a vision-trainer job does without importing the package (whose
import sizes thread pools and guards torch.load: set-up that running a framework by hand lacks).

Lines: {"bench": "settings", "settings": {...}}, {"bench": "epoch_start" | "epoch_end", "t": unix seconds}.
"""

import importlib.util
import json
import sys
import time
from pathlib import Path

_OUT = sys.__stdout__


def emit(kind: str, **fields) -> None:
    _OUT.write(json.dumps({"bench": kind, "t": time.time(), **fields}) + "\n")
    _OUT.flush()


def run_settings():
    path = Path(__file__).resolve().parents[1] / "python" / "vision_trainer" / "common" / "run_settings.py"
    spec = importlib.util.spec_from_file_location("bench_run_settings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
