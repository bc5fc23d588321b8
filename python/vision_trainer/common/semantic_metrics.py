"""Semantic segmentation: masks in and out, and the metrics of a predicted class map.

A mask is an indexed PNG whose pixel values are the dataset's class ids (the Platform Format's
`annotation.mask_file`; COCO-stuff label maps are the same thing). A pixel whose value is not one
of the dataset's class ids (255, COCO-stuff's and ADE20K's "unlabelled", or any other) is ignored
by training and by every metric. Models work in class indices (common/class_ids.py); `MaskCodec`
is the one translation between the two for masks, as `ClassIds` is for everything else.

Metrics come from one confusion matrix over the labelled pixels (rows: true class, columns:
predicted), as mmsegmentation computes them: per class IoU = TP / (TP + FP + FN), undefined
(None) for a class that is neither in the ground truth nor predicted; mIoU is the mean of the
defined ones; pixel accuracy is TP summed over the labelled pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# The index of an ignored pixel in an index mask: the default `semantic_loss_ignore_index` of
# transformers' segmentation models, so their own loss skips these pixels.
IGNORE_INDEX = 255


class MaskCodec:
    """Dataset class ids <-> model class indices, for whole masks (lookup tables, not loops)."""

    def __init__(self, class_ids: Sequence[int]):
        self.ids = [int(i) for i in class_ids]
        if len(self.ids) > IGNORE_INDEX:
            raise ValueError(f"semantic segmentation supports at most {IGNORE_INDEX} classes, the dataset has {len(self.ids)}")
        top = max([*self.ids, 255]) + 1
        self.to_index_table = np.full(top, IGNORE_INDEX, dtype=np.uint8)
        for index, cid in enumerate(self.ids):
            self.to_index_table[cid] = index
        self.to_id_table = np.zeros(256, dtype=np.int64)
        self.to_id_table[: len(self.ids)] = self.ids

    def to_indices(self, mask: np.ndarray) -> np.ndarray:
        """A mask of dataset ids -> class indices, IGNORE_INDEX where the value is no class id."""
        mask = np.asarray(mask).astype(np.int64)
        out = np.full(mask.shape, IGNORE_INDEX, dtype=np.uint8)
        inside = (mask >= 0) & (mask < len(self.to_index_table))
        out[inside] = self.to_index_table[mask[inside]]
        return out

    def to_ids(self, indices: np.ndarray) -> np.ndarray:
        """A predicted index map -> dataset ids (the values an indexed PNG of the prediction holds)."""
        return self.to_id_table[np.asarray(indices).astype(np.int64)]


def read_mask(path: str) -> np.ndarray:
    """The pixel values of an indexed (palette) or greyscale PNG: the class ids, not colours."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode in ("P", "L", "I", "I;16"):
            return np.asarray(image).astype(np.int64)
        raise ValueError(f"mask {path} is a {image.mode} image; a semantic mask is an indexed (palette) or single-channel PNG whose values are class ids")


def confusion(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """[num_classes, num_classes] pixel counts (rows true, columns predicted) over labelled pixels."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    target = np.asarray(target).reshape(-1).astype(np.int64)
    keep = target < num_classes
    return np.bincount(target[keep] * num_classes + pred[keep], minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else None


def metrics_from_confusion(matrix: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """{"metrics": {mIoU, pixel_accuracy, mean_accuracy}, "per_class_metrics": rows by class index}."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    gt = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    union = gt + predicted - tp
    rows = []
    for i, name in enumerate(class_names):
        rows.append(
            {
                "class_id": i,
                "class_name": str(name),
                "iou": _ratio(tp[i], union[i]),
                # the share of the class's pixels found (recall), mmsegmentation's "Acc"
                "accuracy": _ratio(tp[i], gt[i]),
                "precision": _ratio(tp[i], predicted[i]),
                "recall": _ratio(tp[i], gt[i]),
                # The design's per-class `ap` belongs to scored detections; a class map has no
                # ranking to average precision over, so it is null (present, undefined).
                "ap": None,
                "support": int(gt[i]),
                "predicted_pixels": int(predicted[i]),
            }
        )
    ious = [r["iou"] for r in rows if r["iou"] is not None]
    accuracies = [r["accuracy"] for r in rows if r["accuracy"] is not None]
    precisions = [r["precision"] for r in rows if r["precision"] is not None]
    labelled = float(matrix.sum())
    metrics = {
        "mIoU": float(np.mean(ious)) if ious else None,
        "pixel_accuracy": _ratio(float(tp.sum()), labelled),
        "mean_accuracy": float(np.mean(accuracies)) if accuracies else None,
        # Macro averages over the classes where each is defined (the design's validation names them).
        "precision": float(np.mean(precisions)) if precisions else None,
        "recall": float(np.mean(accuracies)) if accuracies else None,
    }
    return {"metrics": metrics, "per_class_metrics": rows}


def image_summary(pred: np.ndarray, target: np.ndarray | None, class_ids) -> dict[str, Any]:
    """One image in results.json's vocabulary: the classes predicted (share of the image), the
    classes in the ground truth, and the image's own pixel accuracy and mIoU. `class_ids` is a
    ClassIds (indices -> dataset ids and names)."""
    num_classes = len(class_ids)
    total = max(1, int(np.asarray(pred).size))
    counts = np.bincount(np.asarray(pred).reshape(-1).astype(np.int64), minlength=num_classes)
    predictions = {
        "classes": [
            {"class_id": class_ids.of(i), "class_name": class_ids.name(i), "pixel_fraction": float(counts[i] / total)}
            for i in sorted(range(num_classes), key=lambda i: class_ids.of(i))
            if counts[i] > 0
        ]
    }
    if target is None:
        return {"predictions": predictions, "ground_truth": None, "metrics": None}
    labelled_mask = np.asarray(target) < num_classes
    labelled = max(1, int(labelled_mask.sum()))
    gt_counts = np.bincount(np.asarray(target)[labelled_mask].reshape(-1).astype(np.int64), minlength=num_classes)
    ground_truth = {
        "classes": [
            {"class_id": class_ids.of(i), "class_name": class_ids.name(i), "pixel_fraction": float(gt_counts[i] / labelled)}
            for i in sorted(range(num_classes), key=lambda i: class_ids.of(i))
            if gt_counts[i] > 0
        ]
    }
    summary = metrics_from_confusion(confusion(pred, target, num_classes), class_ids.names)
    metrics = {
        "pixel_accuracy": summary["metrics"]["pixel_accuracy"],
        "mean_iou": summary["metrics"]["mIoU"],
        "class_iou": [
            {"class_id": class_ids.of(r["class_id"]), "class_name": r["class_name"], "iou": r["iou"]}
            for r in sorted(summary["per_class_metrics"], key=lambda r: class_ids.of(r["class_id"]))
            if r["iou"] is not None
        ],
    }
    return {"predictions": predictions, "ground_truth": ground_truth, "metrics": metrics}
