"""The native baseline of bench/timm.ts: the timm training vision-trainer runs
(vision_trainer.timm.train, timm's train.py loop), called straight from Python with the same
params, its events answered in-process instead of through the bridge. Prints one JSON line per
epoch start/end on stdout.

    python bench/native_timm.py IMAGEFOLDER_ROOT CLASS_NAMES_JSON OUT_DIR EPOCHS BATCH IMGSZ WORKERS
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from vision_trainer.timm import train as timm_train

# vision_trainer.support sends sys.stdout to stderr (the job's logs own stdout): report on the real one.
out = sys.__stdout__
data, class_names, project = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
epochs, batch, imgsz, workers = (int(v) for v in sys.argv[4:8])


def emit(event: dict):
    if event["kind"] == "start":
        out.write(json.dumps({"bench": "epoch_start", "t": time.time()}) + "\n")
    elif event["kind"] == "epoch":
        out.write(json.dumps({"bench": "epoch_end", "t": time.time(), "epoch": event["epoch"]}) + "\n")
    out.flush()


result = json.loads(
    timm_train.train(
        {
            "model_name": "resnet18",
            "task_type": "image_classification",
            "data": data,
            "class_names": class_names,
            "epochs": epochs,
            "batch": batch,
            "imgsz": imgsz,
            "device": "cpu",
            "workers": workers,
            "project": project,
            "weights": None,
            "lr": None,
            "resume_from": None,
            "log_file": None,
            "primary_metric": "accuracy",
            "job_id": "bench-native",
            "config_overrides": None,
            "event_relay": None,
        },
        emit,
    )
)
if "ok" not in result:
    raise SystemExit(result["__error__"]["traceback"])
