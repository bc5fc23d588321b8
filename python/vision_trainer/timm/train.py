"""Image classification with timm, driven from TypeScript.

timm has no trainer object with callbacks, so this is the training loop of timm's own
`train.py`: `resolve_data_config` + `create_loader` (train augmentation: random-resized crop,
flip, colour jitter; val: resize + centre crop), `create_optimizer_v2` (AdamW),
`create_scheduler_v2` (cosine with warmup, stepped per update and per epoch), label-smoothing
cross-entropy, mixed precision on CUDA only. The loop reports through `TrainerEvents`
(common/trainer_events.py, the protocol every trainer speaks) and checkpoints in the format of
`common/checkpoints.py`.

On several processes (common/distributed.py) it is timm's train.py distributed: the model in
DistributedDataParallel, the training set split by a DistributedSampler (BATCH_SIZE is the global
batch: each process takes BATCH_SIZE / processes), the epoch's loss averaged over every rank. The
validation set is split without padding and the logits gathered, so every image is counted once
and the metrics are exactly a single process's. Global rank 0 writes the checkpoints.

Its options (TRAINER_ARGS) are named as timm's train.py names them (`opt`, `sched`,
`warmup_epochs`, `smoothing`, `mixup`, `aa`, `reprob`, `drop_path`, ...); TypeScript checks them
and fills in their defaults (src/config/trainer-args.ts is the table), so `params["trainer_args"]`
always holds every option.

`train(params, emit)`: params are protocol.TrainParams.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from timm.utils import dispatch_clip_grad
from torch import nn

from ..common import distributed
from ..common.checkpoints import RunCheckpoints, best_after_resume, load_for_resume, run_state
from ..common.class_ids import ClassIds
from ..common.classification_metrics import classification_metrics
from ..common.run_settings import timm_settings
from ..common.torch_runtime import amp_dtype, attach_log_file, autocast, resolve_device, seed_run
from ..common.trainer_events import TrainerEvents
from ..common.validation_images import ClassifierValidation, ValidationImages, model_size_mb
from ..cpu_budget import data_loader_workers
from ..protocol import ModelCheck, ModelCheckParams, TrainAnswer, TrainParams
from ..safe_load import UnsafeArtifactError
from ..support import entry, shield_from_terminal_interrupt

log = logging.getLogger("vision_trainer")

DEFAULT_LR = 1e-3
SEED = 42
# What RunCheckpoints writes after every validated epoch.
CHECKPOINT_SAVING = "last.pt (weights, optimizer) every epoch, best.pt when it improves"


def create_timm_model(model_name: str, num_classes: int, image_size: int, **training_kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    """(model, the extra create_model arguments a rebuild needs). Models with a fixed input size
    (ViTs: position embeddings per patch) are built for IMAGE_SIZE. `training_kwargs` (dropout
    rates) shape training only and are not needed to rebuild the model."""
    import timm
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is None and not timm.is_model(model_name):
        raise ValueError(f"MODEL_NAME={model_name} {_not_a_model(model_name)}")
    kwargs: dict[str, Any] = {"img_size": image_size} if cfg is not None and cfg.fixed_input_size else {}
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, **kwargs, **training_kwargs)
    return model, kwargs


def _not_a_model(model_name: str) -> str:
    import timm

    return (
        f"is not a timm model (e.g. resnet18, efficientnet_b0, convnext_tiny, vit_base_patch16_224; "
        f"timm {timm.__version__} knows {len(timm.list_models())} names, see timm.list_models())"
    )


@entry
def check_model(params: ModelCheckParams) -> ModelCheck:
    """The preflight: MODEL_NAME must name a timm architecture (weights, if any, come later)."""
    import timm
    from timm.models import get_pretrained_cfg

    name = params["model_name"]
    known = get_pretrained_cfg(name) is not None or timm.is_model(name)
    return {"description": f"timm {timm.__version__} {name}", "problem": None if known else _not_a_model(name), "variable": "MODEL_NAME"}


def load_pretrained_weights(model: nn.Module, path: str) -> None:
    """Loads a .safetensors/.pth/.pt file (a state dict, a timm/torchvision training checkpoint,
    or one of our checkpoints) into `model`, the classifier resized to the dataset's classes.
    Raises ValueError saying whether the file is not weights at all or weights of another
    architecture."""
    from timm.models import load_state_dict

    name = Path(path).name
    if not _is_weights_container(path):
        with open(path, "rb") as f:
            head = f.read(24)
        raise ValueError(f"PRETRAINED_WEIGHT_URL is not a weights file: {name} is neither safetensors nor a PyTorch checkpoint (it starts with {head!r})")
    try:
        state_dict = load_state_dict(path, use_ema=True)
    except UnsafeArtifactError:
        raise
    except Exception as exc:
        raise ValueError(
            f"PRETRAINED_WEIGHT_URL is not a weights file: {name} could not be read as safetensors or a PyTorch state dict "
            f"({type(exc).__name__}: {str(exc)[:300]})"
        ) from exc
    if not isinstance(state_dict, dict) or not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"PRETRAINED_WEIGHT_URL is not a weights file: {name} holds no tensor state dict")

    # The architecture's own checkpoint filter (ViT: resample position embeddings to IMAGE_SIZE;
    # ConvNeXt: remap original-repo keys), as timm's pretrained loader applies it.
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state_dict = filter_fn(state_dict, model)
        except Exception as exc:
            raise ValueError(
                f"PRETRAINED_WEIGHT_URL holds weights of another architecture: timm could not adapt {name} to {type(model).__name__} "
                f"({type(exc).__name__}: {str(exc)[:300]})"
            ) from exc

    expected = model.state_dict()
    classifier_keys = {f"{c}.{p}" for c in _classifier_names(model) for p in ("weight", "bias")}
    for key in classifier_keys & state_dict.keys():
        if state_dict[key].shape != expected[key].shape:
            del state_dict[key]  # another class count: this head starts fresh
    missing = [k for k in expected if k not in state_dict and k not in classifier_keys and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state_dict
        if k in expected and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the model's {len(expected)} tensors are missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} tensors the model does not have (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            parts.append(f"{len(mismatched)} shapes differ (e.g. {'; '.join(mismatched[:2])})")
        raise ValueError(f"PRETRAINED_WEIGHT_URL holds weights of another architecture than {arch}: " + ", ".join(parts))
    model.load_state_dict(state_dict, strict=False)
    log.info("pretrained weights loaded from %s (%d tensors)", name, len(state_dict))


def _is_weights_container(path: str) -> bool:
    """Safetensors, torch.save's zip or legacy pickle, judged by content: a presigned URL's file
    name says little, and timm's loader would blame "pickle globals" for a text file."""
    with open(path, "rb") as f:
        head = f.read(9)
    is_torch_zip = head[:4] == b"PK\x03\x04"
    is_legacy_pickle = head[:1] == b"\x80"
    is_safetensors = len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100 * 1024 * 1024
    return is_torch_zip or is_legacy_pickle or is_safetensors


def _classifier_names(model: nn.Module) -> list[str]:
    names = getattr(model, "pretrained_cfg", {}).get("classifier") or []
    return [names] if isinstance(names, str) else list(names)


class _Shard(torch.utils.data.Dataset):
    """Every `step`-th item from `start` (one rank's part of the validation set, unpadded).
    timm's create_loader sets the transform on the dataset it is given: it goes to the whole set."""

    def __init__(self, dataset, start: int, step: int):
        self.dataset = dataset
        self.indices = list(range(start, len(dataset), step))

    @property
    def transform(self):
        return self.dataset.transform

    @transform.setter
    def transform(self, value) -> None:
        self.dataset.transform = value

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]


class _TimmRun:
    """One training run: model, data, optimizer and schedule, built from the job's params."""

    def __init__(self, params: TrainParams, worker: distributed.WorkerContext | None = None):
        import timm
        from timm.data import ImageDataset, Mixup, create_loader, resolve_data_config
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2
        from timm.utils import NativeScaler

        self.params = params
        self.model_name = params["model_name"]
        self.class_names = [str(c) for c in params["class_names"]]
        self.class_ids = ClassIds(params["class_ids"], self.class_names)
        self.epochs = int(params["epochs"])
        self.image_size = int(params["imgsz"])
        self.worker = worker
        self.device = worker.device if worker else resolve_device(params.get("device"))
        if worker:
            distributed.init_process_group(self.device)
        rank, world = (worker.ranks.rank, worker.ranks.world_size) if worker else (0, 1)
        self.reports = rank == 0
        # images.json is written by the process that reports (global rank 0 on a distributed run).
        self.validation_images = ValidationImages(params, self.class_ids) if self.reports else None
        seed_run(params.get("seed"), default=SEED)
        a = self.options = dict(params["trainer_args"])

        root = Path(params["data"])
        class_map = str(root / "classes.txt")
        self.train_set = ImageDataset(str(root / "train"), class_map=class_map)
        self.val_set = ImageDataset(str(root / "val"), class_map=class_map)

        dropout = {"drop_rate": float(a["drop"]), **({"drop_path_rate": float(a["drop_path"])} if a["drop_path"] is not None else {})}
        self.model, self.model_kwargs = create_timm_model(self.model_name, len(self.class_names), self.image_size, **dropout)
        if params.get("weights") and not params.get("resume_from"):
            load_pretrained_weights(self.model, params["weights"])
        self.model.to(self.device)

        data_config = resolve_data_config({"input_size": (3, self.image_size, self.image_size)}, model=self.model)
        self.data_config = data_config
        prefetch = self.device.type == "cuda"  # timm's GPU prefetcher normalises on the device
        loader_args = dict(
            input_size=data_config["input_size"],
            batch_size=int(params["batch"]) // world,
            interpolation=data_config["interpolation"],
            mean=data_config["mean"],
            std=data_config["std"],
            num_workers=data_loader_workers(params.get("workers") or 0),
            pin_memory=prefetch,
            use_prefetcher=prefetch,
            device=self.device,
            persistent_workers=False,
        )
        augment = dict(
            scale=tuple(a["scale"]),
            ratio=tuple(a["ratio"]),
            hflip=a["hflip"],
            vflip=a["vflip"],
            color_jitter=a["color_jitter"],
            auto_augment=a["aa"],
            re_prob=a["reprob"],
            re_mode=a["remode"],
            re_count=a["recount"],
        )
        self.train_loader = create_loader(self.train_set, is_training=True, distributed=worker is not None, **augment, **loader_args)
        val_part = _Shard(self.val_set, rank, world) if worker else self.val_set
        self.val_loader = create_loader(val_part, is_training=False, crop_pct=data_config["crop_pct"], **loader_args)
        # Training steps go through DDP (gradients averaged over the ranks); validation, state
        # dicts and the optimizer's parameter names use the plain module.
        self.net: nn.Module = self.model
        if worker:
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        lr = float(params["lr"]) if params.get("lr") is not None else DEFAULT_LR
        opt_args = {k: v for k, v in (("eps", a["opt_eps"]), ("betas", tuple(a["opt_betas"]) if a["opt_betas"] else None)) if v is not None}
        self.optimizer = create_optimizer_v2(self.model, opt=a["opt"], lr=lr, weight_decay=a["weight_decay"], momentum=a["momentum"], **opt_args)
        cooldown = int(a["cooldown_epochs"])
        if cooldown >= self.epochs:
            raise ValueError(f"TRAINER_ARGS cooldown_epochs={cooldown} leaves no epoch of the schedule: EPOCHS={self.epochs} counts the cool-down too")
        warmup = a["warmup_epochs"] if a["warmup_epochs"] is not None else min(5, self.epochs // 10)
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched=a["sched"],
            num_epochs=self.epochs - cooldown,
            cooldown_epochs=cooldown,
            warmup_epochs=warmup,
            warmup_lr=a["warmup_lr"] if a["warmup_lr"] is not None else lr * 0.01,
            min_lr=a["min_lr"] if a["min_lr"] is not None else lr * 0.01,
            decay_epochs=a["decay_epochs"],
            decay_milestones=list(a["decay_milestones"]),
            decay_rate=a["decay_rate"],
            patience_epochs=a["patience_epochs"],
            updates_per_epoch=len(self.train_loader),
        )
        # timm's train.py: mixup/cutmix mix the labels too, so the loss takes soft targets (smoothing folded in).
        self.mixup = None
        if a["mixup"] > 0 or a["cutmix"] > 0:
            self.mixup = Mixup(
                mixup_alpha=a["mixup"],
                cutmix_alpha=a["cutmix"],
                prob=a["mixup_prob"],
                switch_prob=a["mixup_switch_prob"],
                mode=a["mixup_mode"],
                label_smoothing=a["smoothing"],
                num_classes=len(self.class_names),
            )
            self.train_loss = SoftTargetCrossEntropy().to(self.device)
        elif a["smoothing"] > 0:
            self.train_loss = LabelSmoothingCrossEntropy(smoothing=a["smoothing"]).to(self.device)
        else:
            self.train_loss = nn.CrossEntropyLoss().to(self.device)
        self.val_loss = nn.CrossEntropyLoss().to(self.device)
        # Loss scaling only for float16; bfloat16 has float32's range.
        self.scaler = NativeScaler(device="cuda") if amp_dtype(self.device) == torch.float16 else None

        self.checkpoints = RunCheckpoints(distributed.weights_dir(params["project"], worker))
        self.start_epoch = 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        if params.get("resume_from"):
            self._resume(params["resume_from"])
        self.versions = {"torch": torch.__version__, "timm": timm.__version__}

    def _resume(self, path: str) -> None:
        ckpt = load_for_resume(
            path,
            framework="timm",
            model_name=self.model_name,
            class_names=self.class_names,
            class_ids=self.class_ids.ids,
            task_type=self.params["task_type"],
            image_size=self.image_size,
        )
        state = ckpt["training_state"]
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(ckpt["epoch"])
        if self.start_epoch >= self.epochs:
            raise ValueError(f"RESUME_CHECKPOINT_PATH already has {self.start_epoch} epochs done, EPOCHS={self.epochs}: nothing is left to train")
        self.best_metric, self.best_epoch = best_after_resume(
            ckpt,
            path,
            self.params.get("best_from"),
            self.checkpoints,
            framework="timm",
            model_name=self.model_name,
            class_names=self.class_names,
            class_ids=self.class_ids.ids,
            task_type=self.params["task_type"],
            image_size=self.image_size,
        )
        log.info("resuming %s from epoch %d (best %s at epoch %s)", self.model_name, self.start_epoch, self.best_metric, self.best_epoch)

    def metadata(self, *, epoch: int, epoch_complete: bool, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "framework": "timm",
            "model_name": self.model_name,
            "architecture": self.model_name,
            "task_type": self.params["task_type"],
            "class_names": self.class_names,
            "class_ids": self.class_ids.ids,
            "image_size": self.image_size,
            "input_channels": 3,
            "mean": list(self.data_config["mean"]),
            "std": list(self.data_config["std"]),
            "interpolation": self.data_config["interpolation"],
            "resize_mode": "shorter_side_center_crop",
            "crop_pct": float(self.data_config["crop_pct"]),
            "model_kwargs": self.model_kwargs,
            **run_state(self.params, epoch=epoch, epoch_complete=epoch_complete, metrics=metrics, best_metric=self.best_metric, best_epoch=self.best_epoch),
            "versions": self.versions,
        }

    def settings(self) -> dict[str, Any]:
        return timm_settings(
            model_name=self.model_name,
            model=self.model,
            train_loader=self.train_loader,
            val_loader=self.val_loader,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            loss=self.train_loss,
            amp=amp_dtype(self.device),
            epochs=self.epochs,
            device=self.device,
            saving=CHECKPOINT_SAVING,
        )

    def training_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def train_one_epoch(self, epoch: int, events: TrainerEvents, num_updates: int) -> tuple[float | None, int, bool]:
        """(mean loss over every rank, updates so far, whether every batch ran)."""
        self.net.train()
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # DistributedSampler: a new shuffle each epoch, the same on every rank
        batches = len(self.train_loader)
        total, count = 0.0, 0
        for i, (images, targets) in enumerate(self.train_loader):
            images, targets = images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
            if self.mixup is not None:
                images, targets = self.mixup(images, targets)
            with autocast(self.device):
                loss = self.train_loss(self.net(images), targets)
            self.optimizer.zero_grad(set_to_none=True)
            clip = self.options["clip_grad"]
            if self.scaler is not None:
                self.scaler(loss, self.optimizer, clip_grad=clip, clip_mode=self.options["clip_mode"], parameters=self.model.parameters())
            else:
                loss.backward()
                if clip is not None:
                    dispatch_clip_grad(self.model.parameters(), value=clip, mode=self.options["clip_mode"])
                self.optimizer.step()
            num_updates += 1
            self.scheduler.step_update(num_updates=num_updates)
            value = float(loss.detach())
            total, count = total + value * len(targets), count + len(targets)
            events.batch(epoch=epoch + 1, batch=i + 1, batches=batches, losses={"loss": total / count})
            if events.stop_requested and i + 1 < batches:
                return self._mean_loss(total, count), num_updates, False
        return self._mean_loss(total, count), num_updates, True

    def _mean_loss(self, total: float, count: int) -> float | None:
        if self.worker:
            total, count = distributed.sum_across_ranks([total, float(count)], self.device)
        return total / count if count else None

    @torch.no_grad()
    def validate(self, epoch: int) -> tuple[dict[str, Any], int, float, str | None]:
        """(metrics details, images, seconds, the epoch's images.json). On several processes every
        rank validates its part (every world-th image); the metrics come from all of them."""
        started = time.perf_counter()
        if self.worker:
            # Each rank's BatchNorm statistics saw only its own batches: averaged first, as timm's
            # train.py does (--dist-bn reduce), so every rank validates, and rank 0 saves, one model.
            from timm.utils import distribute_bn

            distribute_bn(self.model, self.worker.ranks.world_size, reduce=True)
        self.model.eval()
        logits, targets, loss_sum = [], [], 0.0
        # The loader keeps the dataset's order (no shuffling at validation), so image i is file i
        # (of this rank's part: files[rank::world], see _Shard).
        rank, world = (self.worker.ranks.rank, self.worker.ranks.world_size) if self.worker else (0, 1)
        files = self.val_set.filenames(absolute=True)
        capture = ClassifierValidation(self.validation_images, epoch)
        try:
            for images, target in self.val_loader:
                images, target = images.to(self.device, non_blocking=True), target.to(self.device, non_blocking=True)
                with capture.timed(), autocast(self.device):
                    out = self.model(images)
                loss_sum += float(self.val_loss(out.float(), target)) * len(target)
                first = sum(len(t) for t in targets)
                capture.add(files[rank::world][first : first + len(target)], out.float(), target)
                logits.append(out.float().cpu())
                targets.append(target.cpu())
            parts = [(logits, targets, loss_sum)]
            if self.worker:
                parts = distributed.gather_to_all(parts[0])
                for other, (part_logits, part_targets, _) in enumerate(parts):
                    if other != rank and part_targets:
                        capture.add(files[other::world], torch.cat(part_logits), torch.cat(part_targets))
        except BaseException:
            capture.discard()
            raise
        all_logits = torch.cat([t for p in parts for t in p[0]])
        all_targets = torch.cat([t for p in parts for t in p[1]])
        details = classification_metrics(all_logits, all_targets, self.class_names, loss=sum(p[2] for p in parts) / len(all_targets))
        images_json = capture.finish(details, len(self.class_names))
        return details, len(all_targets), time.perf_counter() - started, images_json

    def save(self, *, epoch: int, epoch_complete: bool, metrics: dict[str, Any], is_best: bool) -> None:
        if self.reports:  # the model is the same on every rank: global rank 0 writes it
            self.checkpoints.save(
                self.metadata(epoch=epoch, epoch_complete=epoch_complete, metrics=metrics),
                self.model.state_dict(),
                is_best=is_best,
                training_state=self.training_state(),
            )

    def fit(self, emit) -> dict[str, Any]:
        events = distributed.trainer_events(
            emit,
            self.worker,
            primary_metric=self.params["primary_metric"],
            epochs=self.epochs,
            class_ids=self.class_ids,
            best_metric=self.best_metric,
            best_epoch=self.best_epoch,
            tensorboard_dir=self.params.get("tensorboard_dir"),
        )
        num_updates = self.start_epoch * len(self.train_loader)
        if self.start_epoch:
            # As timm's train.py does after a resume: the schedule is a function of EPOCHS and the
            # epochs done, so it is positioned rather than restored (a resume may extend EPOCHS).
            self.scheduler.step(self.start_epoch)
        events.start(
            start_epoch=self.start_epoch,
            batches_per_epoch=len(self.train_loader),
            device=str(self.device),
            save_dir=str(self.checkpoints.dir.parent),
            best_path=self.checkpoints.best_path,
            settings=self.settings(),
        )
        last_epoch = self.start_epoch
        for epoch in range(self.start_epoch, self.epochs):
            started = time.perf_counter()
            train_loss, num_updates, complete = self.train_one_epoch(epoch, events, num_updates)
            if not complete:
                # Stopped mid-epoch: keep the progress, but call only the finished epochs done, so
                # a resume runs this epoch again (ultralytics' resume does the same).
                self.save(epoch=epoch, epoch_complete=False, metrics={}, is_best=False)
                events.checkpoint(
                    epoch=epoch + 1, last_path=str(self.checkpoints.last), best_path=self.checkpoints.best_path, is_best=False, last_replaced=True
                )
                break
            learning_rate = float(self.optimizer.param_groups[0]["lr"])
            details, num_images, val_seconds, images_json = self.validate(epoch + 1)
            accuracy = details["metrics"].get(self.params["primary_metric"])
            self.scheduler.step(epoch + 1, accuracy)
            is_best = events.improves(accuracy)
            if is_best:
                events.record_best(epoch + 1, accuracy)
                self.best_metric, self.best_epoch = events.best_metric, events.best_epoch
            self.save(epoch=epoch + 1, epoch_complete=True, metrics=details["metrics"], is_best=is_best)
            events.checkpoint(epoch=epoch + 1, last_path=str(self.checkpoints.last), best_path=self.checkpoints.best_path, is_best=is_best, last_replaced=True)
            events.epoch(
                epoch=epoch + 1,
                losses={"loss": train_loss},
                learning_rate=learning_rate,
                validation=events.validation(
                    details, num_images=num_images, seconds=val_seconds, image_results_file=images_json, model_size_mb=model_size_mb(self.model)
                ),
                is_best=is_best,
                epoch_time_seconds=time.perf_counter() - started,
            )
            if self.reports:
                log.info(
                    "epoch %d/%d: loss %.4f, val accuracy %.4f%s",
                    epoch + 1,
                    self.epochs,
                    train_loss or float("nan"),
                    accuracy or 0.0,
                    " (best)" if is_best else "",
                )
            last_epoch = epoch + 1
            events.agree()  # a "stop" answered to rank 0's epoch events reaches every rank here
            if events.stop_requested:
                break
        events.end(best_path=self.checkpoints.best_path, last_path=self.checkpoints.last_path)
        return {
            "best_epoch": events.best_epoch,
            "best_path": self.checkpoints.best_path,
            "last_path": self.checkpoints.last_path,
            "stopped_early": last_epoch < self.epochs,
        }


@entry
def train(params: TrainParams, emit: Callable) -> TrainAnswer:
    """Trains params["model_name"] on the ImageFolder tree params["data"] (with classes.txt, which
    pins the class order); weights is a local .safetensors/.pth file."""
    shield_from_terminal_interrupt()
    attach_log_file(params.get("log_file"), ("vision_trainer", "timm"))
    if params["distributed"]:
        return distributed.launch("vision_trainer.timm.train:train_worker", params)
    return _TimmRun(params).fit(emit)


def train_worker(params: TrainParams, worker: distributed.WorkerContext) -> TrainAnswer:
    """One process of a distributed run (started by distributed.launch)."""
    attach_log_file(params.get("log_file") if worker.reports else None, ("vision_trainer", "timm"))
    return _TimmRun(params, worker).fit(None)
