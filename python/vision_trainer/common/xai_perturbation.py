"""Perturbation explanations of classifiers: LIME and SHAP over superpixels, with captum.

Why captum (`captum.attr.Lime`, `captum.attr.KernelShap`): it is maintained with PyTorch, runs the
perturbed copies through the torch model in batches (no numpy round trip per sample), works on
any module that maps a batch to logits, so the three frameworks' classifiers share it, and it is a
small pure-Python package. The `lime` package's image explainer has not been released since 2020,
and `shap` pulls in numba and llvmlite for the same Kernel SHAP estimator captum implements.

The features are superpixels of the image as the model sees it (scikit-image's SLIC on the
resized input): LIME fits a weighted linear model to the class score of random superpixel
subsets; Kernel SHAP estimates each superpixel's Shapley value with the Kernel SHAP weighting.
Removed superpixels take the input's mean colour (zero after normalisation). The cost is
bounded by XAI_SAMPLES, the model evaluations per image; the attribution of each superpixel
becomes a heatmap (positive evidence for the class, scaled to 0..1) with the same statistics
and overlay as Grad-CAM's (xai.summarize, xai.save_overlay).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .xai import CamInput

LOG = logging.getLogger("vision_trainer.infer")
PERTURBATION_METHODS = ("lime", "shap")
# Methods that explain a classifier's reported class without target layers.
LAYERLESS_METHODS = (*PERTURBATION_METHODS, "attention")
# XAI_SAMPLES' default (src/config/variables.ts): model evaluations per explained image.
DEFAULT_SAMPLES = 200
# Superpixels per image: enough to follow object outlines at the small sizes classifiers take,
# few enough for a few hundred samples to estimate every one's weight.
SUPERPIXELS = 50
MIN_SUPERPIXELS = 4
# Perturbed copies per forward pass.
BATCH = 32


def superpixels(rgb: np.ndarray, segments: int = SUPERPIXELS) -> np.ndarray:
    """SLIC superpixel labels (H, W), numbered from 0. An image SLIC cannot split (noise, a flat
    colour: its connectivity pass merges everything) gets a square grid of about `segments`
    cells instead, so every explanation has regions to weigh."""
    from skimage.segmentation import slic

    labels = slic(rgb, n_segments=segments, compactness=20.0, start_label=0, channel_axis=-1)
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    if labels.max() + 1 >= MIN_SUPERPIXELS:
        return labels
    h, w = labels.shape
    side = max(1, round(np.sqrt(segments)))
    rows = np.minimum(np.arange(h) * side // max(h, 1), side - 1)
    cols = np.minimum(np.arange(w) * side // max(w, 1), side - 1)
    return rows[:, None] * side + cols[None, :]


class PerturbationExplainer:
    """LIME or SHAP for one job: `network` maps a normalised batch to class scores [B, C]."""

    def __init__(self, network, method: str, samples: int):
        from captum.attr import KernelShap, Lime

        if method not in PERTURBATION_METHODS:
            raise ValueError(f"unknown perturbation method {method!r}")
        self.method = method
        self.samples = int(samples)
        self.network = network
        self.attributor = (Lime if method == "lime" else KernelShap)(self._scores)
        self.explained = 0

    def _scores(self, batch):
        out = self.network(batch)
        return out[0] if isinstance(out, (tuple, list)) else out

    def heatmap(self, cam_input: CamInput, target_class: int) -> np.ndarray:
        """A heatmap in [0, 1] at the original image's size: each superpixel's evidence for the class."""
        import cv2
        import torch

        tensor = cam_input.tensor
        h, w = int(tensor.shape[-2]), int(tensor.shape[-1])
        rgb = cv2.resize(cam_input.original_rgb, (w, h), interpolation=cv2.INTER_AREA)
        labels = superpixels(rgb)
        mask = torch.from_numpy(labels).to(tensor.device)[None, None].expand(1, tensor.shape[1], h, w)
        started = time.perf_counter()
        with torch.no_grad():
            attribution = self.attributor.attribute(
                tensor,
                target=int(target_class),
                feature_mask=mask,
                baselines=0.0,
                n_samples=self.samples,
                perturbations_per_eval=min(BATCH, self.samples),
            )
        self.explained += 1
        LOG.info(
            "XAI %s: image %d explained with %d samples over %d superpixels in %.1f s",
            self.method,
            self.explained,
            self.samples,
            int(labels.max()) + 1,
            time.perf_counter() - started,
        )
        per_pixel = attribution[0, 0].detach().float().cpu().numpy()
        positive = np.clip(per_pixel, 0.0, None)
        top = float(positive.max())
        heat = positive / top if top > 0 else np.zeros_like(positive)
        return np.clip(cam_input.to_original(heat.astype(np.float32)), 0.0, 1.0)


class AttentionRollout:
    """Attention rollout (Abnar and Zuidema, 2020) of a transformers ViT-family or CLIP vision
    tower: per layer the heads' mean attention plus the residual (0.5 A + 0.5 I, rows
    renormalised), multiplied through the layers; the class token's row over the patch tokens
    is the heatmap. It says where the class token gathered information from, for whatever class
    was predicted (the method is not class-specific)."""

    method = "attention"

    def __init__(self, hf_model):
        self.hf_model = hf_model
        # The fused attention kernels return no weights; the eager implementation does.
        if hasattr(hf_model, "set_attn_implementation"):
            hf_model.set_attn_implementation("eager")
        else:
            hf_model.config._attn_implementation = "eager"
        self.tower = getattr(hf_model, "vision_model", None)
        if self.tower is None and not hasattr(hf_model.config, "patch_size"):
            raise ValueError(f"XAI_METHOD=attention needs a vision transformer (ViT, DeiT, DINO, CLIP); {type(hf_model).__name__} is not one")

    def attentions(self, pixel_values):
        model = self.tower if self.tower is not None else self.hf_model
        out = model(pixel_values=pixel_values, output_attentions=True)
        if not out.attentions:
            raise ValueError(f"{type(self.hf_model).__name__} returned no attention weights")
        return out.attentions

    def heatmap(self, cam_input: CamInput, target_class: int) -> np.ndarray:
        import math

        import torch

        with torch.no_grad():
            layers = self.attentions(cam_input.tensor)
            tokens = layers[0].shape[-1]
            rollout = torch.eye(tokens, device=layers[0].device)
            for attention in layers:
                a = attention[0].float().mean(dim=0)
                a = 0.5 * a + 0.5 * torch.eye(tokens, device=a.device)
                a = a / a.sum(dim=-1, keepdim=True)
                rollout = a @ rollout
        for prefix in range(0, 9):
            side = math.isqrt(max(tokens - prefix, 0))
            if side > 1 and side * side == tokens - prefix:
                break
        else:
            raise ValueError(f"the {tokens} tokens do not form a class token and a square grid of patches")
        grid = rollout[0, prefix:].reshape(side, side).cpu().numpy()
        grid = grid - grid.min()
        grid = grid / grid.max() if grid.max() > 0 else grid
        import cv2

        h, w = int(cam_input.tensor.shape[-2]), int(cam_input.tensor.shape[-1])
        heat = cv2.resize(grid.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(cam_input.to_original(heat), 0.0, 1.0)
