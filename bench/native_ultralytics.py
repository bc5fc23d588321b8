"""The native side of bench/bridge.ts for ultralytics: the training vision-trainer runs, called
directly from Python with the same arguments (python/vision_trainer/ultralytics/train.py's),
reporting its resolved settings at the start and one line per epoch.

    python bench/native_ultralytics.py DATA_YAML PROJECT EPOCHS BATCH IMGSZ WORKERS [DEVICE]
"""

import sys

from native_common import emit, run_settings
from ultralytics import YOLO
from ultralytics.utils import SETTINGS

# As the job does (ultralytics/train.py's configure_offline): none of ultralytics' own loggers.
# MLflow is installed (the tracking group), so without this the native run alone logged every
# epoch to an SQLite store (bench/mlflow.db, bench/mlruns/): extra work on one side only.
INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "neptune", "raytune", "tensorboard", "wandb")
SETTINGS.update({"sync": False, **{name: False for name in INTEGRATIONS if name in SETTINGS}})
data, project, epochs, batch, imgsz, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
settings = run_settings()

model = YOLO("yolo11n.yaml", task="detect")
model.add_callback("on_train_start", lambda tr: emit("settings", settings=settings.ultralytics_settings(tr)))
model.add_callback("on_train_epoch_start", lambda tr: emit("epoch_start", epoch=tr.epoch + 1) if tr.epoch == 0 else None)
trained = []


def epoch_end(trainer):
    # ultralytics fires on_fit_epoch_end once more after the last epoch, for final_eval's
    # validation of best.pt: not an epoch, and no on_train_epoch_end before it. Counted as one,
    # its ~0.5 s made the native epochs look faster (the job does not report it either).
    if trained:
        trained.clear()
        emit("epoch_end", epoch=trainer.epoch + 1)


model.add_callback("on_train_epoch_end", lambda tr: trained.append(tr.epoch))
model.add_callback("on_fit_epoch_end", epoch_end)
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
    device=sys.argv[7] if len(sys.argv) > 7 else "cpu",
)
