"""Test runs and inference jobs of semantic segmentation checkpoints (transformers SegFormer and
kin, written by huggingface/train.py in our checkpoint format).

Each image is resized to the checkpoint's IMAGE_SIZE as in training, the per-pixel logits are
upsampled to the image's own size, and the class map is their argmax. Every image's map is
written as an indexed PNG (pixel value = the dataset's class id, palette = the classes' colours,
so viewers show colours and readers get ids); the visualisation sample gets a colour overlay of
the map on the image (beside the ground truth's in a test run). Test runs score each map against
the image's mask at full size: one confusion matrix over every labelled pixel of the test split
(common/semantic_metrics.py), so mIoU is the dataset's, not a mean of per-image values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .semantic_metrics import IGNORE_INDEX, MaskCodec, confusion, image_summary, metrics_from_confusion, read_mask

if TYPE_CHECKING:
    from .classifier_infer import LoadedBatch

OVERLAY_ALPHA = 0.5


def palette(num_classes: int) -> np.ndarray:
    """A fixed, distinct colour per class index (the PASCAL VOC bit-interleaved palette, as
    mmsegmentation and torchvision draw it): [num_classes, 3] uint8."""
    colours = np.zeros((max(num_classes, 1), 3), dtype=np.uint8)
    for index in range(num_classes):
        label, r, g, b = index + 1, 0, 0, 0  # +1: index 0 is not black on a black-free overlay
        for shift in range(7, -1, -1):
            r |= ((label >> 0) & 1) << shift
            g |= ((label >> 1) & 1) << shift
            b |= ((label >> 2) & 1) << shift
            label >>= 3
        colours[index] = (r, g, b)
    return colours


@dataclass
class SemanticResult:
    indices: np.ndarray  # [H, W] class indices at the image's size
    width: int
    height: int
    path: str


class SemanticEvaluator:
    """The test run's confusion matrix over every labelled pixel, and its metrics at the end."""

    def __init__(self, class_names: list[str]):
        self.names = [str(n) for n in class_names]
        self.matrix = np.zeros((len(self.names), len(self.names)), dtype=np.int64)
        self.images = 0

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        self.matrix += confusion(pred, target, len(self.names))
        self.images += 1

    def finish(self) -> dict[str, Any]:
        out = metrics_from_confusion(self.matrix, self.names)
        return {
            "overall_metrics": out["metrics"],
            "per_class_metrics": out["per_class_metrics"],
            # pixel counts: rows the true class, columns the predicted one
            "confusion_matrix": self.matrix.astype(int).tolist(),
            "confusion_matrix_labels": list(self.names),
            "pr_curves": {},
            "match_iou_threshold": None,
            "images_evaluated": self.images,
        }


class SemanticBackend:
    """The ClassifierBackend's shape for a per-pixel classifier (see infer_session.Session)."""

    task = "semantic"
    kpt_shape = None

    def __init__(self, classifier_backend):
        # The loaded model, its metadata and class ids come from the classifier backend, which
        # already reads our checkpoint format; only prediction and drawing differ.
        self.base = classifier_backend
        self.preprocess_seconds: float | None = None
        self.forward_seconds: float | None = None
        self.model = classifier_backend.model
        self.meta = classifier_backend.meta
        self.device = classifier_backend.device
        self.names = classifier_backend.names
        self.class_ids = classifier_backend.class_ids
        self.size = classifier_backend.size
        self.codec = MaskCodec(self.class_ids.ids)
        self.colours = palette(len(self.names))

    def info(self) -> dict:
        return {**self.base.info(), "task": self.task}

    @property
    def decoder(self):
        return self.base.decoder

    @decoder.setter
    def decoder(self, pool) -> None:
        self.base.decoder = pool

    def load(self, paths: list[str]) -> LoadedBatch:
        return self.base.load(paths)

    def predict(self, paths: list[str], conf: float, loaded: LoadedBatch | None = None) -> list[SemanticResult]:
        import torch
        from torch.nn import functional as F

        started = time.perf_counter()
        loaded = loaded if loaded is not None else self.load(paths)
        batch = loaded.tensor.to(self.device, non_blocking=True)
        self.preprocess_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with torch.inference_mode():
            logits = self.model(batch).float()
        self.forward_seconds = time.perf_counter() - started
        out = []
        for i, ((width, height), path) in enumerate(zip(loaded.sizes, paths, strict=True)):
            full = F.interpolate(logits[i : i + 1], size=(height, width), mode="bilinear", align_corners=False)
            out.append(SemanticResult(full[0].argmax(dim=0).to(torch.uint8).cpu().numpy(), width, height, path))
        return out

    @staticmethod
    def image_size(result: SemanticResult) -> tuple[int, int]:
        return result.width, result.height

    def target_of(self, ground_truth: dict) -> np.ndarray:
        """The ground truth's mask as model indices: its values are the test dataset's class ids,
        `class_map` pairs each with the model's index (classes matched by name in TypeScript)."""
        raw = read_mask(ground_truth["mask"])
        table = np.full(max([*[int(t) for t, _ in ground_truth["class_map"]], 255]) + 1, IGNORE_INDEX, dtype=np.uint8)
        for test_id, index in ground_truth["class_map"]:
            table[int(test_id)] = int(index)
        out = np.full(raw.shape, IGNORE_INDEX, dtype=np.uint8)
        inside = (raw >= 0) & (raw < len(table))
        out[inside] = table[raw[inside]]
        return out

    def outcome(self, result: SemanticResult, ground_truth: dict | None, evaluator: SemanticEvaluator | None, mask_path: str | None) -> dict:
        """predictions / ground_truth / metrics of one image (dataset ids); writes its indexed PNG."""
        target = None
        if ground_truth is not None:
            target = self.target_of(ground_truth)
            if target.shape != result.indices.shape:
                raise ValueError(f"the mask is {target.shape[1]}x{target.shape[0]} but the image is {result.width}x{result.height}")
            if evaluator is not None:
                evaluator.add(result.indices, target)
        summary = image_summary(result.indices, target, self.class_ids)
        if mask_path:
            self.write_mask(result.indices, mask_path)
        return {**summary, "target": target}

    def write_mask(self, indices: np.ndarray, path: str) -> None:
        from PIL import Image

        ids = self.codec.to_ids(indices)
        if ids.max(initial=0) > 255:
            Image.fromarray(ids.astype(np.uint16)).save(path, format="PNG")  # no palette above 255 ids
            return
        image = Image.fromarray(ids.astype(np.uint8), mode="P")
        flat = np.zeros((256, 3), dtype=np.uint8)
        for index, cid in enumerate(self.class_ids.ids):
            flat[cid] = self.colours[index]
        image.putpalette(flat.reshape(-1).tolist())
        image.save(path, format="PNG")

    def render(self, result: SemanticResult, out_path: str, target: np.ndarray | None) -> None:
        """The image with the predicted map laid over it; in a test run, beside the ground truth's."""
        from PIL import Image

        rgb = np.asarray(self.base._open(result.path)).astype(np.float32)

        def overlay(indices: np.ndarray) -> np.ndarray:
            colours = self.colours[np.minimum(indices, len(self.names) - 1)].astype(np.float32)
            mixed = rgb * (1 - OVERLAY_ALPHA) + colours * OVERLAY_ALPHA
            if indices is not result.indices:
                mixed[indices == IGNORE_INDEX] = rgb[indices == IGNORE_INDEX]
            return mixed.clip(0, 255).astype(np.uint8)

        panels = [overlay(result.indices)]
        if target is not None:
            panels.append(overlay(target))
        Image.fromarray(np.concatenate(panels, axis=1)).save(out_path, format="PNG")

    def xai_methods(self) -> list[str]:
        return []
