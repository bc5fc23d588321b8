"""timm and transformers classifiers for inference (image and zero-shot classification).

The checkpoint (checkpoints.py) rebuilds the model as `normalised [B, 3, S, S] -> logits` and says
how images were prepared for validation during training (resize mode, crop, interpolation,
mean/std); prediction prepares them the same way, at the checkpoint's image size. Both
frameworks' adapters open sessions here; the model info names the checkpoint's framework, which
the adapter checks against its own.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol import CheckpointParams, ModelInfo, SessionParams
from ..support import entry
from .class_ids import ClassIds
from .decode_pool import SEQUENTIAL
from .graph_runtime import (
    GRAPH_BACKENDS,
    InferenceBackendError,
    backend_info,
    check_device,
    export_classifier,
    export_or_fall_back,
    open_exported_classifier,
    precision_info,
    resolve_backend,
    torch_for_preprocessing_only,
)
from .infer_session import open_with
from .xai import CamInput

# Layers a default heatmap may come from: named at most this deep, so the path stays readable.
DEFAULT_LAYER_MAX_DEPTH = 4
LABEL_COLOR = (255, 255, 255)
LABEL_BACKGROUND = (0, 0, 0)
WRONG_COLOR = (255, 0, 255)
EXIF_ORIENTATION = 0x0112


class NormalisedInput:
    """torchvision's `Resize/CenterCrop -> ToTensor -> Normalize`, with ToTensor and Normalize done
    in NumPy: the same float32 operations in the same order (bit-identical results), without
    entering torch's OpenMP pool for each small image. In an inference job those per-image
    fork-joins cost twice what they cost in a plain Python loop, and the pool is the forward
    pass's to use."""

    def __init__(self, resize, mean, std):
        self.resize = resize
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]

    def __call__(self, image):
        import torch

        pixels = np.asarray(self.resize(image), dtype=np.uint8).transpose(2, 0, 1).astype(np.float32)
        pixels /= np.float32(255)
        pixels -= self.mean
        pixels /= self.std
        return torch.from_numpy(pixels)


@dataclass
class LoadedBatch:
    """A batch's images decoded, prepared as validation prepared them and stacked into one
    [B, 3, S, S] tensor, with each image's (width, height). On a CUDA device the tensor lies in
    page-locked (pinned) memory, whose copy to the GPU is asynchronous (`non_blocking`): built by
    the prefetch thread during the previous batch's forward pass, it leaves `predict` nothing to
    do but queue the copy before the model on the same stream."""

    tensor: Any
    sizes: list[tuple[int, int]]


@dataclass
class ClassifierResult:
    probabilities: np.ndarray
    width: int
    height: int
    path: str


class ClassifierBackend:
    task = "classify"
    kpt_shape = None
    # The session replaces it with its pool (DECODE_THREADS).
    decoder = SEQUENTIAL

    def __init__(self, checkpoint: str, params: SessionParams):
        from .checkpoints import build_model_from_checkpoint
        from .torch_runtime import resolve_device

        self.device = resolve_device(params["device"])
        self.model, self.meta = build_model_from_checkpoint(checkpoint, self.device)
        semantic = self.meta.get("task_type") == "semantic_segmentation"
        requested = params["inference_backend"]
        precision = params.get("inference_precision") or "fp32"
        graph_model = params.get("graph_model")
        self.backend, reason = resolve_backend(
            requested,
            self.device.type,
            params.get("image_count"),
            "the graph does not run semantic segmentation yet" if semantic else None,
            given_graph=graph_model["format"] if graph_model is not None else None,
            precision=precision,
        )
        check_device(self.backend, self.device.type)
        self.framework = str(self.meta["framework"])
        self.names = {i: str(n) for i, n in enumerate(self.meta["class_names"])}
        self.class_ids = ClassIds.of_checkpoint(self.meta, self.meta["class_names"])
        self.size = int(self.meta["image_size"])
        self.transform = self._transform()
        self.graph = None
        # The last batch's decoding and preparing (none when prefetched) and forward pass
        # (infer_session reports them; results.json `timing`).
        self.preprocess_seconds: float | None = None
        self.forward_seconds: float | None = None
        export_seconds = None
        if self.backend in GRAPH_BACKENDS:
            if semantic:
                raise InferenceBackendError(f"INFERENCE_BACKEND={self.backend} does not run semantic segmentation models yet: use pytorch")
            if graph_model is not None:
                exported = open_exported_classifier(graph_model, self.backend, self.model, self.meta, self.size, precision)
            else:
                self.backend, reason, exported = export_or_fall_back(
                    requested, self.backend, reason, lambda: export_classifier(self.model, self.size, params["graph_dir"], self.backend, precision)
                )
            if exported is not None and graph_model is not None:
                self.graph, _ = exported
                torch_for_preprocessing_only(bool(params.get("xai")))
            elif exported is not None:
                self.graph, export_seconds = exported
                torch_for_preprocessing_only(bool(params.get("xai")))
            else:
                self.model.to(self.device)  # the export moved it to the CPU
        # oneDNN's convolutions on the CPU run faster on channels-last (NHWC) tensors: ResNet-18's
        # forward pass took 1.07-1.39x less time, outputs equal to 3e-8; a ViT's was unchanged
        # (docs/performance.md). Classifiers only: segmentation heads were not measured.
        self.channels_last = self.backend == "pytorch" and self.device.type == "cpu" and not semantic
        if self.channels_last:
            import torch

            self.model = self.model.to(memory_format=torch.channels_last)
        self.backend_info = backend_info(
            self.backend,
            str(self.device),
            export_seconds,
            bool(params.get("xai")),
            requested,
            reason,
            graph_model["uri"] if graph_model is not None and self.graph is not None else None,
            precision_info(precision, self.backend, self.graph.precision if self.graph is not None else "fp32", reason),
        )

    def _transform(self):
        import torchvision.transforms as T

        mode = T.InterpolationMode.BICUBIC if self.meta.get("interpolation") == "bicubic" else T.InterpolationMode.BILINEAR
        if self.meta.get("resize_mode") == "shorter_side_center_crop":
            crop_pct = float(self.meta.get("crop_pct") or 1.0)
            resize = [T.Resize(math.floor(self.size / crop_pct), interpolation=mode), T.CenterCrop(self.size)]
        else:
            resize = [T.Resize((self.size, self.size), interpolation=mode)]
        return NormalisedInput(T.Compose(resize), self.meta["mean"], self.meta["std"])

    def info(self) -> dict:
        return {
            "framework": self.framework,
            "task": self.task,
            "class_names": [self.names[i] for i in sorted(self.names)],
            "model_name": self.meta.get("model_name"),
            "architecture": str(self.meta.get("architecture")),
            "training_image_size": self.size,
            "keypoint_shape": None,
            "inference_backend": {**self.backend_info, "memory_format": "channels_last" if self.channels_last else "contiguous"},
        }

    # --- prediction -------------------------------------------------------------------------

    @staticmethod
    def _open(path: str):
        from PIL import Image, ImageOps

        with Image.open(path) as image:
            # exif_transpose copies every image; only a turned one needs it (the copy and the
            # EXIF parse were a tenth of a small model's prediction loop).
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                return ImageOps.exif_transpose(image).convert("RGB")
            return image.convert("RGB")

    def _load_one(self, path: str) -> tuple:
        image = self._open(path)
        return self.transform(image), image.width, image.height

    def load(self, paths: list[str]) -> LoadedBatch:
        """The images decoded and prepared on the session's decoding threads (PIL and NumPy
        release the GIL), stacked; pinned on a CUDA device."""
        import torch

        items = self.decoder.map(self._load_one, paths)
        tensor = torch.stack([t for t, _, _ in items])
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        return LoadedBatch(tensor, [(w, h) for _, w, h in items])

    def predict(self, paths: list[str], conf: float, loaded: LoadedBatch | None = None) -> list[ClassifierResult]:
        import torch

        started = time.perf_counter()
        loaded = loaded if loaded is not None else self.load(paths)
        self.preprocess_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with torch.inference_mode():
            if self.graph:
                logits = torch.from_numpy(self.graph(loaded.tensor.numpy()))
            else:
                # From pinned memory the copy is queued, not waited for; the softmax's .cpu() below
                # waits for the stream, so the host tensor outlives it.
                batch = loaded.tensor.to(self.device, non_blocking=True)
                logits = self.model(batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch)
            probabilities = torch.softmax(logits.float(), dim=1).cpu().numpy()
        self.forward_seconds = time.perf_counter() - started
        return [ClassifierResult(probabilities[i], w, h, p) for i, ((w, h), p) in enumerate(zip(loaded.sizes, paths, strict=True))]

    def reference_predict(self, paths: list[str], conf: float) -> list[ClassifierResult]:
        """The batch through the PyTorch model in float32, what a reduced-precision graph is
        compared with (precision_check.py)."""
        import torch

        loaded = self.load(paths)
        with torch.inference_mode():
            probabilities = torch.softmax(self.model(loaded.tensor.to(self.device)).float(), dim=1).cpu().numpy()
        return [ClassifierResult(probabilities[i], w, h, p) for i, ((w, h), p) in enumerate(zip(loaded.sizes, paths, strict=True))]

    @staticmethod
    def image_size(result: ClassifierResult) -> tuple[int, int]:
        return result.width, result.height

    def describe(self, result: ClassifierResult, conf_threshold: float, for_evaluation: bool):
        ranked = [int(i) for i in np.argsort(-result.probabilities, kind="stable")[: min(5, len(self.names))]]
        top5 = [{"class_id": c, "class_name": self.names[c], "confidence": float(result.probabilities[c])} for c in ranked]
        reported = {"class_id": ranked[0], "class_name": self.names[ranked[0]], "confidence": top5[0]["confidence"], "top5": top5}
        return reported, ({"ranked_classes": ranked, "scores": result.probabilities} if for_evaluation else None), result

    # --- drawing ----------------------------------------------------------------------------

    def render(self, result: ClassifierResult, out_path: str, ground_truth: dict | None, evaluation: dict | None) -> None:
        """The image with its top classes and confidences; in a test run, the true class too."""
        from PIL import ImageDraw, ImageFont

        image = self._open(result.path)
        ranked = np.argsort(-result.probabilities, kind="stable")[: min(5, len(self.names))]
        lines = [(f"{self.names[int(c)]} {result.probabilities[int(c)]:.2f}", LABEL_COLOR) for c in ranked]
        if ground_truth is not None and evaluation is not None:
            lines.append(
                (
                    f"true: {self.names.get(int(ground_truth['class']), ground_truth['class'])} ({'correct' if evaluation['correct'] else 'wrong'})",
                    LABEL_COLOR if evaluation["correct"] else WRONG_COLOR,
                )
            )
        size = max(10, image.height // 14)
        font = ImageFont.load_default(size=size)
        draw = ImageDraw.Draw(image)
        y = 2
        for text, color in lines:
            left, top, right, bottom = draw.textbbox((2, y), text, font=font)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=LABEL_BACKGROUND)
            draw.text((2, y), text, fill=color, font=font)
            y = bottom + 2
        image.save(out_path, format="PNG")

    # --- explainability ---------------------------------------------------------------------

    def xai_network(self):
        """The model itself (it already maps a batch to logits) and, for transformers, its inner
        model as the root of layer paths (`resnet.encoder.stages.3`, `vit.layernorm`)."""
        root = getattr(self.model, "hf_model", self.model)
        return self.model, root

    def xai_methods(self) -> list[str]:
        methods = ["gradcam", "gradcam++", "eigencam", "scorecam", "layercam", "lime", "shap"]
        hf = getattr(self.model, "hf_model", None)
        # Attention rollout: transformers vision transformers (ViT, DeiT, DINO) and CLIP's vision tower.
        if hf is not None and (hasattr(hf, "vision_model") or str(getattr(hf.config, "model_type", "")) in ("vit", "deit", "dinov2", "beit")):
            methods.append("attention")
        return methods

    def _layer_outputs(self, root) -> list[tuple[str, tuple]]:
        """(path, output shape) of every module named at most DEFAULT_LAYER_MAX_DEPTH deep, in the
        order they finish during one forward pass of a blank image."""
        import torch

        seen: list[tuple[str, tuple]] = []
        hooks = []
        for name, module in root.named_modules():
            if name and name.count(".") < DEFAULT_LAYER_MAX_DEPTH:
                hooks.append(module.register_forward_hook(lambda m, i, o, n=name: seen.append((n, tuple(o.shape))) if isinstance(o, torch.Tensor) else None))
        try:
            with torch.no_grad():
                self.model(torch.zeros(1, 3, self.size, self.size, device=self.device))
        finally:
            for h in hooks:
                h.remove()
        return seen

    def default_xai_layers(self, root) -> list[str]:
        """The last layer whose output is a map of the image that the prediction depends on: a
        spatial grid (B, C, H, W with H, W > 1), or a vision transformer's token sequence forming
        a square grid, with a non-zero gradient of the top class at its positions. CNNs get
        their last feature map (`layer4`, `stages.3`); transformers the norm before their last
        attention (`blocks.11.norm1`, `vit.encoder.layer.11.layernorm_before`): after it, patch
        tokens no longer reach the class token, so their heatmap would be empty."""
        import torch

        outputs: list[tuple[str, torch.Tensor]] = []

        def keep(name):
            def hook(module, inputs, output):
                if (
                    isinstance(output, torch.Tensor)
                    and output.requires_grad
                    and (_is_grid(tuple(output.shape)) or (output.dim() == 3 and _token_grid(output.shape[1]) is not None))
                ):
                    output.retain_grad()
                    outputs.append((name, output))

            return hook

        hooks = [m.register_forward_hook(keep(n)) for n, m in root.named_modules() if n and n.count(".") < DEFAULT_LAYER_MAX_DEPTH]
        try:
            generator = torch.Generator().manual_seed(0)
            with torch.enable_grad():
                logits = self.model(torch.randn(1, 3, self.size, self.size, generator=generator).to(self.device))
                logits[0, int(logits[0].argmax())].backward()
        finally:
            for h in hooks:
                h.remove()
            self.model.zero_grad(set_to_none=True)
        # Token layers of the residual stream only (its width is the most common one): not the
        # fused q/k/v projection or the MLP's wider hidden layer.
        widths = [o.shape[2] for _, o in outputs if o.dim() == 3]
        residual = max(set(widths), key=widths.count) if widths else None
        reached = []
        for name, output in outputs:
            grad = output.grad
            if grad is None or (output.dim() == 3 and output.shape[2] != residual):
                continue
            positions = grad[0] if grad.dim() == 4 else grad[0, _token_grid(grad.shape[1])[0] :]
            if bool(positions.abs().sum() > 0):
                reached.append(name)
        if not reached:
            raise ValueError("found no layer whose output is a map of the image for a heatmap; name one in XAI_TARGET_LAYERS")
        return [reached[-1]]

    def xai_reshape_for(self, root, paths: list[str]):
        """Transformer layers output token sequences; Grad-CAM needs (B, C, H, W). None for CNNs."""
        shapes = dict(self._layer_outputs(root))
        wanted = [shapes.get(p) for p in paths]
        if not any(s is not None and len(s) == 3 for s in wanted):
            return None
        grid = _token_grid(next(s for s in wanted if s is not None and len(s) == 3)[1])
        if grid is None:
            raise ValueError(f"the tokens of {paths} do not form a square grid")
        prefix, side = grid

        def reshape(x):
            return x[:, prefix:, :].reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2)

        return reshape

    def xai_input(self, image_path: str) -> CamInput:
        import cv2

        image = self._open(image_path)
        rgb = np.asarray(image)
        w, h = image.width, image.height
        tensor = self.transform(image)[None].to(self.device)
        if self.meta.get("resize_mode") != "shorter_side_center_crop":
            return CamInput(tensor, rgb, lambda heat: cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR))
        # The model saw a centre crop: the heatmap covers that square of the original image.
        crop_pct = float(self.meta.get("crop_pct") or 1.0)
        scale = math.floor(self.size / crop_pct) / min(w, h)
        side = self.size / scale
        x0, y0 = (w - side) / 2, (h - side) / 2

        def to_original(heat: np.ndarray) -> np.ndarray:
            full = np.zeros((h, w), dtype=np.float32)
            left, top = max(0, round(x0)), max(0, round(y0))
            right, bottom = min(w, round(x0 + side)), min(h, round(y0 + side))
            if right > left and bottom > top:
                full[top:bottom, left:right] = cv2.resize(heat, (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
            return full

        return CamInput(tensor, rgb, to_original)

    def xai_target(self, cam_input: CamInput, reported: dict):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        return ClassifierOutputTarget(reported["class_id"]), {"class_id": reported["class_id"], "class_name": reported["class_name"]}


def _is_grid(shape: tuple) -> bool:
    """A feature map of the (square) probe image: (B, C, H, W) with H = W > 1. Attention
    internals (B, heads, tokens, dim) are not square."""
    return len(shape) == 4 and shape[2] > 1 and shape[2] == shape[3]


def _token_grid(tokens: int) -> tuple[int, int] | None:
    """(prefix tokens, side) when `tokens` is a few class/register tokens plus a square grid."""
    for prefix in range(0, 9):
        side = math.isqrt(max(tokens - prefix, 0))
        if side > 1 and side * side == tokens - prefix:
            return prefix, side
    return None


def read_checkpoint_framework(path: str | Path) -> str | None:
    """The framework of a timm/transformers checkpoint, or None when the file is not one."""
    from .checkpoints import CheckpointError, read_metadata

    try:
        return str(read_metadata(path).get("framework"))
    except CheckpointError:
        return None


@entry
def checkpoint_framework(params: CheckpointParams) -> str | None:
    return read_checkpoint_framework(params["checkpoint"])


@entry
def open_session(params: SessionParams) -> ModelInfo:
    backend = ClassifierBackend(params["checkpoint"], params)
    if backend.meta.get("task_type") == "semantic_segmentation":
        from .semantic_infer import SemanticBackend

        backend = SemanticBackend(backend)
    return open_with(backend, params)
