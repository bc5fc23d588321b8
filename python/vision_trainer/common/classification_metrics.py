"""Validation metrics of a classifier, in the platform's shape, from its logits on the val split.

Shared by the timm and transformers trainers (and usable by test runs): accuracy (the primary
metric), top-5 accuracy when there are at least 5 classes, macro precision/recall/f1 over the
classes present in the split, per-class rows and the confusion matrix (rows = true class).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, class_names: Sequence[str], loss: float | None = None) -> dict[str, Any]:
    """{"metrics": {...}, "per_class_metrics": [...], "confusion_matrix": [[...]]}.

    Per-class precision is None for a class never predicted and recall/f1 None for a class
    absent from the split: "undefined" must not read as 0. Macro averages skip absent classes.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    num_classes = len(class_names)
    y_true = targets.detach().cpu().numpy().astype(int)
    scores = logits.detach().float().cpu()
    y_pred = scores.argmax(dim=1).numpy().astype(int)
    labels = list(range(num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero_division=nan already marks the undefined values
        precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=np.nan)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)

    present = support > 0
    metrics: dict[str, Any] = {
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else None,
        "precision": _nanmean(precision[present]),
        "recall": _nanmean(recall[present]),
        "f1": _nanmean(f1[present]),
    }
    if num_classes >= 5 and len(y_true):
        top5 = scores.topk(5, dim=1).indices.numpy()
        metrics["top5_accuracy"] = float((top5 == y_true[:, None]).any(axis=1).mean())
    if loss is not None:
        metrics["loss"] = float(loss)

    per_class = [
        {
            "class_id": i,
            "class_name": str(name),
            "precision": _finite(precision[i]),
            "recall": _finite(recall[i]) if present[i] else None,
            "f1": _finite(f1[i]) if present[i] else None,
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]
    return {"metrics": metrics, "per_class_metrics": per_class, "confusion_matrix": matrix.astype(int).tolist()}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None
