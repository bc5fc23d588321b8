"""The native side of bench/bridge.ts for transformers: a `transformers.Trainer` run written by
hand, doing the work a vision-trainer transformers job does (a ViT built from its configuration,
random-resized crop 0.5-1 and flip to train, a plain resize to validate, AdamW with cosine
decay, one evaluation per epoch, a checkpoint with the optimizer state every epoch and a copy
as best.pt when accuracy improves). Reports its resolved settings and one line per epoch.

    python bench/native_hf.py MANIFEST_ROOT OUT_DIR EPOCHS BATCH IMGSZ WORKERS CONFIG_JSON [DEVICE]

On CUDA, as vision-trainer does: bf16 where the GPU has it, else fp16.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from native_common import emit, run_settings
from PIL import Image
from torchvision import transforms as T
from transformers import Trainer, TrainerCallback, TrainingArguments, ViTConfig, ViTForImageClassification, set_seed
from transformers.trainer_callback import PrinterCallback

root, out = Path(sys.argv[1]), Path(sys.argv[2])
epochs, batch, imgsz, workers = (int(v) for v in sys.argv[3:7])
overrides = json.loads(sys.argv[7])
cuda = (sys.argv[8] if len(sys.argv) > 8 else "cpu").startswith("cuda")
bf16 = cuda and torch.cuda.is_bf16_supported()
set_seed(42)


class Manifest(torch.utils.data.Dataset):
    def __init__(self, path: Path, transform):
        self.rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        self.transform = transform

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        with Image.open(self.rows[i]["image"]) as image:
            return {"pixel_values": self.transform(image.convert("RGB")), "labels": int(self.rows[i]["label"])}


id2label = json.loads((root / "labels.json").read_text())
names = [str(id2label[k]) for k in sorted(id2label, key=int)]
normalise = [T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)]
train_tf = T.Compose([T.RandomResizedCrop(imgsz, scale=(0.5, 1.0), interpolation=T.InterpolationMode.BILINEAR), T.RandomHorizontalFlip(), *normalise])
val_tf = T.Compose([T.Resize((imgsz, imgsz), interpolation=T.InterpolationMode.BILINEAR), *normalise])
train_set, val_set = Manifest(root / "train.jsonl", train_tf), Manifest(root / "val.jsonl", val_tf)

config = ViTConfig(**overrides)
config.image_size = imgsz
config.num_labels, config.id2label, config.label2id = len(names), dict(enumerate(names)), {n: i for i, n in enumerate(names)}
model = ViTForImageClassification(config)
weights = out / "weights"
weights.mkdir(parents=True, exist_ok=True)
args = TrainingArguments(
    output_dir=str(out / "hf"),
    num_train_epochs=epochs,
    per_device_train_batch_size=batch,
    per_device_eval_batch_size=batch,
    learning_rate=3e-4,
    weight_decay=0.05,
    lr_scheduler_type="cosine",
    # The job's default warm-up: the first 10% of the steps (a float is a ratio in transformers).
    warmup_steps=0.1,
    eval_strategy="epoch",
    save_strategy="no",
    logging_strategy="no",
    report_to="none",
    disable_tqdm=True,
    remove_unused_columns=False,
    label_names=["labels"],
    dataloader_num_workers=workers,
    use_cpu=not cuda,
    bf16=bf16,
    fp16=cuda and not bf16,
    seed=42,
)


def collate(rows):
    return {"pixel_values": torch.stack([r["pixel_values"] for r in rows]), "labels": torch.tensor([r["labels"] for r in rows])}


def accuracy(eval_pred):
    return {"accuracy": float((np.argmax(eval_pred.predictions, axis=1) == eval_pred.label_ids).mean())}


class Report(TrainerCallback):
    best = None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        emit(
            "settings",
            settings=run_settings().transformers_settings(
                training_args=args,
                model=model,
                train_dataloader=train_dataloader,
                eval_dataloader=trainer.get_eval_dataloader(),
                train_transform=str(train_tf),
                val_transform=str(val_tf),
                saving="last.pt (weights, optimizer) every epoch, best.pt when it improves",
            ),
        )
        emit("epoch_start", epoch=1)

    def on_evaluate(self, args, state, control, metrics=None, optimizer=None, **kwargs):
        torch.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": round(state.epoch)}, weights / "last.pt")
        if self.best is None or metrics["eval_accuracy"] > self.best:
            self.best = metrics["eval_accuracy"]
            shutil.copyfile(weights / "last.pt", weights / "best.pt")
        emit("epoch_end", epoch=round(state.epoch))


trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set, data_collator=collate, compute_metrics=accuracy)
trainer.remove_callback(PrinterCallback)
trainer.add_callback(Report())
trainer.train()
