"""What a reduced precision (INFERENCE_PRECISION=bf16) changed, measured on the job's own images.

bfloat16 keeps 8 bits of mantissa, so scores move in the third digit and a prediction near a tie
or a threshold can change. How much depends on the model and the images, so the job does not
assume it: its first batch is predicted a second time by the PyTorch model in float32, and the
two are compared as the job reports them (the top-5 classes of a classifier, the boxes above
CONFIDENCE_THRESHOLD of a detector). results.json's `model.inference_backend.precision_check`.
"""

from __future__ import annotations

import numpy as np

from ..protocol import PrecisionCheck

# A box has its twin when the reference has one of the same class overlapping it this much.
TWIN_IOU = 0.9


def compare(reference: list[dict], got: list[dict]) -> PrecisionCheck:
    """`reference` and `got`: the same images' reported predictions (the backend's `describe`),
    float32 first. Classifiers agree on an image whose top-1 class is the same; detectors on
    each pair of twin boxes, out of the larger of the two box counts."""
    if reference and "boxes" in reference[0]:
        return _boxes(reference, got)
    return _classes(reference, got)


def _classes(reference: list[dict], got: list[dict]) -> PrecisionCheck:
    same = sum(1 for r, g in zip(reference, got, strict=True) if r["class_id"] == g["class_id"])
    differences = [
        abs(g_class["confidence"] - r_class["confidence"])
        for r, g in zip(reference, got, strict=True)
        for g_class in g["top5"]
        for r_class in r["top5"]
        if r_class["class_id"] == g_class["class_id"]
    ]
    return {
        "against": "pytorch float32",
        "images": len(reference),
        "compared": "top-1 class",
        "agreement": same / len(reference) if reference else None,
        "max_score_difference": max(differences) if differences else None,
    }


def _iou(a: list[float], b: list[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _boxes(reference: list[dict], got: list[dict]) -> PrecisionCheck:
    twins = 0
    boxes = 0
    differences: list[float] = []
    for r, g in zip(reference, got, strict=True):
        left = list(g["boxes"])
        for box in r["boxes"]:
            twin = max(
                (b for b in left if b["class_id"] == box["class_id"] and _iou(b["bbox"], box["bbox"]) >= TWIN_IOU),
                key=lambda b: _iou(b["bbox"], box["bbox"]),
                default=None,
            )
            if twin is not None:
                left.remove(twin)
                twins += 1
                differences.append(abs(twin["confidence"] - box["confidence"]))
        boxes += max(len(r["boxes"]), len(g["boxes"]))
    return {
        "against": "pytorch float32",
        "images": len(reference),
        "compared": f"boxes above CONFIDENCE_THRESHOLD (same class, IoU >= {TWIN_IOU})",
        # No box on either side: nothing could differ.
        "agreement": twins / boxes if boxes else 1.0,
        "max_score_difference": float(np.max(differences)) if differences else None,
    }
