"""What a training run resolved: the framework's own arguments after its defaults were applied,
and the runtime settings that change how fast the same work runs (threads, determinism, mixed
precision, data-loader workers, validation and checkpoint saving).

Each trainer sends this with its `start` event (the job logs it, so a run says what it really
did), and the benchmarks' native scripts print the same dict for their own run: a benchmark
compares the two key by key and refuses to report a ratio when they differ. This module only
reads, and imports nothing of the package (the native scripts load this file by itself, so
that running the framework by hand stays untouched by vision-trainer's own set-up).
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Where files go, not how the work is done: left out, so two runs in different folders compare.
PATH_KEYS = {"data", "project", "name", "save_dir", "output_dir", "logging_dir", "run_name"}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and type(value).__module__.startswith(("transformers", "enum")):
        return _plain(value.value)  # enums (IntervalStrategy.EPOCH -> "epoch")
    return str(value)


def without_paths(args: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in sorted(args.items()) if k not in PATH_KEYS}


def runtime(device: Any, *, amp: Any, train_workers: int, val_workers: int | None, validation: str, saving: str) -> dict[str, Any]:
    """The settings every framework shares."""
    import torch

    cv2 = sys.modules.get("cv2")
    return {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "mkl_num_threads": os.environ.get("MKL_NUM_THREADS"),
        "opencv_threads": cv2.getNumThreads() if cv2 is not None else None,
        "blas_threads": blas_threads(),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "amp": _plain(amp),
        "train_workers": int(train_workers),
        "val_workers": None if val_workers is None else int(val_workers),
        "validation": validation,
        "saving": saving,
    }


def blas_threads() -> list[str] | None:
    """The thread counts of the BLAS/OpenMP pools loaded in the process ("openblas: 2"), which
    an import order can change (numpy imported before or after OMP_NUM_THREADS is set);
    None when threadpoolctl is not installed. Each distinct budget once: how many copies of a
    library are loaded (scipy and scikit-learn bring their own OpenBLAS and OpenMP, idle while
    torch trains) is not work, a pool with another thread count is."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return sorted({f"{pool['internal_api']}: {pool['num_threads']}" for pool in threadpool_info()})


def cpu_budget() -> dict[str, Any] | None:
    """Where the thread count came from (vision_trainer.cpu_budget), when the package sized it."""
    module = sys.modules.get("vision_trainer.cpu_budget")
    return module.budget().describe() if module is not None else None


def ultralytics_settings(trainer) -> dict[str, Any]:
    """An ultralytics trainer at on_train_start: its resolved arguments (cfg/default.yaml merged
    with the call's) and what it built from them."""
    args = vars(trainer.args)
    val_loader = getattr(getattr(trainer, "validator", None), "dataloader", None) or getattr(trainer, "test_loader", None)
    saving = (
        "last.pt and best.pt every epoch" + (f", epoch{{N}}.pt every {args['save_period']}" if int(args.get("save_period") or -1) > 0 else "")
        if args.get("save")
        else "none"
    )
    return {
        "framework": "ultralytics",
        "cpu_budget": cpu_budget(),
        "args": without_paths(args),
        "runtime": runtime(
            trainer.device,
            amp=bool(trainer.amp),
            train_workers=trainer.train_loader.num_workers,
            val_workers=getattr(val_loader, "num_workers", None),
            validation="every epoch" if args.get("val") else "final epoch only",
            saving=saving,
        ),
    }


def _transform(loader) -> str:
    dataset = getattr(loader, "dataset", None)
    return str(getattr(dataset, "transform", None) or getattr(dataset, "transforms", None))


def _optimizer(optimizer) -> dict[str, Any]:
    group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    return {"type": type(optimizer).__name__, "groups": len(optimizer.param_groups), "first_group": _plain(group)}


def timm_settings(*, model_name: str, model, train_loader, val_loader, optimizer, scheduler, loss, amp, epochs: int, device, saving: str) -> dict[str, Any]:
    """A timm training loop (timm's train.py recipe): what it was built with."""
    return {
        "framework": "timm",
        "cpu_budget": cpu_budget(),
        "args": {
            "model": model_name,
            "parameters": sum(p.numel() for p in model.parameters()),
            "epochs": int(epochs),
            "batch": int(train_loader.batch_size if hasattr(train_loader, "batch_size") else train_loader.loader.batch_size),
            "train_transform": _transform(getattr(train_loader, "loader", train_loader)),
            "val_transform": _transform(getattr(val_loader, "loader", val_loader)),
            "optimizer": _optimizer(optimizer),
            "scheduler": type(scheduler).__name__,
            "loss": {"type": type(loss).__name__, "smoothing": getattr(loss, "smoothing", None)},
        },
        "runtime": runtime(
            device,
            amp=amp,
            train_workers=getattr(train_loader, "num_workers", 0),
            val_workers=getattr(val_loader, "num_workers", 0),
            validation="every epoch",
            saving=saving,
        ),
    }


def transformers_settings(*, training_args, model, train_dataloader, eval_dataloader, train_transform: str, val_transform: str, saving: str) -> dict[str, Any]:
    """A transformers Trainer run: its TrainingArguments as resolved (to_dict) and the model."""
    args = without_paths(training_args.to_dict())
    return {
        "framework": "transformers",
        "cpu_budget": cpu_budget(),
        "args": {
            **args,
            "model": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_transform": train_transform,
            "val_transform": val_transform,
        },
        "runtime": runtime(
            training_args.device,
            amp="bf16" if training_args.bf16 else "fp16" if training_args.fp16 else False,
            train_workers=train_dataloader.num_workers,
            val_workers=eval_dataloader.num_workers,
            validation=str(_plain(training_args.eval_strategy)),
            saving=saving,
        ),
    }
