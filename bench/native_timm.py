"""The native side of bench/bridge.ts for timm: the training loop of timm's own train.py, written
by hand with timm's building blocks, doing the work a vision-trainer timm job does (the recipe
of python/vision_trainer/timm/train.py: AdamW, cosine schedule with warmup, label smoothing,
random-resized crop 0.5-1, validation and a checkpoint with the optimizer state every epoch, a
copy as best.pt when accuracy improves). Reports its resolved settings and one line per epoch.

    python bench/native_timm.py IMAGEFOLDER_ROOT OUT_DIR EPOCHS BATCH IMGSZ WORKERS [DEVICE]

On CUDA, as vision-trainer (and timm's train.py) does: timm's prefetcher with pinned memory,
autocast in bfloat16 where the GPU has it (else float16 with loss scaling).
"""

import contextlib
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from native_common import emit, run_settings
from timm.data import ImageDataset, create_loader, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import NativeScaler

root, out = Path(sys.argv[1]), Path(sys.argv[2])
epochs, batch, imgsz, workers = (int(v) for v in sys.argv[3:7])
LR = 1e-3

random.seed(42)
np.random.seed(42)
torch.manual_seed(42)
device = torch.device(sys.argv[7] if len(sys.argv) > 7 else "cpu")
cuda = device.type == "cuda"
amp = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
scaler = NativeScaler(device="cuda") if amp == torch.float16 else None


def autocast():
    return torch.autocast("cuda", dtype=amp) if amp else contextlib.nullcontext()


class_map = str(root / "classes.txt")
train_set = ImageDataset(str(root / "train"), class_map=class_map)
val_set = ImageDataset(str(root / "val"), class_map=class_map)
model = timm.create_model("resnet18", pretrained=False, num_classes=len((root / "classes.txt").read_text().splitlines())).to(device)
cfg = resolve_data_config({"input_size": (3, imgsz, imgsz)}, model=model)
loader_args = dict(
    input_size=cfg["input_size"],
    batch_size=batch,
    interpolation=cfg["interpolation"],
    mean=cfg["mean"],
    std=cfg["std"],
    num_workers=workers,
    pin_memory=cuda,
    use_prefetcher=cuda,
    device=device,
    persistent_workers=False,
)
train_loader = create_loader(train_set, is_training=True, scale=(0.5, 1.0), **loader_args)
val_loader = create_loader(val_set, is_training=False, crop_pct=cfg["crop_pct"], **loader_args)
optimizer = create_optimizer_v2(model, opt="adamw", lr=LR, weight_decay=0.05)
scheduler, _ = create_scheduler_v2(
    optimizer, sched="cosine", num_epochs=epochs, warmup_epochs=min(5, epochs // 10), warmup_lr=LR * 0.01, min_lr=LR * 0.01, updates_per_epoch=len(train_loader)
)
train_loss = LabelSmoothingCrossEntropy(smoothing=0.1)
val_loss = torch.nn.CrossEntropyLoss()
weights = out / "weights"
weights.mkdir(parents=True, exist_ok=True)

emit(
    "settings",
    settings=run_settings().timm_settings(
        model_name="resnet18",
        model=model,
        train_loader=train_loader,
        val_loader=val_loader,
        optimizer=optimizer,
        scheduler=scheduler,
        loss=train_loss,
        amp=amp,
        epochs=epochs,
        device=device,
        saving="last.pt (weights, optimizer) every epoch, best.pt when it improves",
    ),
)
emit("epoch_start", epoch=1)
best, updates = None, 0
for epoch in range(epochs):
    model.train()
    for images, targets in train_loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast():
            loss = train_loss(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler(loss, optimizer, parameters=model.parameters())
        else:
            loss.backward()
            optimizer.step()
        updates += 1
        scheduler.step_update(num_updates=updates)
        float(loss.detach())
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, targets in val_loader:
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with autocast():
                logits = model(images).float()
            float(val_loss(logits, targets))
            correct += int((logits.argmax(1) == targets).sum())
            total += len(targets)
    accuracy = correct / total
    scheduler.step(epoch + 1, accuracy)
    torch.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1}, weights / "last.pt")
    if best is None or accuracy > best:
        best = accuracy
        shutil.copyfile(weights / "last.pt", weights / "best.pt")
    emit("epoch_end", epoch=epoch + 1)
