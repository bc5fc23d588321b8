"""Training with ultralytics, driven from TypeScript.

`train(params, emit)` builds the model and registers ultralytics callbacks that report through
the shared trainer events (common/trainer_events.py), calling `emit(event)` (a JS function) from the
trainer's main thread. When `emit` answers "stop", training stops at the end of the current
batch; ultralytics then validates, saves last.pt and fires on_model_save, so a stopped run still
leaves a checkpoint.

On several processes (common/distributed.py) each worker runs ultralytics' own DDP training loop
(DDP model, distributed sampler, validation gathered on rank 0, checkpoints by rank 0, the stop
broadcast at epoch ends). Only the launch is ours: ultralytics' launcher runs torch.distributed.run
on one machine with a port of its own and a world size of that machine's GPUs, and trains on GPUs
only; `_joined_trainer` lets its trainer join our rendezvous instead, across machines and on
CPUs (gloo). BATCH_SIZE is the global batch, as in ultralytics (each rank takes BATCH_SIZE /
processes).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..common import distributed
from ..common.class_ids import ULTRALYTICS_ATTRIBUTE, ClassIds
from ..common.infer_metrics import MATCH_IOU_THRESHOLD, image_metrics, match_objects
from ..common.run_settings import ultralytics_settings
from ..common.trainer_events import TrainerEvents
from ..common.validation_images import REPORT_CONFIDENCE, ClassifierValidation, ValidationImages, model_size_mb
from ..common.yolo_metrics import TASK_BY_PLATFORM, classification_details, detection_details, macro, standard_metrics
from ..cpu_budget import data_loader_workers
from ..protocol import MarkBestAnswer, MarkBestParams, ModelCheck, ModelCheckParams, TrainAnswer, TrainParams
from ..safe_load import UnsafeArtifactError
from ..support import entry, failpoint, shield_from_terminal_interrupt
from . import label_cache, world

# ultralytics' own loggers, each switched on by its settings file when its package is importable
# (MLflow is, by default). The job tracks every framework the same way from TypeScript instead.
INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "neptune", "raytune", "tensorboard", "wandb")


def configure_offline() -> None:
    """No hub, no pip, no telemetry, no integration of ultralytics' own at run time. YOLO_OFFLINE
    ("true": ultralytics ignores "1"), YOLO_AUTOINSTALL and YOLO_CONFIG_DIR are set by the
    TypeScript adapter before Python starts; the settings file can only be changed here. The
    plots' fonts come from matplotlib (ultralytics would download Arial)."""
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR, checks

    # check_requirements reads this module global when it runs: never a pip install at run time,
    # whatever YOLO_AUTOINSTALL the process started with.
    checks.AUTOINSTALL = False
    SETTINGS.update({"sync": False, **{name: False for name in INTEGRATIONS if name in SETTINGS}})
    _offline_fonts(Path(USER_CONFIG_DIR))
    size_threads()
    _plain_image_open()


def _plain_image_open() -> None:
    """ultralytics replaces PIL's Image.open: a file PIL cannot identify makes it require pi-heif
    (HEIC support) and retry. With installs off and pi-heif absent, an unreadable image (in
    any framework's job, once ultralytics is imported) then fails with "No module named
    'pi_heif'" instead of PIL's "cannot identify image file <path>". The job's formats need no
    plugin, so without pi-heif PIL's own Image.open is put back."""
    import importlib.util

    from PIL import Image
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and importlib.util.find_spec("pi_heif") is None and Image.open is not original:
        Image.open = original


def size_threads() -> None:
    """ultralytics gives torch one thread less than the host has (the rest feed the data loader),
    counted from every core of the node; here counted from the CPUs the job may use
    (cpu_budget.py), so a CPU-limited pod is not oversubscribed."""
    from ultralytics.utils import torch_utils

    from ..cpu_budget import budget

    torch_utils.NUM_THREADS = min(8, max(1, budget().threads - 1))


def _offline_fonts(folder: Path) -> None:
    """ultralytics draws with Arial.ttf (and Arial.Unicode.ttf for non-Latin class names), looked
    up in its settings folder before it downloads them: matplotlib's DejaVu Sans stands in."""
    import shutil

    from matplotlib import font_manager

    dejavu = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (folder / name).exists() and dejavu.is_file():
            shutil.copyfile(dejavu, folder / name)


@entry
def check_model(params: ModelCheckParams) -> ModelCheck:
    """The preflight: without weights, `{MODEL_NAME}.yaml` must be a model configuration this
    ultralytics ships (the model is built from it); with weights, the file decides."""
    configure_offline()
    import ultralytics
    from ultralytics.nn.tasks import yaml_model_load

    name = params["model_name"]
    description = f"ultralytics {ultralytics.__version__} {name}"
    if params["has_weights"]:
        return {"description": f"{description} (architecture from the weights)", "problem": None, "variable": "MODEL_NAME"}
    try:
        cfg = yaml_model_load(f"{world.config_name(name)}.yaml")
    except (FileNotFoundError, OSError) as exc:
        return {"description": description, "problem": f"has no model configuration in ultralytics {ultralytics.__version__} ({exc})", "variable": "MODEL_NAME"}
    scale = cfg.get("scale")
    return {
        "description": f"{description} ({Path(cfg.get('yaml_file', name)).name}{f', scale {scale}' if scale else ''})",
        "problem": None,
        "variable": "MODEL_NAME",
    }


def train_losses(trainer) -> dict[str, float | None]:
    """The running training losses by name (box_loss, cls_loss, ...) and their total as `loss`."""
    if not trainer.tloss:
        return {}
    losses = {k.split("/", 1)[1]: v for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()}
    parts = [v for v in losses.values() if v is not None]
    # A diverged component makes the total unknown too (sent as null, never NaN).
    losses["loss"] = float(sum(parts)) if parts and all(np.isfinite(parts)) else None
    return losses


class _ValidationCapture:
    """Each epoch's validation, image by image, into images.json (common/validation_images.py):
    ultralytics' validator keeps no per-image results, so its update_metrics is wrapped to see
    every batch's predictions after NMS next to the batch's labels. Classification keeps the
    scores for per-class AP too. Only the trainer's per-epoch validations are captured (not
    final_eval's re-validation of best.pt)."""

    def __init__(self, output: ValidationImages, task: str):
        self.output = output
        self.task = task
        self.classifier: ClassifierValidation | None = None
        self.writer = None
        self.seen = 0

    def install(self, validator) -> None:
        if getattr(validator, "_vision_trainer_capture", None) is self:
            return
        original = validator.update_metrics

        def update_metrics(preds, batch):
            original(preds, batch)
            if self.writer is not None or self.classifier is not None:
                try:
                    self._record(validator, preds, batch)
                except Exception as exc:  # noqa: BLE001 - per-image results must not fail the validation
                    logging.getLogger("vision_trainer").warning("per-image validation results unavailable this epoch: %s", exc)
                    self.discard()

        validator.update_metrics = update_metrics
        validator._vision_trainer_capture = self

    def begin(self, epoch: int) -> None:
        self.discard()
        self.seen = 0
        if self.task == "classify":
            self.classifier = ClassifierValidation(self.output, epoch)
        else:
            self.writer = self.output.open(epoch)

    def finish(self, details: dict) -> str | None:
        """The epoch's images.json (None when nothing was captured); adds a classifier's per-class AP."""
        try:
            if self.classifier is not None:
                return self.classifier.finish(details, len(self.output.class_ids))
            return self.writer.close() if self.writer is not None and self.writer.count else None
        finally:
            self.classifier = None
            self.writer = None

    def discard(self) -> None:
        for part in (self.classifier, self.writer):
            if part is not None:
                part.discard()
        self.classifier = None
        self.writer = None

    def _record(self, validator, preds, batch) -> None:
        if self.classifier is not None:
            samples = validator.dataloader.dataset.samples
            paths = [str(samples[self.seen + i][0]) for i in range(len(batch["cls"]))]
            self.seen += len(paths)
            self.classifier.add(paths, preds, batch["cls"], probabilities=True)
            return
        from ultralytics.models.yolo.detect import DetectionValidator
        from ultralytics.utils import ops

        ids = self.output.class_ids
        for si, pred in enumerate(preds):
            # The detection base class: boxes only (a segmentation's masks would cost more than they tell here).
            pbatch = DetectionValidator._prepare_batch(validator, si, batch)
            scaled = DetectionValidator.scale_preds(validator, pred, pbatch)
            conf = scaled["conf"].cpu().numpy()
            keep = conf > REPORT_CONFIDENCE
            boxes = scaled["bboxes"].cpu().numpy()[keep]
            cls = scaled["cls"].cpu().numpy().astype(int)[keep]
            gt_cls = pbatch["cls"].cpu().numpy().astype(int).reshape(-1)
            gt_boxes = (
                ops.scale_boxes(pbatch["imgsz"], pbatch["bboxes"].clone(), pbatch["ori_shape"], ratio_pad=pbatch["ratio_pad"]).cpu().numpy()
                if len(gt_cls)
                else np.zeros((0, 4))
            )
            pred_kpts = gt_kpts = None
            if self.task == "pose":
                pose = validator._prepare_batch(si, batch)
                pred_kpts = ops.scale_coords(pbatch["imgsz"], pred["keypoints"].clone(), pbatch["ori_shape"], ratio_pad=pbatch["ratio_pad"]).cpu().numpy()[keep]
                gt_kpts = ops.scale_coords(pbatch["imgsz"], pose["keypoints"].clone(), pbatch["ori_shape"], ratio_pad=pbatch["ratio_pad"]).cpu().numpy()
            objects = []
            for k, (box, c) in enumerate(zip(boxes, cls, strict=True)):
                obj = {"bbox": box.tolist(), "class_id": ids.of(c), "class_name": ids.name(c), "confidence": float(conf[keep][k])}
                if pred_kpts is not None:
                    obj["keypoints"] = pred_kpts[k].tolist()
                objects.append(obj)
            truth = []
            for k, (box, c) in enumerate(zip(gt_boxes, gt_cls, strict=True)):
                obj = {"bbox": box.tolist(), "class_id": ids.of(c), "class_name": ids.name(c)}
                if gt_kpts is not None:
                    obj["keypoints"] = gt_kpts[k].tolist()
                truth.append(obj)
            matches = match_objects(gt_boxes, gt_cls, boxes, conf[keep], cls, MATCH_IOU_THRESHOLD)
            h, w = (int(v) for v in pbatch["ori_shape"][:2])
            self.writer.add(
                {
                    **self.output.named(str(pbatch["im_file"]), w, h),
                    "predictions": {"boxes": objects},
                    "ground_truth": {"objects": truth},
                    "metrics": ids.evaluation(image_metrics(matches, len(objects), len(truth))),
                }
            )


class _Reporter:
    """ultralytics' callbacks as the shared trainer events (common/trainer_events.py); a "stop" answer
    sets `trainer.stop`, which ultralytics honours after the current batch."""

    def __init__(self, events: TrainerEvents, task: str, capture: _ValidationCapture):
        self.events = events
        self.task = task
        self.capture = capture
        self.batch_index = 0
        self.val_started = 0.0
        self.val_seconds = None
        self.reported_epoch = None
        self.trained_epoch = None

    def _answered(self, trainer) -> None:
        if self.events.stop_requested:
            trainer.stop = True

    def on_pretrain_routine_end(self, trainer):
        """The class ids travel inside every checkpoint: on the model, which ultralytics pickles
        whole (its EMA copy is what it saves, and is rebuilt from the model on resume)."""
        from ultralytics.utils.torch_utils import unwrap_model

        for model in (unwrap_model(trainer.model), getattr(trainer.ema, "ema", None)):
            if model is not None:
                setattr(model, ULTRALYTICS_ATTRIBUTE, list(self.events.class_ids.ids))

    def on_train_start(self, trainer):
        # A resumed job's best of the earlier attempts (adopted as best.pt before training) stays the best until beaten.
        best = _existing(trainer.best) if self.events.best_epoch is not None else None
        self.events.start(
            start_epoch=int(trainer.start_epoch),
            batches_per_epoch=len(trainer.train_loader),
            device=str(trainer.device),
            save_dir=str(trainer.save_dir),
            settings=ultralytics_settings(trainer),
            best_path=best,
        )
        self._answered(trainer)

    def on_train_epoch_start(self, trainer):
        self.batch_index = 0

    def on_train_batch_end(self, trainer):
        """Every rank: the batch event is also the stop vote (ultralytics breaks after the batch)."""
        self.batch_index += 1
        if failpoint("nan_loss") and trainer.tloss:
            trainer.tloss = {k: float("nan") for k in trainer.tloss}
        self.events.batch(epoch=int(trainer.epoch) + 1, batch=self.batch_index, batches=len(trainer.train_loader), losses=train_losses(trainer))
        self._answered(trainer)

    def on_train_epoch_end(self, trainer):
        self.val_started = time.perf_counter()
        self.val_seconds = None
        self.trained_epoch = int(trainer.epoch) + 1
        # Per-image results from the reporting rank only (ranks of one node share the run folder).
        if self.events.reports and getattr(trainer, "validator", None) is not None:
            self.capture.install(trainer.validator)
            self.capture.begin(self.trained_epoch)

    def _close_validation_clock(self):
        if self.val_seconds is None and self.val_started:
            self.val_seconds = time.perf_counter() - self.val_started

    def on_model_save(self, trainer):
        self._close_validation_clock()
        epoch = int(trainer.epoch) + 1
        is_best = trainer.best_fitness is not None and trainer.fitness is not None and trainer.best_fitness == trainer.fitness
        if is_best:
            self.events.record_best(epoch)
        self.events.checkpoint(epoch=epoch, last_path=str(trainer.last), best_path=str(trainer.best), is_best=bool(is_best))
        self._answered(trainer)

    def on_fit_epoch_end(self, trainer):
        self._close_validation_clock()
        epoch = int(trainer.epoch) + 1
        # ultralytics fires on_fit_epoch_end once more after training, for its final validation of
        # best.pt (final_eval); that is not an epoch, and the epochs were all reported already.
        # Only an epoch that was trained is reported: after a stop, final_eval's call can carry the
        # next epoch number although no batch of it ran.
        if self.trained_epoch != epoch or (self.reported_epoch is not None and epoch <= self.reported_epoch):
            return
        self.reported_epoch = epoch
        losses = train_losses(trainer)
        lr = trainer.lr or {}
        metrics = standard_metrics(trainer.metrics or {}, self.task)
        validation = self._validation(trainer, metrics)
        self.events.epoch(
            epoch=epoch,
            losses=losses,
            learning_rate=max(lr.values()) if lr else None,
            validation=validation,
            is_best=self.events.best_epoch == epoch,
            epoch_time_seconds=getattr(trainer, "epoch_time", None),
            metrics=metrics,
            fitness=trainer.fitness,
        )
        self._answered(trainer)

    def _validation(self, trainer, metrics: dict) -> dict | None:
        """The epoch's validation in the platform's terms (per-class rows, PR curves or confusion
        matrix); None when ultralytics did not validate (or on a rank whose events go nowhere).
        Adds the classification averages to `metrics`."""
        validator = getattr(trainer, "validator", None)
        if not self.events.reports or not trainer.metrics or validator is None or getattr(validator, "metrics", None) is None:
            self.capture.discard()
            return None
        names = dict(trainer.data["names"])
        try:
            details = classification_details(validator, names) if self.task == "classify" else detection_details(validator, self.task, names)
        except Exception as exc:  # noqa: BLE001 - metric details are best effort; the core metrics still go out
            logging.getLogger("vision_trainer").warning("per-class metrics unavailable: %s", exc)
            details = {"per_class_metrics": []}
        per_class = details["per_class_metrics"]
        if self.task == "classify":
            metrics.update(precision=macro(per_class, "precision"), recall=macro(per_class, "recall"), f1=macro(per_class, "f1"))
        # ultralytics times each step per image (ms); the model's share is everything but the loss.
        ms = sum(v for k, v in (getattr(validator, "speed", None) or {}).items() if k != "loss")
        if ms > 0:
            metrics["inference_speed_fps"] = 1000.0 / ms
        details["metrics"] = metrics
        images_json = self.capture.finish(details)
        dataset = getattr(getattr(validator, "dataloader", None), "dataset", None)
        model = getattr(trainer.ema, "ema", None) or trainer.model
        return self.events.validation(
            details,
            num_images=len(dataset) if dataset is not None else int(getattr(validator, "seen", 0)),
            seconds=self.val_seconds,
            image_results_file=images_json,
            model_size_mb=model_size_mb(model),
        )

    def on_train_end(self, trainer):
        self.capture.discard()
        self.events.end(best_path=_existing(trainer.best), last_path=_existing(trainer.last))

    def callbacks(self) -> dict:
        return {
            "on_pretrain_routine_end": self.on_pretrain_routine_end,
            "on_train_start": self.on_train_start,
            "on_train_epoch_start": self.on_train_epoch_start,
            "on_train_batch_end": self.on_train_batch_end,
            "on_train_epoch_end": self.on_train_epoch_end,
            "on_model_save": self.on_model_save,
            "on_fit_epoch_end": self.on_fit_epoch_end,
            "on_train_end": self.on_train_end,
        }


def _existing(path) -> str | None:
    return str(path) if Path(path).exists() else None


def _attach_log_file(log_file: str | None) -> None:
    if not log_file:
        return
    from ultralytics.utils import LOGGER

    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s PY    %(message)s"))
    LOGGER.addHandler(handler)


# What ultralytics lets a resume change (everything else comes from the checkpoint's train_args),
# plus where the data and this run's files are now.
RESUME_OVERRIDABLE = ("data", "batch", "imgsz", "workers", "device", "plots", "val", "save_period")


def _resume_args(args: dict[str, Any], resume_from: str) -> dict[str, Any]:
    """ultralytics' own resume (optimizer, EMA, best fitness, epoch) from our uploaded last.pt,
    writing into this job's folder rather than the preempted job's."""
    kept = {k: v for k, v in args.items() if k in RESUME_OVERRIDABLE}
    return {**kept, "resume": resume_from, "save_dir": str(Path(args["project"]) / args["name"])}


# Called from this module, which the preflight's model check has loaded: a call to a module not
# loaded yet waits for its import, and training (whose module is loaded) would overtake it.
check_labels_while_downloading = label_cache.start


@entry
def mark_best(params: MarkBestParams) -> MarkBestAnswer:
    """Stamps the checkpoint that becomes best.pt with the epoch the job chose (the backend's
    is_best, else the score). ultralytics records no best epoch, only `best_fitness`, the best
    score up to the epoch it wrote the file: that becomes the chosen epoch's own fitness, and
    `vision_trainer_best` says which epoch it is and who chose it."""
    from ultralytics.nn.tasks import torch_safe_load

    from ..common.checkpoints import save_atomically

    ckpt, _ = torch_safe_load(params["path"])
    previous = (ckpt.get("vision_trainer_best") or {}).get("epoch")
    if params["score"] is not None:
        ckpt["best_fitness"] = float(params["score"])
    ckpt["vision_trainer_best"] = {"epoch": int(params["epoch"]), "value": params["value"], "decided_by": params["decided_by"]}
    save_atomically(ckpt, params["path"])
    return {"previous_best_epoch": None if previous is None else int(previous)}


def _adopt_best(path: str, weights_dir: Path) -> None:
    """The best checkpoint of the earlier attempts becomes this run's best.pt. ultralytics restores
    its best fitness from the resume checkpoint, so it rewrites best.pt only for an epoch that beats
    it; without the file, a resumed run whose best epoch was earlier would end without best.pt."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, weights_dir / "best.pt")


def _dataset_class_names(data: str, task: str) -> list[str]:
    """Class names in index order, as ultralytics will read them from the prepared dataset."""
    if task == "classify":
        return (Path(data) / "classes.txt").read_text(encoding="utf-8").splitlines()
    import yaml

    names = yaml.safe_load(Path(data).read_text(encoding="utf-8"))["names"]
    return [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]


def _check_resumable(path: str, params: dict, task: str) -> None:
    """Refuses, with the reason, a checkpoint that is not an unfinished ultralytics run of this
    model, task, class list and epoch count."""
    from ultralytics.nn.tasks import load_checkpoint

    from ..common.checkpoints import CheckpointError, read_metadata

    try:
        ours = read_metadata(path)
    except CheckpointError:
        ours = None  # not a timm/transformers checkpoint: ultralytics' own loader judges it
    if ours is not None:
        raise ValueError(
            f"RESUME_CHECKPOINT_PATH is a {ours['framework']} checkpoint of {ours['model_name']}; this job trains {params['model_name']} with ultralytics"
        )
    try:
        model, ckpt = load_checkpoint(path)
    except UnsafeArtifactError:
        raise
    except Exception as exc:
        raise ValueError(f"RESUME_CHECKPOINT_PATH is not an ultralytics training checkpoint ({type(exc).__name__}: {str(exc)[:300]})") from exc
    problems = []
    architecture = Path(str((getattr(model, "yaml", None) or {}).get("yaml_file", ""))).stem
    if architecture != world.config_name(params["model_name"]):
        problems.append(f"model {architecture or 'unknown'!r} (this job: {params['model_name']!r})")
    if model.task != task:
        problems.append(f"task {model.task!r} (this job: {task!r})")
    names = [str(model.names[i]) for i in sorted(model.names)]
    expected = _dataset_class_names(params["data"], task)
    stored_ids = getattr(model, ULTRALYTICS_ATTRIBUTE, None)
    if names != expected:
        problems.append(f"classes {names} (this job's dataset: {expected})")
    elif stored_ids is not None and list(stored_ids) != list(params["class_ids"]):
        problems.append(f"class ids {list(stored_ids)} (this job's dataset: {list(params['class_ids'])})")
    epochs = int((ckpt.get("train_args") or {}).get("epochs", -1))
    if epochs != int(params["epochs"]):
        problems.append(f"EPOCHS={epochs} (this job: {params['epochs']}; ultralytics resumes a run to its own epoch count)")
    if problems:
        raise ValueError(
            "RESUME_CHECKPOINT_PATH belongs to another training setup: it has "
            + "; ".join(problems)
            + ". Resume with the same MODEL_NAME, TASK_TYPE, EPOCHS and dataset classes, or start without RESUME_CHECKPOINT_PATH."
        )
    if ckpt.get("optimizer") is None or int(ckpt.get("epoch", -1)) < 0:
        raise ValueError(
            "RESUME_CHECKPOINT_PATH is a finished run's checkpoint (no optimizer state): resume from an epoch-N.pt checkpoint of an unfinished run"
        )


def _train_args(params: TrainParams) -> dict[str, Any]:
    """ultralytics' train arguments: our defaults, then TRAINER_ARGS (resolved by
    trainer_args.py; the keys the contract owns are refused there), then the contract's values."""
    trainer_args = dict(params["trainer_args"])
    args: dict[str, Any] = {
        "plots": True,  # results.png, confusion matrix, PR curves: uploaded beside training.log
        "verbose": False,
        **trainer_args,
        "data": params["data"],
        "epochs": int(params["epochs"]),
        "batch": int(params["batch"]),
        "imgsz": int(params["imgsz"]),
        "workers": data_loader_workers(params["workers"]),
        "project": params["project"],
        "name": "train",
        "exist_ok": True,
        "save_period": -1,
        "val": True,
    }
    if params["device"] not in ("", "auto"):
        args["device"] = params["device"]
    if params["seed"] is not None:
        args["seed"] = int(params["seed"])
        args["deterministic"] = True
    if params["lr"] is not None:
        args["lr0"] = float(params["lr"])
        if "optimizer" not in trainer_args:
            # optimizer="auto" ignores lr0 and picks its own: a LEARNING_RATE must not be dropped silently.
            args["optimizer"] = "AdamW"
        elif trainer_args["optimizer"] == "auto":
            logging.getLogger("vision_trainer").warning("TRAINER_ARGS optimizer=auto chooses its own learning rate: LEARNING_RATE=%s is not used", params["lr"])
    return args


def _strip_final_weights(trainer) -> None:
    """The first half of ultralytics' final_eval: rank 0 strips the optimizer from last.pt and
    best.pt (the weights a finished run keeps), the other ranks wait for it."""
    from ultralytics.utils import LOCAL_RANK, RANK
    from ultralytics.utils.torch_utils import strip_optimizer, torch_distributed_zero_first

    with torch_distributed_zero_first(LOCAL_RANK):
        if RANK in {-1, 0}:
            ckpt = strip_optimizer(trainer.last) if trainer.last.exists() else {}
            if trainer.best.exists():
                strip_optimizer(trainer.best, updates={"train_results": ckpt.get("train_results")})


def _stoppable_trainer(base: type, events: TrainerEvents) -> type:
    """After the last epoch ultralytics validates best.pt once more (final_eval); the job reports
    nothing from it. After a stop the job asked for (SIGTERM, cancel, time limit) that validation
    only spends the grace period the platform gives before it kills the pod (25-30 s at 20,000
    images): the stop's epoch is already validated and its checkpoint stored, so only the
    weights are stripped. ultralytics' own stops (patience) keep the full final_eval."""

    class StoppableTrainer(base):
        def final_eval(self):
            if not events.stop_requested:
                return super().final_eval()
            _strip_final_weights(self)
            return None

    StoppableTrainer.__name__ = StoppableTrainer.__qualname__ = f"Stoppable{base.__name__}"
    return StoppableTrainer


def _joined_trainer(base: type) -> type:
    """ultralytics' task trainer, training in this process as one rank of our elastic launch."""
    import torch
    import torch.nn.parallel

    class JoinedTrainer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # ultralytics counts only this machine's GPUs (0 on a CPU) and would spawn workers of
            # its own: here the process already is a worker, of a job this wide.
            self.world_size = int(os.environ["WORLD_SIZE"])
            self.ddp = False

        def _setup_ddp(self):
            if self.device.type == "cuda":
                super()._setup_ddp()  # cuda:LOCAL_RANK, NCCL, rank RANK of self.world_size
            else:
                distributed.init_process_group(self.device)

        def final_eval(self):
            if self.device.type == "cuda":
                return super().final_eval()
            # ultralytics validates best.pt once more on DDP ranks with a CUDA device; on CPUs only
            # its other part applies: rank 0 strips the optimizer from the final weights.
            _strip_final_weights(self)
            return None

    class CpuDistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
        """ultralytics passes device_ids=[device.index], [None] on a CPU, which DDP refuses."""

        def __init__(self, module, device_ids=None, **kwargs):
            super().__init__(module, device_ids=None if device_ids == [None] else device_ids, **kwargs)

    if os.environ.get("VISION_TRAINER_DIST_DEVICE") == "cpu":
        torch.nn.parallel.DistributedDataParallel = CpuDistributedDataParallel
    return JoinedTrainer


@entry
def train(params: TrainParams, emit: Callable) -> TrainAnswer:
    """Trains params["model_name"] on the YOLO dataset (data.yaml or ImageFolder) at params["data"];
    resume_from continues an unfinished run of ours from its last.pt."""
    shield_from_terminal_interrupt()
    configure_offline()
    _attach_log_file(params["log_file"])
    # Before any process builds the datasets: they find the label caches written.
    label_cache.finish(params["data"])
    if params["distributed"]:
        return distributed.launch("vision_trainer.ultralytics.train:train_worker", params)
    return _train(params, emit, None)


def train_worker(params: TrainParams, worker: distributed.WorkerContext) -> TrainAnswer:
    """One process of a distributed run (started by distributed.launch)."""
    configure_offline()
    if worker.reports:
        _attach_log_file(params["log_file"])
    return _train(params, None, worker)


def _train(params: TrainParams, emit: Callable | None, worker: distributed.WorkerContext | None) -> TrainAnswer:
    from ultralytics import YOLO, YOLOWorld

    task = TASK_BY_PLATFORM[params["task_type"]]
    weights = params["weights"]
    resume_from = params["resume_from"]
    is_world = world.is_world(params["model_name"])
    if is_world:
        # ultralytics' WorldTrainer embeds the class names as prompts with this encoder.
        world.use_text_encoder(params["text_encoder"])
    # ultralytics picks YOLOWorld by "-world" in a file name only; ours are weights.pt, resume.pt.
    build = YOLOWorld if is_world else YOLO
    if resume_from:
        _check_resumable(resume_from, params, task)
        model = build(resume_from)
    elif weights:
        model = build(weights)
        if model.task != task:
            raise ValueError(f"PRETRAINED_WEIGHT_URL holds a {model.task} model, but TASK_TYPE={params['task_type']} needs a {task} model")
        if is_world and not world.holds_world_model(model.model):
            raise ValueError(
                f"PRETRAINED_WEIGHT_URL holds a {type(model.model).__name__}, not a YOLO-World v2 model (e.g. yolov8s-worldv2.pt) for {params['model_name']}"
            )
    elif is_world:
        model = YOLOWorld(f"{world.config_name(params['model_name'])}.yaml")
    else:
        model = YOLO(f"{params['model_name']}.yaml", task=task)

    best_from = params.get("best_from") if resume_from else None
    if best_from:
        _check_resumable(best_from["path"], params, task)
    class_ids = ClassIds(params["class_ids"], params["class_names"])
    # The earlier attempts' best (adopted as best.pt below) is this run's best until an epoch beats
    # it: ultralytics restores only its best fitness from the resume checkpoint, not which epoch it was.
    events: TrainerEvents = distributed.trainer_events(
        emit,
        worker,
        primary_metric=params["primary_metric"],
        epochs=int(params["epochs"]),
        class_ids=class_ids,
        tensorboard_dir=params["tensorboard_dir"],
        best_metric=best_from["value"] if best_from else None,
        best_epoch=int(best_from["epoch"]) if best_from else None,
    )
    reporter = _Reporter(events, task, _ValidationCapture(ValidationImages(params, class_ids), task))
    for event, fn in reporter.callbacks().items():
        model.add_callback(event, fn)

    args = _train_args(params)
    if resume_from:
        args = _resume_args(args, resume_from)
        if best_from and (worker is None or worker.reports):  # one writer per node's run folder
            _adopt_best(best_from["path"], Path(args["save_dir"]) / "weights")
    trainer_class = model._smart_load("trainer")
    if worker:
        trainer_class = _joined_trainer(trainer_class)
    args["trainer"] = _stoppable_trainer(trainer_class, events)
    model.train(**args)
    trainer = model.trainer
    return {
        "best_epoch": events.best_epoch,
        "best_path": _existing(trainer.best),
        "last_path": _existing(trainer.last),
        "stopped_early": bool(trainer.stop) and int(trainer.epoch) + 1 < int(trainer.epochs),
    }
