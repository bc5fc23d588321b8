"""Test-run metrics, computed by the frameworks' own validated code.

Detection, segmentation and pose go through ultralytics' validators exactly as `model.val()` does:
`DetectionValidator._process_batch` (box IoU), `SegmentationValidator._process_batch` (mask IoU) and
`PoseValidator._process_batch` (keypoint OKS) build the true-positive matrix at the ten IoU thresholds
0.50:0.95, `DetMetrics`/`SegmentMetrics`/`PoseMetrics` turn it into AP per class (`ap_per_class`, COCO
101-point interpolation) and `ConfusionMatrix.process_batch` counts matches, confusions, misses and
false positives. Classification uses scikit-learn. Nothing here computes an AP by hand.

Predictions for mAP are all detections down to a very low confidence (as the validators use);
what a user sees (reported boxes, the confusion matrix, each image's matched / missed / wrong lists)
is cut at CONFIDENCE_THRESHOLD.

Inputs are plain lists (image coordinates in pixels, top-left origin, boxes as x1, y1, x2, y2) so the
same evaluator serves every framework and the metric tests can feed it constructed cases.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .validation_images import one_vs_rest_ap
from .yolo_metrics import detection_details, macro, standard_metrics

# ultralytics' ConfusionMatrix default: a matching threshold of its own, not the NMS IoU.
MATCH_IOU_THRESHOLD = 0.45
# Longest side of the raster on which masks are compared (ultralytics compares at model resolution).
MASK_EVAL_MAX_SIDE = 640

DETECTION_TASKS = ("detect", "segment", "pose")


def _as_array(values, shape_tail: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    arr = np.asarray(values if values is not None else [], dtype=dtype)
    return arr.reshape((-1, *shape_tail)) if arr.size or shape_tail else arr.reshape(-1)


def _mask_scale(width: int, height: int) -> float:
    return min(1.0, MASK_EVAL_MAX_SIDE / max(width, height, 1))


def rasterize_polygons(objects: list[list[list[float]]], width: int, height: int) -> np.ndarray:
    """One binary mask per object from its flat [x1, y1, x2, y2, ...] polygons, at the evaluation scale."""
    import cv2

    scale = _mask_scale(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    masks = np.zeros((len(objects), h, w), dtype=np.uint8)
    for i, polygons in enumerate(objects):
        for poly in polygons or []:
            pts = np.asarray(poly, dtype=np.float32).reshape(-1, 2) * scale
            if len(pts) >= 3:
                cv2.fillPoly(masks[i], [np.round(pts).astype(np.int32)], 1)
    return masks


def resize_masks(masks: np.ndarray, width: int, height: int) -> np.ndarray:
    """Predicted masks already in original-image pixels, brought to the evaluation scale."""
    import cv2

    scale = _mask_scale(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    if masks.shape[0] == 0:
        return np.zeros((0, h, w), dtype=np.uint8)
    if masks.shape[1:] == (h, w):
        return (masks > 0.5).astype(np.uint8)
    return np.stack([(cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.uint8) for m in masks])


def match_objects(
    gt_boxes: np.ndarray, gt_classes: np.ndarray, pred_boxes: np.ndarray, pred_conf: np.ndarray, pred_classes: np.ndarray, iou_threshold: float
) -> dict:
    """Which reported prediction matched which ground-truth object in one image.

    The policy is ultralytics' ConfusionMatrix.process_batch: one-to-one, class-agnostic, greedy in
    descending confidence, each prediction claiming its best unclaimed object above the threshold.
    So each image's lists add up to the test run's confusion matrix (a metric test checks this).
    Indices refer to the image's reported predictions and its ground-truth list."""
    import torch
    from ultralytics.utils.metrics import box_iou

    out: dict[str, list] = {"matched": [], "wrong_class": [], "missed": [], "false_positives": []}
    n_gt, n_pred = len(gt_boxes), len(pred_boxes)
    gt_match = np.full(n_gt, -1)
    ious = np.zeros((n_gt, n_pred))
    if n_gt and n_pred:
        ious = box_iou(torch.as_tensor(gt_boxes, dtype=torch.float32), torch.as_tensor(pred_boxes, dtype=torch.float32)).numpy()
        work = ious.copy()
        candidates = np.flatnonzero((work > iou_threshold).any(0))
        for det in candidates[np.argsort(-pred_conf[candidates], kind="stable")]:
            gt = int(work[:, det].argmax())
            if work[gt, det] > iou_threshold:
                gt_match[gt] = det
                work[gt] = 0
    matched_preds = set()
    for gt in range(n_gt):
        det = int(gt_match[gt])
        if det < 0:
            out["missed"].append({"ground_truth": gt, "class_id": int(gt_classes[gt])})
            continue
        matched_preds.add(det)
        entry_ = {"prediction": det, "ground_truth": gt, "iou": float(ious[gt, det])}
        if int(pred_classes[det]) == int(gt_classes[gt]):
            out["matched"].append({**entry_, "class_id": int(gt_classes[gt])})
        else:
            out["wrong_class"].append({**entry_, "predicted_class_id": int(pred_classes[det]), "true_class_id": int(gt_classes[gt])})
    for det in range(n_pred):
        if det not in matched_preds:
            out["false_positives"].append({"prediction": det, "class_id": int(pred_classes[det]), "confidence": float(pred_conf[det])})
    return out


def image_metrics(matches: dict, predictions: int, ground_truth: int) -> dict:
    """One image's metrics in results.json's words: match_objects' lists plus the image's
    precision, recall and mean IoU of its matches (None where undefined: no prediction, no
    object, no match)."""
    found = len(matches["matched"])
    ious = [m["iou"] for m in matches["matched"]]
    return {
        "precision": found / predictions if predictions else None,
        "recall": found / ground_truth if ground_truth else None,
        "mean_iou": float(np.mean(ious)) if ious else None,
        **matches,
    }


class DetectionEvaluator:
    """Accumulates one test run of detection, segmentation or pose, image by image."""

    def __init__(self, task: str, names: dict[int, str], conf_threshold: float, kpt_shape: list[int] | None = None, match_iou: float = MATCH_IOU_THRESHOLD):
        from ultralytics.models.yolo.detect import DetectionValidator
        from ultralytics.models.yolo.pose import PoseValidator
        from ultralytics.models.yolo.segment import SegmentationValidator
        from ultralytics.utils.metrics import OKS_SIGMA, ConfusionMatrix

        if task not in DETECTION_TASKS:
            raise ValueError(f"DetectionEvaluator evaluates {', '.join(DETECTION_TASKS)}, not {task}")
        self.task = task
        self.names = {int(k): str(v) for k, v in names.items()}
        self.conf_threshold = float(conf_threshold)
        self.match_iou = float(match_iou)
        self._scratch = tempfile.TemporaryDirectory(prefix="vision-trainer-eval-")
        validator_class = {"detect": DetectionValidator, "segment": SegmentationValidator, "pose": PoseValidator}[task]
        # The validator is used for its matching code only: no dataloader, no model, nothing written.
        self.validator = validator_class(save_dir=Path(self._scratch.name), args={"task": task, "plots": False, "save_json": False})
        self.validator.metrics.names = self.names
        if task == "pose":
            if not kpt_shape:
                raise ValueError("pose evaluation needs the model's keypoint shape")
            nkpt = int(kpt_shape[0])
            # PoseValidator.init_metrics: COCO sigmas for the 17 COCO keypoints, else uniform.
            self.validator.sigma = OKS_SIGMA if list(kpt_shape) == [17, 3] else np.ones(nkpt) / nkpt
        self.metrics = self.validator.metrics
        self.confusion = ConfusionMatrix(names=self.names, task="detect")
        self.images = 0

    def add(self, image_key: str, width: int, height: int, ground_truth: dict, predictions: dict) -> dict:
        """ground_truth: boxes [[x1,y1,x2,y2]], classes [int], segmentations [[[x,y,...]]], keypoints [[[x,y,v]]].
        predictions: boxes, confidences, classes (every detection the model kept at low confidence), masks
        (N, H, W original pixels, optional) or segmentations, keypoints [[[x,y,conf]]].
        Returns the image's matched / wrong_class / missed / false_positives at the confidence threshold."""
        import torch

        gt_boxes = _as_array(ground_truth.get("boxes"), (4,))
        gt_cls = _as_array(ground_truth.get("classes"), (), np.int64).reshape(-1)
        p_boxes = _as_array(predictions.get("boxes"), (4,))
        p_conf = _as_array(predictions.get("confidences"), ()).reshape(-1)
        p_cls = _as_array(predictions.get("classes"), (), np.int64).reshape(-1)
        order = np.argsort(-p_conf, kind="stable")  # the validators expect descending confidence
        p_boxes, p_conf, p_cls = p_boxes[order], p_conf[order], p_cls[order]

        batch: dict[str, Any] = {"cls": torch.as_tensor(gt_cls, dtype=torch.float32), "bboxes": torch.as_tensor(gt_boxes, dtype=torch.float32)}
        preds: dict[str, Any] = {"cls": torch.as_tensor(p_cls, dtype=torch.float32), "conf": torch.as_tensor(p_conf), "bboxes": torch.as_tensor(p_boxes)}
        if self.task == "segment":
            batch["masks"] = torch.as_tensor(rasterize_polygons(ground_truth.get("segmentations") or [[] for _ in gt_cls], width, height), dtype=torch.float32)
            masks = predictions.get("masks")
            if masks is None:
                masks = rasterize_polygons(predictions.get("segmentations") or [[] for _ in p_cls], width, height)
            else:
                masks = resize_masks(np.asarray(masks), width, height)
            preds["masks"] = torch.as_tensor(np.asarray(masks)[order] if len(masks) else masks, dtype=torch.float32)
        if self.task == "pose":
            nk = int(self.validator.sigma.shape[0])
            batch["keypoints"] = torch.as_tensor(_as_array(ground_truth.get("keypoints"), (nk, 3)))
            preds["keypoints"] = torch.as_tensor(_as_array(predictions.get("keypoints"), (nk, 3))[order])

        tp = self.validator._process_batch(preds, batch)
        self.metrics.update_stats(
            {
                **tp,
                "target_cls": gt_cls,
                "target_img": np.unique(gt_cls),
                "conf": p_conf,
                "pred_cls": p_cls,
                "im_name": image_key,
            }
        )
        # Strictly above, as NMS and ConfusionMatrix.process_batch cut (`conf > threshold`).
        keep = p_conf > self.conf_threshold
        shown = {"cls": preds["cls"][keep], "conf": preds["conf"][keep], "bboxes": preds["bboxes"][keep]}
        self.confusion.process_batch(shown, batch, conf=self.conf_threshold, iou_thres=self.match_iou)
        self.images += 1
        return image_metrics(match_objects(gt_boxes, gt_cls, p_boxes[keep], p_conf[keep], p_cls[keep], self.match_iou), int(keep.sum()), len(gt_cls))

    def finish(self) -> dict:
        if self.images == 0:
            raise ValueError("no images were evaluated")
        self.metrics.process()
        overall = standard_metrics(self.metrics.results_dict, self.task)
        overall.pop("fitness", None)
        details = detection_details(self, self.task, self.names)
        # ultralytics counts [predicted, true] with a trailing background row and column; the
        # platform reads rows as the true class, as for classification.
        matrix = np.asarray(self.confusion.matrix).T.astype(int)
        return {
            "overall_metrics": overall,
            "per_class_metrics": details["per_class_metrics"],
            "pr_curves": details["pr_curves"],
            "confusion_matrix": matrix.tolist(),
            "confusion_matrix_labels": [*[self.names[i] for i in sorted(self.names)], "background"],
            "match_iou_threshold": self.match_iou,
            "images_evaluated": self.images,
        }


class ClassificationEvaluator:
    """Accuracy, top-5, per-class precision / recall / F1 / support and the confusion matrix (scikit-learn)."""

    def __init__(self, names: dict[int, str]):
        self.names = {int(k): str(v) for k, v in names.items()}
        self.true: list[int] = []
        self.pred: list[int] = []
        self.top5_hits: list[bool] = []
        # Every class's score per image, for per-class AP; None once an image came without them.
        self.scores: list[np.ndarray] | None = []

    def add(self, true_class: int, ranked_classes: list[int], scores=None) -> dict:
        """ranked_classes: the model's classes by descending probability (at least the top one);
        scores: the probability of every class (for per-class AP)."""
        if not ranked_classes:
            raise ValueError("a classification prediction needs at least one class")
        k = min(5, len(self.names))
        hit5 = int(true_class) in [int(c) for c in ranked_classes[:k]]
        self.true.append(int(true_class))
        self.pred.append(int(ranked_classes[0]))
        self.top5_hits.append(hit5)
        if self.scores is not None and scores is not None and len(scores) == len(self.names):
            self.scores.append(np.asarray(scores, dtype=np.float64))
        else:
            self.scores = None
        return {"correct": int(ranked_classes[0]) == int(true_class), "top5_correct": hit5}

    def finish(self) -> dict:
        from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

        if not self.true:
            raise ValueError("no images were evaluated")
        labels = sorted(self.names)
        # zero_division=nan: precision of a class never predicted is unknown (null), not 0.
        precision, recall, f1, support = precision_recall_fscore_support(self.true, self.pred, labels=labels, zero_division=np.nan)
        defined = lambda v: None if np.isnan(v) else float(v)  # noqa: E731
        ap = one_vs_rest_ap(np.stack(self.scores), np.asarray(self.true), len(self.names)) if self.scores else [None] * len(self.names)
        per_class = [
            {
                "class_id": c,
                "class_name": self.names[c],
                "precision": defined(precision[i]),
                "recall": defined(recall[i]),
                "f1": defined(f1[i]),
                "ap": ap[c],
                "support": int(support[i]),
            }
            for i, c in enumerate(labels)
        ]
        # Macro averages over the classes present in the test set, skipping undefined values, as
        # the training-time validation callbacks do (yolo_metrics.classification_details).
        overall = {
            "accuracy": float(accuracy_score(self.true, self.pred)),
            "top5_accuracy": float(np.mean(self.top5_hits)),
            "precision": macro(per_class, "precision"),
            "recall": macro(per_class, "recall"),
            "f1": macro(per_class, "f1"),
        }
        return {
            "overall_metrics": overall,
            "per_class_metrics": per_class,
            "pr_curves": {},
            "confusion_matrix": confusion_matrix(self.true, self.pred, labels=labels).tolist(),
            "confusion_matrix_labels": [self.names[c] for c in labels],
            "match_iou_threshold": None,
            "images_evaluated": len(self.true),
        }
