"""The native baseline of bench/bridge.ts: the same ultralytics training vision-trainer runs,
called directly from Python with the same arguments, printing one JSON line per epoch end."""

import json
import sys
import time

t_process = time.time()

from ultralytics import YOLO  # noqa: E402
from ultralytics.utils import SETTINGS  # noqa: E402

SETTINGS.update({"sync": False})
data, project, epochs, batch, imgsz, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])


def emit(kind, **kw):
    print(json.dumps({"bench": kind, "t": time.time(), **kw}), flush=True)


model = YOLO("yolo11n.yaml", task="detect")
model.add_callback("on_train_epoch_start", lambda tr: emit("epoch_start", epoch=tr.epoch + 1) if tr.epoch == 0 else None)
model.add_callback("on_fit_epoch_end", lambda tr: emit("epoch_end", epoch=tr.epoch + 1))
model.train(
    data=data,
    epochs=epochs,
    batch=batch,
    imgsz=imgsz,
    workers=workers,
    project=project,
    name="train",
    exist_ok=True,
    plots=False,
    save_period=-1,
    val=True,
    verbose=False,
    device="cpu",
)
