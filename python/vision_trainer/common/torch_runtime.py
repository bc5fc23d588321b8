"""What the loop-based trainers (timm, transformers) share about running torch: the device a
DEVICE setting means, mixed precision, seeding, the training crop range and the job's log file."""

from __future__ import annotations

import contextlib
import logging
import os
import random

import numpy as np
import torch

log = logging.getLogger("vision_trainer")

# Random-resized-crop area range of the training augmentation. timm's ImageNet default (0.08, 1)
# suits hundreds of epochs on large images; on a small dataset trained for tens of epochs it
# crops away what there is to learn (resnet18 on the demo's digits: 30% accuracy after 10
# epochs, 61% with this range).
TRAIN_CROP_SCALE = (0.5, 1.0)


def resolve_device(spec: str | None) -> torch.device:
    """DEVICE: auto, cpu, mps, cuda, cuda:N, or GPU indices ("0", "0,1": these trainers use the first)."""
    spec = (spec or "auto").strip()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec[0].isdigit():
        indices = spec.split(",")
        if len(indices) > 1:
            log.warning("DEVICE=%s: this trainer uses one GPU; training on cuda:%s", spec, indices[0])
        spec = f"cuda:{indices[0]}"
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"DEVICE={spec} asks for a GPU, but torch sees none (set DEVICE=cpu or auto)")
    return device


def autocast(device: torch.device):
    """Mixed precision on CUDA only (as timm's train.py); bfloat16 where the GPU has it, which
    needs no loss scaling."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=amp_dtype(device))


def amp_dtype(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_run(seed: int | None, *, default: int) -> None:
    """SEED: every generator seeded and deterministic algorithms switched on (cuDNN without
    autotuning, cuBLAS with a fixed workspace: set before the first CUDA call creates its handle).
    Ops without a deterministic kernel warn rather than fail, as timm's train.py leaves them.
    Without SEED: the trainer's fixed seed, and torch's fastest kernels."""
    if seed is None:
        seed_everything(default)
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    seed_everything(int(seed))
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    log.info("SEED=%d: generators seeded, deterministic algorithms on", int(seed))


def attach_log_file(log_file: str | None, logger_names: tuple[str, ...]) -> None:
    """The framework's log lines also go to the job's training.log (uploaded with the run)."""
    if not log_file:
        return
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s PY    %(name)s %(message)s"))
    for name in logger_names:
        logging.getLogger(name).addHandler(handler)
    # Ours at INFO; the frameworks keep their own levels (transformers at INFO is a flood).
    log.setLevel(logging.INFO)
