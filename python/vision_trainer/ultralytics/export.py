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
from ..common.export_onnx import embed_preprocessing
from ..common.export_validation import register_model
from ..common.mobile_export import FORMAT_PACKAGES, missing_packages, patch_coremltools_numpy, quantize_tflite_weights, static_int8_tflite_file
from ..protocol import (
    CheckFormatAnswer,
    CheckFormatParams,
    CheckpointParams,
    ExportAnswer,
    NmsParams,
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
        "class_ids": _class_ids(net),
        "image_size": [int(v) for v in size],
        "keypoint_shape": [int(v) for v in net.kpt_shape] if task == "pose_estimation" else None,
        "stride": int(max(net.stride)) if hasattr(net, "stride") else 32,
        "mask_coefficients": int(net.model[-1].nm) if task == "instance_segmentation" else None,
        "versions": {"ultralytics": _version("ultralytics"), "torch": _version("torch")},
    }


def _class_ids(net) -> list[int]:
    names = net.names
    return ClassIds.of_ultralytics(net, [str(names[i]) for i in range(len(names))]).ids


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


@entry
def export(params: UltralyticsExportParams) -> ExportAnswer:
    """Writes params["format"] with ultralytics' exporter; `quantize` is ultralytics' own option."""
    export_format = params["format"]
    out_dir = Path(params["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    if params["quantize_static"]:
        if export_format != "torchscript":
            raise ValueError("static int8 quantization of ultralytics models is written as TorchScript only")
        return _static_int8_torchscript(params, out_dir)
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
    # ultralytics' LiteRT export writes float32 for quantize=16 (it leaves float16 to the runtime's
    # delegate) and calibrates quantize=8 only on a dataset YAML: both are applied here to its
    # float32 file instead (mobile_export), calibrated on the job's own preprocessed images.
    after = params["quantize"] if export_format == "tflite" and params["quantize"] in (16, 8) else None
    if params["quantize"] is not None and after is None:  # format-native: 16 (float16), "w8a32" (LiteRT dynamic int8)
        kwargs["quantize"] = params["quantize"]
    nms = params["nms"]
    if nms is not None:
        if export_format != "onnx":
            raise ValueError("NMS is embedded in ultralytics' ONNX exports only")
        kwargs.update(_nms_arguments(nms, int(params["batch"])))
    class_ids = _class_ids(model.model)
    path = Path(model.export(**kwargs))
    source.unlink(missing_ok=True)
    notes: list[str] = []
    if nms is not None:
        _dataset_class_ids(str(path), class_ids)
        notes.append(
            f"NMS built into the model (ultralytics nms=True: class-aware, IoU {nms['iou_threshold']}, scores above {nms['min_confidence']}, "
            f"at most {nms['max_detections']} detections, dataset class ids)"
        )
    if params["embed_preprocessing"] is not None:
        if export_format != "onnx":
            raise ValueError("preprocessing is embedded in ultralytics' ONNX exports only")
        embed_preprocessing(str(path), params["embed_preprocessing"])
        notes.append("normalisation and NHWC -> NCHW built into the model (input uint8 NHWC)")
    answer: ExportAnswer = {"path": str(path), "directory": path.is_dir(), "notes": notes}
    if after is not None:
        answer["unquantized_size_bytes"] = path.stat().st_size
        if after == 16:
            notes.append(quantize_tflite_weights(path, "float16"))
        else:
            shape = [int(v) for v in params["calibration_shape"]]
            notes.append(static_int8_tflite_file(path, [np.fromfile(f, dtype=np.float32).reshape(shape) for f in params["calibration"]]))
    return answer


def _layers(net):
    """The network's layers run as ultralytics' DetectionModel/ClassificationModel run them
    (each layer's inputs by index, the saved outputs kept), without the model's own forward,
    whose training, augmentation and profiling branches torch.fx cannot trace."""
    import torch

    class Layers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = net.model
            self.save = set(net.save)

        def forward(self, x):
            outputs: list = []
            for m in self.model:
                if m.f != -1:
                    x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
                x = m(x)
                outputs.append(x if m.i in self.save else None)
            return x

    return Layers().eval()


def _heads_for_export(net, fmt: str, xyxy: bool | None = None) -> None:
    """Puts the Detect-family and Classify heads in the state ultralytics' exporter traces them in
    (export outputs, static shapes, no cached anchors); `xyxy` where NMS follows."""
    from ultralytics.nn.modules import Classify, Detect

    for m in net.modules():
        if isinstance(m, (Detect, Classify)):
            m.export = True
            m.format = fmt
            if isinstance(m, Detect):
                m.dynamic = False
                m.shape = None
                if xyxy is not None:
                    m.xyxy = xyxy


def _static_int8_torchscript(params: UltralyticsExportParams, out_dir: Path) -> ExportAnswer:
    """TorchScript with the backbone and neck in int8: torch FX static quantization (x86 backend,
    per-channel int8 weights, calibrated on the preprocessed images TypeScript wrote), BatchNorm
    folded first as ultralytics' exporter does. The detection-family heads (box decoding, DFL,
    anchors; Segment's prototypes, Pose's keypoints) and attention blocks keep their float32
    modules: their forward branches on tensor shapes, which FX cannot trace. A classifier is int8
    to its softmax. Outputs have the layout of ultralytics' own TorchScript export."""
    import torch
    from ultralytics.nn.modules.block import C2f

    from ..common.torch_export import float_size_bytes, static_int8, traced_at_level

    configure_offline()
    net = _load(params["checkpoint"]).model.float().eval().cpu().fuse()
    _heads_for_export(net, "torchscript")
    for m in net.modules():
        if isinstance(m, C2f):
            # The same computation with split() in place of list(chunk()), which FX cannot iterate.
            m.forward = m.forward_split
    layers = _layers(net)
    h, w = (int(v) for v in params["input_size"])
    example = torch.zeros(int(params["batch"]), 3, h, w)
    level = int(params["optimization_level"])
    unquantized = float_size_bytes(layers, example, level, out_dir)
    float_types = _float_module_types(net)
    quantized, count = static_int8(layers, example, params["calibration"], params["calibration_shape"], float_types)
    kept = sorted({t.__name__ for t in float_types})
    notes = [
        f"torch FX static int8 quantization (x86 backend, per-channel weights), calibrated on {count} images; "
        + (f"float32 kept: {', '.join(kept)}" if kept else "every layer int8")
    ]
    path = out_dir / "model.torchscript"
    traced_at_level(quantized, example, level, notes, quantized=True).save(str(path))
    return {"path": str(path), "directory": False, "notes": notes, "unquantized_size_bytes": unquantized, "float32_modules": kept}


def _float_module_types(net) -> tuple[type, ...]:
    """The module classes left float by static int8: detection-family heads and attention blocks."""
    from ultralytics.nn.modules import Detect
    from ultralytics.nn.modules.block import Attention

    return tuple(sorted({type(m) for m in net.modules() if isinstance(m, (Detect, Attention))}, key=lambda t: t.__name__))


def _nms_arguments(nms: NmsParams, batch: int) -> dict[str, Any]:
    """ultralytics' export arguments of NMSModel, the NMS it builds into the graph."""
    return {
        "nms": True,
        "conf": float(nms["min_confidence"]),
        "iou": float(nms["iou_threshold"]),
        "max_det": int(nms["max_detections"]),
        "agnostic_nms": False,
        "batch": batch,
    }


def _dataset_class_ids(path: str, class_ids: list[int]) -> None:
    """Rewrites column 5 of output0 (ultralytics' NMS output: x1, y1, x2, y2, score, class index,
    extras) from the model's class index to the dataset's class id, in the graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(path)
    graph = model.graph
    out = graph.output[0]
    name = out.name
    width = out.type.tensor_type.shape.dim[2].dim_value
    raw = f"{name}__class_index"
    for node in graph.node:
        for i, value in enumerate(node.output):
            if value == name:
                node.output[i] = raw

    def const(tag: str, values, dtype) -> str:
        tensor = numpy_helper.from_array(np.asarray(values, dtype=dtype), f"{name}__{tag}")
        graph.initializer.append(tensor)
        return tensor.name

    axis = const("axis", [2], np.int64)
    graph.node.extend(
        [
            helper.make_node("Slice", [raw, const("s0", [0], np.int64), const("e0", [5], np.int64), axis], [f"{name}__head"]),
            helper.make_node("Slice", [raw, const("s1", [5], np.int64), const("e1", [6], np.int64), axis], [f"{name}__index_f"]),
            helper.make_node("Slice", [raw, const("s2", [6], np.int64), const("e2", [width], np.int64), axis], [f"{name}__extras"]),
            helper.make_node("Cast", [f"{name}__index_f"], [f"{name}__index"], to=TensorProto.INT64),
            helper.make_node("Gather", [const("id_table", class_ids, np.float32), f"{name}__index"], [f"{name}__class_ids"], axis=0),
            helper.make_node("Concat", [f"{name}__head", f"{name}__class_ids", f"{name}__extras"], [name], axis=2),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, path)


class _ExportModeNetwork:
    """The checkpoint's network as the exporter sees it (heads in export mode, no fusing), so
    its outputs are those of the exported model: detect [1, 4+nc, anchors], segment plus
    prototypes, pose [1, 4+nc+K*D, anchors], classify probabilities [1, nc]."""

    def __init__(self, checkpoint: str, device: str, normalized_coordinates: bool = False, nms: NmsParams | None = None):
        import torch

        self.torch = torch
        self.device = torch.device("cuda:0" if resolve_export_device(device) not in ("cpu", "mps") and torch.cuda.is_available() else "cpu")
        yolo = _load(checkpoint)
        net = yolo.model.float().eval().to(self.device)
        self.normalized = normalized_coordinates and yolo.task in ("detect", "segment", "pose")
        self.task, self.nc, self.kpt_shape = yolo.task, len(net.names), getattr(net, "kpt_shape", None)
        _heads_for_export(net, "onnx", xyxy=nms is not None)
        self.net = net
        self.class_ids = None
        if nms is not None:
            # The exporter's own NMS module with the export's arguments, then the same class-id column.
            from types import SimpleNamespace

            from ultralytics.engine.exporter import NMSModel

            net.task = yolo.task
            self.net = NMSModel(net, SimpleNamespace(format="onnx", dynamic=False, opset=12, **_nms_arguments(nms, 1)))
            self.class_ids = torch.tensor(_class_ids(net), dtype=torch.float32, device=self.device)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        net = self.net
        if self.normalized:
            # As ultralytics' LiteRT export wraps the network: coordinates / input size.
            from ultralytics.utils.export.engine import _NormalizeCoords

            net = _NormalizeCoords(self.net, int(batch.shape[2]), int(batch.shape[3]), self.task, self.nc, self.kpt_shape)
        with self.torch.inference_mode():
            y = net(self.torch.from_numpy(batch).to(self.device))
        parts = list(y) if isinstance(y, (list, tuple)) else [y]
        if self.class_ids is not None:
            rows = parts[0].clone()
            rows[..., 5] = self.class_ids[rows[..., 5].long()]
            parts[0] = rows
        return [p.float().cpu().numpy() for p in parts if isinstance(p, self.torch.Tensor)]


@entry
def open_original(params: OpenOriginalParams) -> OpenedModel:
    """The checkpoint for export validation, its outputs in the exported model's layout (a
    classifier's softmax is part of the network; a detector's embedded NMS is `nms`, run here by
    the same ultralytics module the exporter traced)."""
    network = _ExportModeNetwork(params["checkpoint"], params["device"], bool(params.get("normalized_coordinates", False)), params.get("nms"))
    return register_model(params["handle"], network)
