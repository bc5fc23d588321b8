"""SAM 2 (Segment Anything 2, ultralytics' implementation) for test runs and inference jobs.

SAM 2 does not classify: it turns a box prompt into a mask. The prompts come from
- a test run's ground truth: every labelled object's box, so the metric is how well the masks
  cover the true outlines (mask IoU, per object and per class);
- an inference job's detector (PROMPT_CHECKPOINT_PATH, an ultralytics detection checkpoint):
  its boxes above CONFIDENCE_THRESHOLD, each answered with a mask; class and confidence are
  the detector's.
The classes are the prompts' classes: the test dataset's (sent by TypeScript as
`dataset_classes`) or the detector's, so predictions and tables carry those ids.

The weights file is a plain state dict (`{"model": state_dict}` as ultralytics and Meta ship
them, or the state dict itself), read by the process-wide weights_only torch.load
(safe_load.py). The architecture is one of ultralytics' eight SAM 2 builds, told from the keys:
the size (t, s, b, l) by the number of Hiera blocks, SAM 2.1 by the parameters only 2.1 has.
Training SAM 2 is refused at configuration time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.class_ids import ClassIds
from ..common.infer_metrics import rasterize_polygons, resize_masks

# Hiera blocks in the image encoder (stages 1+2+7+2, 1+2+11+2, 2+3+16+3, 2+6+36+4) -> size.
SIZES = {12: "t", 16: "s", 24: "b", 48: "l"}
# Parameters SAM 2.1 added (an object-pointer position projection and a spatial no-object
# embedding); SAM 2 weights hold neither.
SAM2_1_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")
# The model names, as ultralytics names the release files (sam2_t.pt ... sam2.1_l.pt).
MODEL_NAMES = tuple(f"{version}_{size}" for version in ("sam2", "sam2.1") for size in SIZES.values())
MATCH_IOU = 0.5
MASK_COLOR = (0, 200, 255)  # BGR
MISSED_COLOR = (255, 0, 255)


class PromptError(ValueError):
    """SAM 2 has no prompt source (an inference job without PROMPT_CHECKPOINT_PATH), or the prompt
    checkpoint is not a detector."""


class Sam2WeightsError(ValueError):
    """The file holds SAM weights of a variant this runtime does not build."""


def read_state(path: str) -> dict | None:
    """The SAM 2 state dict in the file, or None when the file is not SAM 2 weights. Loaded with
    weights_only (tensors and plain containers; safe_load refuses anything else), memory-mapped so
    a look at the keys costs no copy."""
    import torch

    from ..safe_load import pickle_globals

    names = pickle_globals(path)
    if names is None or any(name.startswith("ultralytics.") for name in names):
        return None  # no pickle, or an ultralytics model (YOLO): read without loading anything
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a torch zip file, or one naming classes: not SAM weights
        return None
    state = data.get("model") if isinstance(data, dict) and isinstance(data.get("model"), dict) else data
    if not isinstance(state, dict):
        return None
    keys = [k for k in state if isinstance(k, str)]
    if not any(k.startswith("image_encoder.trunk.") for k in keys) or not any(k.startswith("sam_mask_decoder.") for k in keys):
        return None
    return state


def variant_of(state: dict) -> str:
    """The model name the weights are for (sam2_t ... sam2.1_l), from their key layout alone."""
    blocks = len({k.split(".")[3] for k in state if k.startswith("image_encoder.trunk.blocks.")})
    if blocks not in SIZES:
        raise Sam2WeightsError(
            f"the weights hold a SAM 2 image encoder with {blocks} Hiera blocks; this runtime builds {', '.join(MODEL_NAMES)} (12, 16, 24 or 48 blocks)"
        )
    version = "sam2.1" if any(k in state for k in SAM2_1_KEYS) else "sam2"
    return f"{version}_{SIZES[blocks]}"


def build(model_name: str, state: dict | None = None):
    """ultralytics' SAM2Model for `model_name` (sam2_t ... sam2.1_l), loaded strictly from `state`
    when given (else randomly initialised), in eval mode.

    ultralytics builds the 2.1 layout only when the checkpoint's file name contains "sam2.1", and
    then loads that file itself (downloading it when absent, with its own torch_load). Neither
    may happen here: the builder is given the release's file name and, for that one call, a loader
    that loads the state dict already read weights_only instead of any file."""
    from ultralytics.models.sam import build as sam_build

    if model_name not in MODEL_NAMES:
        raise Sam2WeightsError(f"{model_name} is not a SAM 2 model this runtime builds ({', '.join(MODEL_NAMES)})")
    builder = getattr(sam_build, f"build_sam2_{model_name.rpartition('_')[2]}")

    def load(model, _name):
        if state is not None:
            model.load_state_dict(state, strict=True)
        return model

    original = sam_build._load_checkpoint
    sam_build._load_checkpoint = load
    try:
        return builder(f"{model_name}.pt").eval()
    finally:
        sam_build._load_checkpoint = original


@dataclass
class PromptedMasks:
    """One image's prompts and the masks SAM 2 answered, in original-image pixels."""

    width: int
    height: int
    image: np.ndarray  # BGR, for drawing
    boxes: np.ndarray  # (N, 4) xyxy
    classes: np.ndarray  # (N,) class indices of the session
    confidences: np.ndarray  # (N,) the detector's; SAM's own score for ground-truth prompts
    mask_scores: np.ndarray  # (N,) SAM's predicted IoU of each mask
    masks: np.ndarray  # (N, H, W) bool


class Sam2Backend:
    """The UltralyticsBackend's shape (see infer_session.Session) for a prompted mask model:
    `prompted` makes the session hand over the batch items (their ground truth) with the paths."""

    framework = "ultralytics"
    task = "segment"
    prompted = True
    kpt_shape = None

    def __init__(self, checkpoint: str, state: dict, params: dict):
        import torch
        from ultralytics.models.sam.predict import SAM2Predictor

        from ..common.graph_runtime import backend_info, precision_info
        from ..common.torch_runtime import resolve_device

        requested = params["inference_backend"]
        if requested not in ("pytorch", "auto"):
            from ..common.graph_runtime import InferenceBackendError

            raise InferenceBackendError(f"SAM 2 runs on pytorch only, not INFERENCE_BACKEND={params['inference_backend']}")
        if params.get("graph_model"):
            from ..common.graph_runtime import InferenceBackendError

            raise InferenceBackendError("SAM 2 runs on pytorch only, and INFERENCE_MODEL_PATH names an export job's graph: unset INFERENCE_MODEL_PATH")
        prompt = params.get("prompt_checkpoint")
        classes = params.get("dataset_classes")
        if not prompt and not (params.get("evaluate") and classes is not None):
            raise PromptError(
                "SAM 2 segments what a prompt points at: an inference job needs PROMPT_CHECKPOINT_PATH, an ultralytics detection "
                "checkpoint whose boxes prompt it (test runs prompt it with the ground-truth boxes)"
            )
        if prompt:
            from ..safe_load import pickle_globals

            if not any(name.startswith("ultralytics.") for name in pickle_globals(prompt) or ()):
                raise PromptError("is not an ultralytics checkpoint; SAM 2 is prompted by the boxes of an ultralytics detection model (e.g. a yolo11n best.pt)")
        self.model_name = variant_of(state)
        model = build(self.model_name, state)
        device = resolve_device(params.get("device") or "auto")
        self.imgsz = int(params["image_size"])
        # conf 0: every prompt keeps its mask (SAM's scores are sigmoids, above 0); the prompts were
        # already cut by the detector's threshold.
        self.predictor = SAM2Predictor(overrides={"conf": 0.0, "imgsz": self.imgsz, "save": False, "verbose": False, "device": str(device)})
        with torch.no_grad():
            self.predictor.setup_model(model=model, verbose=False)
        self.detector = None
        if prompt:
            from .infer import UltralyticsBackend

            self.detector = UltralyticsBackend(prompt, {**params, "inference_backend": "pytorch", "xai": None, "graph_model": None})
            if self.detector.task not in ("detect", "segment"):
                raise PromptError(f"holds a {self.detector.task} model; SAM 2 is prompted by a detection model's boxes")
            self.names = dict(self.detector.names)
            self.class_ids = self.detector.class_ids
        else:
            self.names = dict(enumerate(classes["names"]))
            self.class_ids = ClassIds(classes["ids"], classes["names"])
        reason = "auto: SAM 2 runs on pytorch only" if requested == "auto" else "INFERENCE_BACKEND"
        self.backend_info = backend_info(
            "pytorch",
            str(device),
            None,
            False,
            requested,
            reason,
            precision=precision_info(params.get("inference_precision") or "fp32", "pytorch", "fp32", reason),
        )

    def info(self) -> dict:
        return {
            "framework": self.framework,
            "task": self.task,
            "class_names": [self.names[i] for i in sorted(self.names)],
            "model_name": self.model_name,
            "architecture": "SAM2Model",
            "training_image_size": 1024,
            "keypoint_shape": None,
            "inference_backend": self.backend_info,
            "prompts": "detector" if self.detector is not None else "ground_truth_boxes",
        }

    def load(self, paths: list[str]) -> None:
        return None  # no prefetching: each image is read with its prompts

    def predict_items(self, items: list[dict], conf: float) -> list[PromptedMasks]:
        return [self._one(item, conf) for item in items]

    def _prompts(self, item: dict, image: np.ndarray, conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self.detector is not None:
            result = self.detector.predict([item["path"]], conf, [image])[0]
            keep = result.boxes.conf.cpu().numpy() > conf
            boxes = result.boxes.xyxy.cpu().numpy()[keep]
            return boxes.reshape(-1, 4), result.boxes.cls.cpu().numpy().astype(int)[keep], result.boxes.conf.cpu().numpy()[keep]
        truth = item.get("ground_truth") or {}
        return np.asarray(truth.get("boxes") or [], dtype=np.float32).reshape(-1, 4), np.asarray(truth.get("classes") or [], dtype=int), None

    def _one(self, item: dict, conf: float) -> PromptedMasks:
        from ultralytics.utils.patches import imread

        image = imread(item["path"])
        if image is None or image.ndim != 3:
            raise OSError(f"{Path(item['path']).name} is not readable as a colour image")
        h, w = image.shape[:2]
        boxes, classes, confidences = self._prompts(item, image, conf)
        masks = np.zeros((len(boxes), h, w), dtype=bool)
        scores = np.zeros(len(boxes), dtype=np.float32)
        if len(boxes):
            result = self.predictor(source=image, bboxes=boxes.tolist())[0]
            if result.masks is not None:
                # ultralytics' placeholder class is the prompt's index: masks whose score fell to 0 are absent.
                index = result.boxes.cls.cpu().numpy().astype(int)
                masks[index] = result.masks.data.cpu().numpy().astype(bool)
                scores[index] = result.boxes.conf.cpu().numpy()
        return PromptedMasks(w, h, image, boxes, classes, scores if confidences is None else confidences, scores, masks)

    @staticmethod
    def image_size(result: PromptedMasks) -> tuple[int, int]:
        return result.width, result.height

    def describe(self, result: PromptedMasks, conf_threshold: float, for_evaluation: bool) -> tuple[dict, dict | None, PromptedMasks]:
        boxes = []
        for k in range(len(result.boxes)):
            c = int(result.classes[k])
            boxes.append(
                {
                    "bbox": [float(v) for v in result.boxes[k]],
                    "class_id": c,
                    "class_name": self.names.get(c, str(c)),
                    "confidence": float(np.clip(result.confidences[k], 0, 1)),
                    "mask_score": float(np.clip(result.mask_scores[k], 0, 1)),
                    "segmentation": outlines(result.masks[k]),
                }
            )
        evaluation_input = {"masks": result.masks, "scores": result.mask_scores} if for_evaluation else None
        return {"boxes": boxes}, evaluation_input, result

    def render(self, result: PromptedMasks, out_path: str, ground_truth: dict | None, evaluation: dict | None) -> None:
        """Each mask filled over the image with its prompt box and label; in a test run the mask IoU
        of each object, and the objects whose mask missed (IoU under 0.5) in magenta."""
        import cv2

        image = result.image.copy()
        overlay = image.copy()
        for mask in result.masks:
            overlay[mask] = MASK_COLOR
        image = cv2.addWeighted(overlay, 0.45, image, 0.55, 0)
        thickness = max(1, round(sum(image.shape[:2]) / 600))
        scale = max(0.3, image.shape[0] / 1200)
        ious = {o["ground_truth"]: o["iou"] for o in (evaluation or {}).get("objects", [])}
        for k, box in enumerate(result.boxes):
            x1, y1, x2, y2 = (round(v) for v in box)
            iou = ious.get(k)
            color = MISSED_COLOR if iou is not None and iou < MATCH_IOU else MASK_COLOR
            cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness)
            label = self.names.get(int(result.classes[k]), str(result.classes[k]))
            label += f" IoU {iou:.2f}" if iou is not None else f" {result.confidences[k]:.2f}"
            cv2.putText(image, label, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness)
        if not cv2.imwrite(out_path, image):
            raise OSError(f"could not write the visualisation {out_path}")

    def xai_methods(self) -> list[str]:
        return []


def outlines(mask: np.ndarray) -> list[list[float]]:
    """A mask's outer contours as flat [x1, y1, x2, y2, ...] polygons (results.json's segmentation)."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float | None:
    """IoU of two binary masks of one size; None when both are empty."""
    a, b = a.astype(bool), b.astype(bool)
    union = int(np.logical_or(a, b).sum())
    return None if union == 0 else int(np.logical_and(a, b).sum()) / union


class PromptedMaskEvaluator:
    """Mask IoU of box-prompted masks against the true outlines: mask i answers ground-truth object
    i. Per image the IoU of each object. Over the run: the mean over objects (mask_iou) and over
    classes (mIoU), the share of objects at IoU 0.5 and 0.75, per class its mean IoU; and the
    design's detection fields with one mask per object: precision and recall at IoU 0.5 (equal:
    as many masks as objects) and mask mAP50 / mAP50-95, the masks ranked by SAM's own score
    (ultralytics' ap_per_class). The confusion matrix counts each object in its class's column when
    its mask reaches IoU 0.5, else in the last "background" column (a miss), as a detection
    matrix does."""

    def __init__(self, names: dict[int, str]):
        self.names = names
        self.classes: list[int] = []
        self.ious: list[float] = []
        self.scores: list[float] = []
        self.images = 0

    def add(self, image_key: str, width: int, height: int, ground_truth: dict, predictions: dict) -> dict:
        self.images += 1
        segmentations = ground_truth.get("segmentations") or []
        truth = rasterize_polygons(segmentations, width, height)
        predicted = resize_masks(np.asarray(predictions["masks"]), width, height)
        scores = np.asarray(predictions.get("scores", np.ones(len(predicted))), dtype=float)
        objects = []
        for i, c in enumerate(int(v) for v in ground_truth.get("classes") or []):
            if i >= len(segmentations) or not segmentations[i]:
                continue  # an object without an outline has nothing to compare with
            iou = mask_iou(predicted[i], truth[i]) if i < len(predicted) else 0.0
            if iou is None:
                continue
            objects.append({"ground_truth": i, "class_id": c, "iou": iou})
            self.classes.append(c)
            self.ious.append(iou)
            self.scores.append(float(scores[i]) if i < len(scores) else 0.0)
        mean = float(np.mean([o["iou"] for o in objects])) if objects else None
        return {"mask_iou": mean, "objects": objects}

    def finish(self) -> dict:
        from ultralytics.utils.metrics import ap_per_class

        n = len(self.names)
        classes, ious = np.asarray(self.classes, dtype=int), np.asarray(self.ious, dtype=float)
        hit = ious >= MATCH_IOU
        ap = np.full((n, 10), np.nan)
        if len(ious):
            tp = ious[:, None] >= np.linspace(0.5, 0.95, 10)[None]
            result = ap_per_class(tp, np.asarray(self.scores), classes, classes)
            ap[result[6].astype(int)] = result[5]
        matrix = np.zeros((n + 1, n + 1), dtype=int)
        for c, h in zip(classes, hit, strict=True):
            matrix[c, c if h else n] += 1

        def mean(values: np.ndarray) -> float | None:
            return float(np.mean(values)) if len(values) else None

        present = [c for c in sorted(self.names) if (classes == c).any()]
        per_class = []
        for c in sorted(self.names):
            mine = classes == c
            per_class.append(
                {
                    "class_id": c,
                    "class_name": self.names[c],
                    "precision": mean(hit[mine]),
                    "recall": mean(hit[mine]),
                    "ap": None if np.isnan(ap[c, 0]) else float(ap[c, 0]),
                    "ap50_95": None if np.isnan(ap[c, 0]) else float(ap[c].mean()),
                    "iou": mean(ious[mine]),
                    "support": int(mine.sum()),
                }
            )
        overall = {
            "precision": mean(hit),
            "recall": mean(hit),
            "mAP50": float(np.mean(ap[present, 0])) if present else None,
            "mAP50-95": float(np.mean(ap[present])) if present else None,
            "mask_iou": mean(ious),
            "mIoU": float(np.mean([ious[classes == c].mean() for c in present])) if present else None,
            "mask_recall50": mean(hit),
            "mask_recall75": mean(ious >= 0.75),
        }
        return {
            "overall_metrics": overall,
            "per_class_metrics": per_class,
            "confusion_matrix": matrix.tolist(),
            "confusion_matrix_labels": [self.names[c] for c in sorted(self.names)] + ["background"],
            "pr_curves": {},
            "match_iou_threshold": MATCH_IOU,
            "images_evaluated": self.images,
        }
