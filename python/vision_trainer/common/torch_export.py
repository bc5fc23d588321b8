"""Export of timm and transformers checkpoints (python/vision_trainer/common/checkpoints.py) with
torch's own tools: ONNX through torch.onnx.export, TorchScript through torch.jit.trace,
OpenVINO IR converted from the ONNX file by openvino, CoreML and TFLite through the optional
converters of common/mobile_export.py. Driven from adapters/common/torch-export.ts.

Every exported model maps a normalised float batch [B, 3, H, W] to logits [B, num_classes]
(zero-shot models: the class prompts are baked in), which the wrappers turn into top-k.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol import CheckFormatAnswer, CheckFormatParams, CheckpointParams, ExportAnswer, OpenedModel, OpenOriginalParams, TorchExportParams, TorchFacts
from ..support import entry
from .class_ids import ClassIds
from .export_onnx import embed_preprocessing
from .export_validation import register_model
from .mobile_export import coreml_from_torch, missing_packages, tflite_from_torch

FORMATS = ("onnx", "torchscript", "openvino", "coreml", "tflite")


def _build(checkpoint: str, device: str = "cpu"):
    from .checkpoints import build_model_from_checkpoint

    return build_model_from_checkpoint(checkpoint, device=device)


def _device(device: str) -> str:
    from .torch_runtime import resolve_device

    return str(resolve_device(device))


@entry
def check_format(params: CheckFormatParams) -> CheckFormatAnswer:
    export_format, device = params["format"], params["device"]
    if export_format not in FORMATS:
        raise RuntimeError(f"timm and transformers models export to {', '.join(FORMATS)}, not {export_format}")
    if export_format == "openvino" and importlib.util.find_spec("openvino") is None:
        raise RuntimeError("EXPORT_FORMAT=openvino needs the Python package openvino, which this image does not install")
    missing = missing_packages(export_format)
    if missing:
        return {"device": "cpu", "missing_packages": missing}
    # The mobile converters trace on the CPU.
    return {"device": "cpu" if export_format in ("coreml", "tflite") else _device(device)}


@entry
def describe(params: CheckpointParams) -> TorchFacts:
    from .checkpoints import read_metadata

    meta = read_metadata(params["checkpoint"])
    size = int(meta["image_size"])
    return {
        "framework": meta["framework"],
        "task_type": meta["task_type"],
        "architecture": meta["architecture"],
        "model_name": meta["model_name"],
        "class_names": [str(n) for n in meta["class_names"]],
        "class_ids": ClassIds.of_checkpoint(meta, meta["class_names"]).ids,
        "image_size": [size, size],
        "mean": [float(v) for v in meta["mean"]],
        "std": [float(v) for v in meta["std"]],
        "interpolation": meta.get("interpolation", "bilinear"),
        "resize_mode": meta.get("resize_mode", "shorter_side_center_crop"),
        "crop_pct": float(meta.get("crop_pct", 1.0)),
        "versions": meta.get("versions", {}),
    }


def _with_softmax(model):
    """The classifier followed by a softmax over its classes (INCLUDE_POSTPROCESSING)."""
    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.softmax(self.net(x), dim=-1)

    return WithSoftmax(model).eval()


def _onnx(model, example, path: Path, opset: int, output: str) -> None:
    import torch

    torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=[output], opset_version=opset, dynamo=False, do_constant_folding=True)


@entry
def export(params: TorchExportParams) -> ExportAnswer:
    """Writes params["format"]: half is OpenVINO's float16 weights, quantize_dynamic and
    quantize_static TorchScript's int8."""
    import torch

    export_format = params["format"]
    out_dir = Path(params["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    device = _device(params["device"])
    model, meta = _build(params["checkpoint"], device)
    h, w = (int(v) for v in params["input_size"])
    example = torch.zeros(int(params["batch"]), 3, h, w, device=device)
    notes: list[str] = []
    if params["embed_softmax"]:
        model = _with_softmax(model)

    if params["embed_preprocessing"] is not None and export_format not in ("onnx", "openvino"):
        raise ValueError("preprocessing is embedded in ONNX and OpenVINO exports only")
    if export_format == "torchscript":
        return _torchscript(model, example, out_dir, params, notes)
    output = "probabilities" if params["embed_softmax"] else "logits"
    if export_format in ("coreml", "tflite"):
        if params["quantize_static"] and not params["calibration"]:
            raise ValueError("static quantization needs calibration images; VALIDATION_DATASET_ID gave none")
        try:
            return _mobile(model, example, out_dir, params, output, notes)
        except Exception as exc:
            raise _converter_failure(export_format, meta, exc) from exc

    onnx_path = out_dir / "model.onnx"
    _onnx(model, example, onnx_path, int(params["opset"]), output)
    if params["embed_preprocessing"] is not None:
        # Before the OpenVINO conversion, so that the IR takes the same uint8 NHWC input.
        embed_preprocessing(str(onnx_path), params["embed_preprocessing"])
        notes.append("normalisation and NHWC -> NCHW built into the model (input uint8 NHWC)")
    if export_format == "onnx":
        return {"path": str(onnx_path), "directory": False, "notes": notes}

    import openvino as ov

    folder = out_dir / "model_openvino_model"
    folder.mkdir(exist_ok=True)
    ov_model = ov.convert_model(str(onnx_path))
    ov.save_model(ov_model, str(folder / "model.xml"), compress_to_fp16=bool(params["half"]))
    onnx_path.unlink()
    return {"path": str(folder), "directory": True, "notes": ["converted from ONNX by openvino.convert_model"]}


def _mobile(model, example, out_dir: Path, params: TorchExportParams, output: str, notes: list[str]) -> ExportAnswer:
    if params["format"] == "coreml":
        path = out_dir / "model.mlpackage"
        notes += coreml_from_torch(model, example, path, output=output, half=bool(params["half"]))
        return {"path": str(path), "directory": True, "notes": notes}
    path = out_dir / "model.tflite"
    quantize = "static" if params["quantize_static"] else "int8" if params["quantize_dynamic"] else "float16" if params["half"] else None
    calibration = _calibration_batches(params) if quantize == "static" else None
    more, unquantized = tflite_from_torch(model, example, path, quantize=quantize, calibration=calibration)
    answer: ExportAnswer = {"path": str(path), "directory": False, "notes": notes + more}
    if unquantized is not None:
        answer["unquantized_size_bytes"] = unquantized
    return answer


# What converts a model of these frameworks to each format, for the failure message.
_CONVERTER = {"coreml": "coremltools", "tflite": "litert-torch"}


def _converter_failure(export_format: str, meta: dict[str, Any], exc: Exception) -> RuntimeError:
    """A converter that cannot handle an architecture fails deep inside (an op it does not
    implement, a rank its kernels refuse): the job's error names the model, the converter, its
    reason and the formats that take any model of the framework."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
    return RuntimeError(
        f"{_CONVERTER[export_format]} could not convert {meta.get('architecture')} ({meta.get('model_name')}) to {export_format}: "
        f"{type(exc).__name__}: {reason[:500]}. This architecture does not export to {export_format} with the pinned converter; "
        "export it to onnx, torchscript or openvino, which take every model of its framework"
    )


def traced_at_level(model, example, level: int, notes: list[str], quantized: bool):
    """torch.jit.trace, then OPTIMIZATION_LEVEL: 0-1 the trace as it is, 2 frozen (weights and
    attributes inlined as constants, Conv+BatchNorm folded, dead code removed), 3 also, for float
    models, weights and activations in channels-last layout (oneDNN's fast path for convolutions
    on x86 CPUs). torch.jit.optimize_for_inference is not used: its MKL-DNN weight constants
    cannot be saved (the archive does not load back)."""
    import copy

    import torch

    if level >= 3 and not quantized:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        example = example.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        traced = torch.jit.trace(model, example, check_trace=False)
    if level >= 2:
        traced = torch.jit.freeze(traced.eval())
        notes.append("torch.jit.freeze")
    if level >= 3 and not quantized:
        notes.append("channels-last weights and activations")
    return traced


def _calibration_batches(params: TorchExportParams) -> list[np.ndarray]:
    """The preprocessed calibration images TypeScript wrote (float32, each of calibration_shape)."""
    shape = [int(v) for v in params["calibration_shape"]]
    return [np.fromfile(path, dtype=np.float32).reshape(shape) for path in params["calibration"]]


def static_int8(model, example, calibration: list[str], calibration_shape: list[int], float_types: tuple[type, ...] = ()):
    """Static int8 quantization of the whole network (convolutions included): FX graph mode with
    the x86 backend's default qconfig (per-channel int8 weights, uint8 activations, histogram
    observers), calibrated on the preprocessed images TypeScript wrote. The converted modules are
    torch's quantized kernels (quantized::conv2d), which TorchScript carries and runs as int8.
    Modules of `float_types` are kept whole and float (FX does not trace into them: their
    Python control flow depends on tensor shapes); their inputs are dequantized."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    files, shape = calibration, [int(v) for v in calibration_shape]
    if not files:
        raise ValueError("static quantization needs calibration images; VALIDATION_DATASET_ID gave none")
    torch.backends.quantized.engine = "x86"
    qconfig = get_default_qconfig_mapping("x86")
    for kind in float_types:
        qconfig.set_object_type(kind, None)
    custom = PrepareCustomConfig().set_non_traceable_module_classes(list(float_types))
    prepared = prepare_fx(model.cpu().eval(), qconfig, example_inputs=(example,), prepare_custom_config=custom)
    with torch.inference_mode():
        for path in files:
            prepared(torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(shape)))
    return convert_fx(prepared), len(files)


def float_size_bytes(model, example, level: int, out_dir: Path) -> int:
    """The size of the float model as this level would ship it: what quantization is measured against."""
    float_path = out_dir / "model.float.torchscript"
    traced_at_level(model, example, level, [], quantized=False).save(str(float_path))
    size = float_path.stat().st_size
    float_path.unlink()
    return size


def _torchscript(model, example, out_dir: Path, params: TorchExportParams, notes: list[str]) -> ExportAnswer:
    import torch

    level = int(params["optimization_level"])
    path = out_dir / "model.torchscript"
    answer: ExportAnswer = {"path": str(path), "directory": False, "notes": notes}
    quantized = bool(params["quantize_dynamic"] or params["quantize_static"])
    if quantized:
        model, example = model.cpu(), example.cpu()
        answer["unquantized_size_bytes"] = float_size_bytes(model, example, level, out_dir)
    if params["quantize_dynamic"]:
        # Linear layers (transformer blocks, classifier heads) get int8 weights and dynamically
        # quantized activations; convolutions stay float (torch has no dynamic conv quantization).
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        notes.append("torch dynamic int8 quantization of nn.Linear layers")
    if params["quantize_static"]:
        model, count = static_int8(model, example, params["calibration"], params["calibration_shape"])
        notes.append(f"torch FX static int8 quantization (x86 backend, per-channel weights), calibrated on {count} images")
    traced_at_level(model, example, level, notes, quantized).save(str(path))
    return answer


class _Logits:
    def __init__(self, checkpoint: str, device: str, softmax: bool):
        import torch

        self.torch = torch
        self.device = _device(device)
        self.model, _ = _build(checkpoint, self.device)
        if softmax:
            self.model = _with_softmax(self.model)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        with self.torch.inference_mode():
            y: Any = self.model(self.torch.from_numpy(batch).to(self.device))
        return [y.float().cpu().numpy()]


@entry
def open_original(params: OpenOriginalParams) -> OpenedModel:
    """The checkpoint for export validation: its logits (probabilities when the export embeds the
    softmax), as the exported model's."""
    return register_model(params["handle"], _Logits(params["checkpoint"], params["device"], bool(params["embedded_postprocessing"])))
