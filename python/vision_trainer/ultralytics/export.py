"""Export of ultralytics checkpoints through ultralytics' own exporter, driven from TypeScript
(adapters/ultralytics/export.ts).

`describe` reads what a checkpoint is (task, classes, training size); `export` writes one format;
`open_original` loads the checkpoint's network with its head in export mode, so its raw outputs
have exactly the layout of the exported model's (the validation step compares the two).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..common.class_ids import ClassIds
from ..common.export_validation import register_model
from ..common.mobile_export import FORMAT_PACKAGES, missing_packages, patch_coremltools_numpy
from ..protocol import (
    CheckFormatAnswer,
    CheckFormatParams,
    CheckpointParams,
    ExportAnswer,
    OpenedModel,
    OpenOriginalParams,
    UltralyticsExportParams,
    UltralyticsFacts,
)
from ..support import entry
from .train import configure_offline

TASK_BY_ULTRALYTICS = {"detect": "object_detection", "segment": "instance_segmentation", "pose": "pose_estimation", "classify": "image_classification"}
# Our EXPORT_FORMAT names -> ultralytics' `format=` argument.
FORMAT_ARGUMENT = {"onnx": "onnx", "torchscript": "torchscript", "openvino": "openvino", "coreml": "coreml", "tflite": "litert", "tensorrt": "engine"}
# TensorRT is NVIDIA's, matched to the node's CUDA: not in any requirements group (the GPU image's).
TENSORRT_PACKAGES = [("tensorrt", "tensorrt>=8.5 (NVIDIA's wheels, matching the CUDA version)")]


def _load(checkpoint: str):
    configure_offline()
    from ultralytics import YOLO

    return YOLO(checkpoint)


def resolve_export_device(device: str) -> str:
    """DEVICE for the exporter: ultralytics takes "cpu" or GPU indices."""
    import torch

    if device in ("auto", ""):
        return "0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        return device.split(":", 1)[1] if ":" in device else "0"
    return device.split(",")[0] if device[0].isdigit() else device


@entry
def check_format(params: CheckFormatParams) -> CheckFormatAnswer:
    """Fails, with what is missing and what to do, when this machine cannot write the format."""
    import torch

    export_format, device = params["format"], params["device"]
    if export_format in FORMAT_PACKAGES:
        missing = missing_packages(export_format)
        if missing:
            return {"device": "cpu", "missing_packages": missing}
    missing = [spec for module, spec in TENSORRT_PACKAGES if export_format == "tensorrt" and importlib.util.find_spec(module) is None]
    packages = f"the Python package(s) {', '.join(missing)}, which this image does not install" if missing else ""
    if export_format == "tensorrt" and not torch.cuda.is_available():
        raise RuntimeError(
            "EXPORT_FORMAT=tensorrt builds a TensorRT engine for the GPU it runs on and needs a CUDA GPU; torch sees none on this machine"
            + (f" (it also needs {packages})" if packages else "")
            + ". Run the export job on a GPU node (DEVICE=0), or export to onnx and build the engine on the target with trtexec"
        )
    if missing:
        raise RuntimeError(f"EXPORT_FORMAT={export_format} needs {packages}; add them to the GPU image, or export to onnx, torchscript or openvino")
    if export_format == "coreml" and resolve_export_device(device) != "cpu":
        return {"device": "cpu", "note": "CoreML export runs on the CPU"}
    return {"device": resolve_export_device(device)}


@entry
def describe(params: CheckpointParams) -> UltralyticsFacts:
    """The facts about a checkpoint an export needs; the TypeScript adapter turns them into the
    metadata's pre- and post-processing specification."""
    from .sam import Sam2WeightsError, read_state

    if read_state(params["checkpoint"]) is not None:
        raise Sam2WeightsError(
            "the checkpoint holds SAM 2 weights, which this runtime does not export: SAM 2 runs in inference jobs (vision-trainer infer) only"
        )
    model = _load(params["checkpoint"])
    net = model.model
    task = TASK_BY_ULTRALYTICS.get(model.task)
    if task is None:
        raise ValueError(f"ultralytics task {model.task!r} cannot be exported by this platform (supported: {', '.join(TASK_BY_ULTRALYTICS)})")
    names = net.names
    train_args = getattr(net, "args", {}) or {}
    imgsz = train_args.get("imgsz", 640)
    size = list(imgsz) if isinstance(imgsz, (list, tuple)) else [int(imgsz), int(imgsz)]
    yaml_file = Path(net.yaml.get("yaml_file", "") or "")
    return {
        "framework": "ultralytics",
        "task_type": task,
        "architecture": yaml_file.stem or type(net).__name__,
        "class_names": [str(names[i]) for i in range(len(names))],
        "class_ids": ClassIds.of_ultralytics(net, [str(names[i]) for i in range(len(names))]).ids,
        "image_size": [int(v) for v in size],
        "keypoint_shape": [int(v) for v in net.kpt_shape] if task == "pose_estimation" else None,
        "stride": int(max(net.stride)) if hasattr(net, "stride") else 32,
        "mask_coefficients": int(net.model[-1].nm) if task == "instance_segmentation" else None,
        "versions": {"ultralytics": _version("ultralytics"), "torch": _version("torch")},
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


@entry
def export(params: UltralyticsExportParams) -> ExportAnswer:
    """Writes params["format"] with ultralytics' exporter; `quantize` is ultralytics' own option."""
    export_format = params["format"]
    out_dir = Path(params["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    # ultralytics names its output after the input file and writes it beside it.
    source = out_dir / "model.pt"
    shutil.copyfile(params["checkpoint"], source)
    model = _load(str(source))
    kwargs: dict[str, Any] = {
        "format": FORMAT_ARGUMENT[export_format],
        "imgsz": list(params["input_size"]),
        "batch": int(params["batch"]),
        "device": resolve_export_device(params["device"]),
        "dynamic": False,
        "nms": False,
        "verbose": False,
    }
    if export_format in ("onnx", "tensorrt"):
        kwargs["opset"] = int(params["opset"])
        kwargs["simplify"] = bool(params["simplify"])
    if export_format == "coreml":
        patch_coremltools_numpy()
    if params["quantize"] is not None:  # format-native: 16 (float16), "w8a32" (LiteRT dynamic int8)
        kwargs["quantize"] = params["quantize"]
    path = Path(model.export(**kwargs))
    source.unlink(missing_ok=True)
    return {"path": str(path), "directory": path.is_dir()}


class _ExportModeNetwork:
    """The checkpoint's network as the exporter sees it (heads in export mode, no fusing), so
    its outputs are those of the exported model: detect [1, 4+nc, anchors], segment plus
    prototypes, pose [1, 4+nc+K*D, anchors], classify probabilities [1, nc]."""

    def __init__(self, checkpoint: str, device: str, normalized_coordinates: bool = False):
        import torch
        from ultralytics.nn.modules import Classify, Detect

        self.torch = torch
        self.device = torch.device("cuda:0" if resolve_export_device(device) not in ("cpu", "mps") and torch.cuda.is_available() else "cpu")
        model = _load(checkpoint)
        net = model.model.float().eval().to(self.device)
        self.normalized = normalized_coordinates and model.task in ("detect", "segment", "pose")
        self.task, self.nc, self.kpt_shape = model.task, len(net.names), getattr(net, "kpt_shape", None)
        for m in net.modules():
            if isinstance(m, (Detect, Classify)):
                m.export = True
                m.format = "onnx"
                if isinstance(m, Detect):
                    m.dynamic = False
                    m.xyxy = False
                    m.shape = None
        self.net = net

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        net = self.net
        if self.normalized:
            # As ultralytics' LiteRT export wraps the network: coordinates / input size.
            from ultralytics.utils.export.engine import _NormalizeCoords

            net = _NormalizeCoords(self.net, int(batch.shape[2]), int(batch.shape[3]), self.task, self.nc, self.kpt_shape)
        with self.torch.inference_mode():
            y = net(self.torch.from_numpy(batch).to(self.device))
        parts = y if isinstance(y, (list, tuple)) else [y]
        return [p.float().cpu().numpy() for p in parts if isinstance(p, self.torch.Tensor)]


@entry
def open_original(params: OpenOriginalParams) -> OpenedModel:
    """The checkpoint for export validation, its outputs in the exported model's layout (a
    classifier's softmax is part of the network, so `embedded_postprocessing` changes nothing)."""
    network = _ExportModeNetwork(params["checkpoint"], params["device"], bool(params.get("normalized_coordinates", False)))
    return register_model(params["handle"], network)
