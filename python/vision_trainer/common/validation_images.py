"""Per-image validation results: what each trainer's validation saw, image by image, in the
vocabulary of results.json, written to `images.json` while validation runs (TypeScript uploads it
to validation-results/job-{JOB_ID}/epoch-{N}/images.json and sends its URI as the validation
callback's `image_results_path`). Plus the two figures every validation reports beside its
metrics: `inference_speed_fps` and `model_size_mb`, and per-class average precision of a
classifier from its scores.

The file holds at most the val split (one entry per validated image), written entry by entry,
so its cost is bounded by the split, not by the run. Its shape is ValidationImagesSchema in
src/jobs/train/validation-results.ts (docs/schemas/images.schema.json):

    {"job_id", "epoch", "task_type", "generated_at", "class_ids", "confidence_threshold",
     "results": [{"image_id", "image_path", "file_name", "width", "height",
                  "predictions", "ground_truth", "metrics"}, ...],
     "num_images"}
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..support import plain
from .class_ids import ClassIds

# Detections listed per image (and judged right or wrong) from this confidence up: the
# inference default (CONFIDENCE_THRESHOLD), not the validator's 0.001 that mAP needs.
REPORT_CONFIDENCE = 0.25


def one_vs_rest_ap(scores: np.ndarray, targets: np.ndarray, num_classes: int) -> list[float | None]:
    """Average precision of each class against the rest, from the model's scores (scikit-learn);
    None for a class with no image in the split (its AP is undefined)."""
    from sklearn.metrics import average_precision_score

    scores = np.asarray(scores, dtype=np.float64).reshape(len(targets), -1)
    targets = np.asarray(targets).reshape(-1)
    out: list[float | None] = []
    for c in range(num_classes):
        positives = targets == c
        if not positives.any() or scores.shape[0] == 0:
            out.append(None)
            continue
        value = float(average_precision_score(positives.astype(int), scores[:, c]))
        out.append(value if math.isfinite(value) else None)
    return out


def model_size_mb(module) -> float:
    """The model's weights and buffers in MiB, at the precision it trains in."""
    tensors = module.state_dict().values()
    return round(sum(t.numel() * t.element_size() for t in tensors) / 1024**2, 3)


class ValImages:
    """The val split's images by the path the framework reads them from (val_images.jsonl,
    written by the TypeScript converter), so each result names its dataset image."""

    def __init__(self, index_file: str | None):
        self.by_path: dict[str, dict[str, Any]] = {}
        if not index_file or not Path(index_file).is_file():
            return
        for line in Path(index_file).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            for key in (row["path"], row.get("source")):
                if key:
                    self.by_path[os.path.abspath(key)] = row
                    self.by_path.setdefault(os.path.realpath(key), row)

    def lookup(self, path: str) -> dict[str, Any]:
        row = self.by_path.get(os.path.abspath(path)) or self.by_path.get(os.path.realpath(path))
        if row is None:
            name = os.path.basename(path)
            return {"image_id": name, "file_name": name}
        return row


class ImagesJson:
    """images.json written as results arrive: the header, then one entry per image."""

    def __init__(self, path: str | os.PathLike, header: dict[str, Any]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.part")
        self._file = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        head = json.dumps(plain({**header, "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}), allow_nan=False)
        self._file.write(head[:-1] + ', "results": [')
        self.count = 0

    def add(self, entry: dict[str, Any]) -> None:
        self._file.write(("\n  " if self.count == 0 else ",\n  ") + json.dumps(plain(entry), allow_nan=False))
        self.count += 1

    def close(self) -> str:
        self._file.write(f'\n], "num_images": {self.count}}}\n')
        self._file.close()
        os.replace(self._tmp, self.path)
        return str(self.path)

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class ValidationImages:
    """Where a trainer's per-image results go: one images.json per validated epoch under the
    run's folder, entries named by the dataset (ValImages) with dataset class ids (ClassIds)."""

    def __init__(self, params, class_ids: ClassIds):
        self.job_id = params.get("job_id")
        self.task_type = params["task_type"]
        self.class_ids = class_ids
        self.images = ValImages(params.get("val_images"))
        self.dir = Path(params["project"]) / "validation"

    def open(self, epoch: int) -> ImagesJson:
        header = {
            "job_id": self.job_id,
            "epoch": int(epoch),
            "task_type": self.task_type,
            "class_ids": self.class_ids.ids,
            "class_names": self.class_ids.names,
            "confidence_threshold": REPORT_CONFIDENCE,
        }
        return ImagesJson(self.dir / f"epoch-{int(epoch)}" / "images.json", header)

    def named(self, path: str, width: int | None, height: int | None) -> dict[str, Any]:
        row = self.images.lookup(path)
        return {"image_id": str(row["image_id"]), "image_path": row["file_name"], "file_name": row["file_name"], "width": width, "height": height}

    def classification_entry(self, path: str, probabilities: Sequence[float], target: int, size: tuple[int, int] | None = None) -> dict[str, Any]:
        """One classified image: its top classes, its true class, and whether it was right."""
        ids = self.class_ids
        probs = np.asarray(probabilities, dtype=np.float64)
        ranked = [int(i) for i in np.argsort(-probs, kind="stable")[: min(5, len(probs))]]
        top5 = [{"class_id": ids.of(c), "class_name": ids.name(c), "confidence": _score(probs[c])} for c in ranked]
        width, height = size if size else (None, None)
        return {
            **self.named(path, width, height),
            "predictions": {**top5[0], "top5": top5},
            "ground_truth": {"class_id": ids.of(target), "class_name": ids.name(target)},
            "metrics": {"correct": ranked[0] == int(target), "top5_correct": int(target) in ranked},
        }


def _score(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


class _ValidationPass:
    """What every validation pass shares: its images.json writer, and the images and seconds
    spent in the model that make the speed figure."""

    def __init__(self, output: ValidationImages | None, epoch: int):
        self.output = output
        self.writer = output.open(epoch) if output is not None else None
        self.model_seconds = 0.0
        self.images = 0

    def timed(self):
        """A context manager around the model's forward pass."""
        return _Timer(self)

    def _finish(self, details: dict[str, Any]) -> str | None:
        if self.model_seconds > 0 and self.images:
            details["metrics"]["inference_speed_fps"] = self.images / self.model_seconds
        return self.writer.close() if self.writer is not None else None

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.discard()


class ClassifierValidation(_ValidationPass):
    """What a classifier's validation pass collects: per image its path and softmax scores, and
    the time spent in the model. Turned into images.json, per-class AP and the speed figure."""

    def __init__(self, output: ValidationImages | None, epoch: int):
        super().__init__(output, epoch)
        self.scores: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def add(self, paths: Sequence[str], logits, targets, *, probabilities: bool = False) -> None:
        """`logits` of a batch (or its softmax already, with probabilities=True), `targets` the true indices."""
        import torch

        scores = torch.as_tensor(logits).float()
        probs = (scores if probabilities else torch.softmax(scores, dim=1)).cpu().numpy()
        target = np.asarray(torch.as_tensor(targets).cpu()).reshape(-1).astype(int)
        self.scores.append(probs)
        self.targets.append(target)
        self.images += len(target)
        if self.writer is not None:
            for path, row, t in zip(paths, probs, target, strict=True):
                self.writer.add(self.output.classification_entry(path, row, int(t)))

    def finish(self, details: dict[str, Any], num_classes: int) -> str | None:
        """Adds per-class AP and inference_speed_fps to classification_metrics' `details`
        (rows still by framework index); returns the finished images.json."""
        if self.scores:
            ap = one_vs_rest_ap(np.concatenate(self.scores), np.concatenate(self.targets), num_classes)
            for row in details["per_class_metrics"]:
                row["ap"] = ap[int(row["class_id"])]
        return self._finish(details)


class _Timer:
    def __init__(self, owner: _ValidationPass):
        self.owner = owner

    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()  # CUDA runs asynchronously: the time is the work's once it is done
        self.owner.model_seconds += time.perf_counter() - self.started
        return False


class SemanticValidation(_ValidationPass):
    """What a semantic segmentation validation pass collects: one confusion matrix over every
    labelled pixel (the epoch's metrics) and, per image, its predicted classes, true classes,
    pixel accuracy and IoUs for images.json. Same interface as ClassifierValidation."""

    def __init__(self, output: ValidationImages | None, epoch: int, num_classes: int):
        super().__init__(output, epoch)
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, paths: Sequence[str], predicted, targets) -> None:
        """`predicted` [B, H, W] class indices, `targets` [B, H, W] indices (IGNORE_INDEX unlabelled)."""
        from .semantic_metrics import confusion, image_summary

        for path, pred, target in zip(paths, np.asarray(predicted), np.asarray(targets), strict=True):
            self.matrix += confusion(pred, target, self.num_classes)
            self.images += 1
            if self.writer is not None:
                entry = image_summary(pred, target, self.output.class_ids)
                self.writer.add({**self.output.named(path, None, None), **entry})

    def finish(self, details: dict[str, Any], num_classes: int) -> str | None:
        return self._finish(details)
