"""ultralytics' metrics in the platform's terms: metric names, per-class rows, PR curves and the
confusion matrix, read from an ultralytics validator. The ultralytics trainer reports each epoch's
validation with them; the test-run evaluator (infer_metrics.py) scores detections with the same
code, so a test run and training validation agree."""

from __future__ import annotations

from typing import Any

import numpy as np

PR_CURVE_POINTS = 101

# Which ultralytics metric suffix holds a task's primary metrics, and how to name the others.
TASK_METRIC_SUFFIX = {"detect": "B", "segment": "M", "pose": "P"}
# ultralytics' task words by platform task; the inference session speaks them for every framework.
TASK_BY_PLATFORM = {
    "object_detection": "detect",
    "instance_segmentation": "segment",
    "pose_estimation": "pose",
    "image_classification": "classify",
}


def standard_metrics(raw: dict, task: str) -> dict:
    """ultralytics keys (metrics/mAP50-95(B), val/box_loss) -> the platform's names."""
    out: dict[str, Any] = {}
    primary_suffix = TASK_METRIC_SUFFIX.get(task)
    val_loss = 0.0
    has_val_loss = False
    for key, value in raw.items():
        if key.startswith("metrics/"):
            name = key[len("metrics/") :]
            if name == "accuracy_top1":
                out["accuracy"] = value
                continue
            if name == "accuracy_top5":
                out["top5_accuracy"] = value
                continue
            if name.endswith(")") and "(" in name:
                base, suffix = name[:-1].split("(")
                out[base if suffix == primary_suffix else f"{ {'B': 'box', 'M': 'mask', 'P': 'pose'}.get(suffix, suffix) }_{base}"] = value
            else:
                out[name] = value
        elif key.startswith("val/"):
            out[f"val_{key[4:]}"] = value
            if value is not None:
                val_loss += float(value)
                has_val_loss = True
    if has_val_loss:
        out["loss"] = val_loss
    return out


def downsample(xs, ys) -> tuple[list, list]:
    idx = np.linspace(0, len(xs) - 1, min(PR_CURVE_POINTS, len(xs))).round().astype(int)
    return [float(xs[i]) for i in idx], [float(ys[i]) for i in idx]


def detection_details(validator, task: str, names: dict) -> dict:
    metrics = validator.metrics
    part = {"detect": metrics.box, "segment": getattr(metrics, "seg", None), "pose": getattr(metrics, "pose", None)}[task]
    support = getattr(metrics, "nt_per_class", None)
    index = [int(i) for i in getattr(part, "ap_class_index", [])]
    per_class = []
    for class_id, class_name in names.items():
        n = int(support[class_id]) if support is not None and class_id < len(support) else 0
        row = {"class_id": int(class_id), "class_name": str(class_name), "precision": None, "recall": None, "ap": None, "ap50": None, "support": n}
        if class_id in index:
            i = index.index(class_id)
            row.update(precision=part.p[i], recall=part.r[i], ap=part.ap[i], ap50=part.ap50[i])
        per_class.append(row)
    pr_curves = {}
    px, prec_values = part.px, part.prec_values
    for i, class_id in enumerate(index):
        if i < len(prec_values):
            recall, precision = downsample(px, prec_values[i])
            pr_curves[str(names.get(class_id, class_id))] = {"precision": precision, "recall": recall}
    return {"per_class_metrics": per_class, "pr_curves": pr_curves}


def classification_details(validator, names: dict) -> dict:
    # ultralytics counts matrix[predicted][true]; the platform reads rows as the true class.
    matrix = np.asarray(validator.confusion_matrix.matrix)[: len(names), : len(names)].T
    per_class = []
    for class_id, class_name in names.items():
        tp = float(matrix[class_id, class_id])
        actual = float(matrix[class_id].sum())
        predicted = float(matrix[:, class_id].sum())
        precision = tp / predicted if predicted else None
        recall = tp / actual if actual else None
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if actual else None)
        per_class.append(
            {"class_id": int(class_id), "class_name": str(class_name), "precision": precision, "recall": recall, "f1": f1, "ap": None, "support": int(actual)}
        )
    return {"per_class_metrics": per_class, "confusion_matrix": matrix.astype(int).tolist()}


def macro(per_class: list, key: str):
    values = [row[key] for row in per_class if row.get(key) is not None and row.get("support", 0) > 0]
    return float(np.mean(values)) if values else None
