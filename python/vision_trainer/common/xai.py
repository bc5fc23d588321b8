"""Explainability: class-activation heatmaps with the `grad-cam` package (pytorch_grad_cam).

Framework code supplies three things: a network that returns one tensor per image, the input
tensor and how to map the heatmap back onto the original image, and a target (what the heatmap
explains: a class logit, or the scores of the detected boxes). This module resolves the target
layers, runs the CAM method, and turns the heatmap into an overlay PNG and numbers.

Target layers are named by path (`model.22`, `layer4`, `blocks.-1.norm1`) and resolved through
`named_children()` only, one dotted part at a time: a path is data, never code. (The design's
sketch ran `eval(f"self.model.{layer_name}")`, which executes whatever a job author writes.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# Names of submodules and integer indices (negative ones count from the end), joined by dots.
LAYER_PATH = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*|-?\d+)(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|-?\d+))*")
TOP_REGIONS = 5
# Pixels at or above this share of the heatmap's range count as "high activation".
HIGH_ACTIVATION = 0.5


class UnknownLayerError(ValueError):
    """XAI_TARGET_LAYERS names a layer the model does not have (or is not a layer path at all)."""


def _children_hint(module, limit: int = 12) -> str:
    import torch.nn as nn

    if isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module):
        return f"it holds {len(module)} layers, indices 0 to {len(module) - 1} (or -{len(module)} to -1)"
    names = [name for name, _ in module.named_children()]
    if not names:
        return "it has no submodules"
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
    return f"its submodules are: {shown}"


def resolve_layer(root, path: str):
    """The submodule of `root` at `path`, or UnknownLayerError saying where the lookup stopped."""
    import torch.nn as nn

    if not isinstance(path, str) or not LAYER_PATH.fullmatch(path):
        raise UnknownLayerError(
            f"unknown layer {path!r}: a layer path is submodule names and indices joined by dots, e.g. model.22, layer4 or blocks.-1.norm1; "
            f"at the top of the model, {_children_hint(root)}"
        )
    module = root
    walked: list[str] = []
    for part in path.split("."):
        children = dict(module.named_children())
        if part in children:
            module = children[part]
        elif re.fullmatch(r"-?\d+", part) and isinstance(module, (nn.Sequential, nn.ModuleList)) and -len(module) <= int(part) < len(module):
            module = module[int(part)]
        else:
            where = ".".join(walked) or "the model"
            raise UnknownLayerError(f"unknown layer {path!r}: {where} has no submodule {part!r}; {_children_hint(module)}")
        walked.append(part)
    return module


def resolve_layers(root, paths: list[str]) -> list:
    if not paths:
        raise UnknownLayerError("no XAI target layer given")
    return [resolve_layer(root, p) for p in paths]


def cam_class(method: str):
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM

    classes = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM, "scorecam": ScoreCAM, "layercam": LayerCAM}
    if method not in classes:
        raise ValueError(f"unknown XAI method {method!r}; available: {', '.join(classes)}")
    return classes[method]


@dataclass
class CamInput:
    """A network input and how to bring its heatmap back to the original image (and, for
    detection targets, an original-pixel box into input pixels)."""

    tensor: Any
    original_rgb: np.ndarray
    to_original: Callable[[np.ndarray], np.ndarray]
    box_to_input: Callable[[list[float]], list[float]] | None = None


class CamExplainer:
    """One CAM object for a whole job: hooks are registered once, not per image."""

    def __init__(self, network, layers: list, method: str, reshape_transform=None):
        kwargs = {"model": network, "target_layers": layers}
        if reshape_transform is not None:
            kwargs["reshape_transform"] = reshape_transform
        self.method = method
        self.cam = cam_class(method)(**kwargs)

    def heatmap(self, cam_input: CamInput, target) -> np.ndarray:
        """A heatmap in [0, 1] at the original image's size (H, W)."""
        grayscale = self.cam(input_tensor=cam_input.tensor, targets=[target])[0]
        heat = cam_input.to_original(np.nan_to_num(grayscale.astype(np.float32)))
        return np.clip(heat, 0.0, 1.0)


def top_regions(heat: np.ndarray, k: int = TOP_REGIONS) -> list[dict]:
    """The k strongest connected regions above the heatmap's 90th percentile, strongest first."""
    import cv2

    if not np.any(heat > 0):
        return []
    threshold = np.percentile(heat, 90)
    mask = (heat >= threshold).astype(np.uint8) if threshold > 0 else (heat > 0).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    regions = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        regions.append({"x": int(x), "y": int(y), "w": int(w), "h": int(h), "score": float(np.mean(heat[y : y + h, x : x + w]))})
    regions.sort(key=lambda r: r["score"], reverse=True)  # sorted before cutting, not after
    return regions[:k]


def summarize(heat: np.ndarray, boxes: list[list[float]] | None = None) -> dict:
    """Activation statistics of a heatmap; with boxes, the share of activation inside them."""
    total = float(heat.sum())
    peak_y, peak_x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    summary = {
        "max_activation": float(heat.max()),
        "mean_activation": float(heat.mean()),
        "high_activation_fraction": float(np.mean(heat >= HIGH_ACTIVATION)),
        "peak": {"x": int(peak_x), "y": int(peak_y)},
        "top_regions": top_regions(heat),
        "activation_in_predictions": None,
    }
    if boxes is not None and total > 0:
        inside = np.zeros(heat.shape, dtype=bool)
        h, w = heat.shape
        for x1, y1, x2, y2 in boxes:
            inside[max(0, int(y1)) : min(h, int(np.ceil(y2))), max(0, int(x1)) : min(w, int(np.ceil(x2)))] = True
        summary["activation_in_predictions"] = float(heat[inside].sum() / total)
    return summary


def save_overlay(original_rgb: np.ndarray, heat: np.ndarray, path: str) -> None:
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    overlay = show_cam_on_image(original_rgb.astype(np.float32) / 255.0, heat, use_rgb=True, image_weight=0.5)
    if not cv2.imwrite(path, cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write the XAI overlay {path}")
