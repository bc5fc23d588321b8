"""CoreML and TFLite (LiteRT) conversion and checks, shared by every framework's exporter.

The converters are heavy and optional: they live in the `export` requirements group
(python/requirements-export.txt), which the container image installs and a development venv gets
with `VISION_TRAINER_GROUPS=export bash scripts/setup-python.sh`. `missing_packages` says what a
format lacks, so the job can name the group before downloading anything.

CoreML: coremltools converts on Linux, but running a CoreML model needs macOS (Core ML itself).
Here an export is checked structurally (`inspect_coreml`): the saved package is loaded back, its
spec must declare the input shape the job asked for, outputs with static shapes, and, for
classifiers, the class labels in the model's output order. Predictions are not compared here.

TFLite: litert-torch (Google's maintained PyTorch-to-LiteRT converter, the one ultralytics' own
`format=litert` export uses too) converts from torch.export; the result runs in the LiteRT
interpreter (ai-edge-litert), so validation compares its predictions with the checkpoint's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol import CoremlInspection, InspectCoremlParams
from ..support import entry

REQUIREMENTS_GROUP = "python/requirements-export.txt"
# By import name: the pip requirement (python/requirements-export.txt pins the versions).
FORMAT_PACKAGES: dict[str, list[tuple[str, str]]] = {
    "coreml": [("coremltools", "coremltools")],
    "tflite": [("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert")],
}


def missing_packages(export_format: str) -> list[str]:
    return [spec for module, spec in FORMAT_PACKAGES.get(export_format, []) if importlib.util.find_spec(module) is None]


_patched = False


def patch_coremltools_numpy() -> None:
    """coremltools 9.0 folds a constant `int(x)`/`bool(x)` of a one-element array with
    `int(array)`, which numpy 2.4 refuses (only 0-d arrays convert to Python scalars; coremltools
    issue 2633, unfixed in its latest release). The same two torch ops, registered again with the
    element taken first; everything else is coremltools' own conversion."""
    global _patched
    if _patched:
        return
    import numpy as np
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch import ops
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op

    def cast(context, node, dtype, dtype_name):
        x = ops._get_inputs(context, node, expected=1)[0]
        if x.can_be_folded_to_const() and not isinstance(x.val, dtype) and np.size(x.val) == 1:
            context.add(mb.const(val=dtype(np.asarray(x.val).item()), name=node.name), node.name)
            return
        ops._cast(context, node, dtype, dtype_name)

    @register_torch_op(torch_alias=["bool"], override=True)
    def _bool(context, node):
        cast(context, node, bool, "bool")

    @register_torch_op(torch_alias=["int"], override=True)
    def _int(context, node):
        cast(context, node, int, "int32")

    _patched = True


def coreml_from_torch(model, example, path: Path, *, output: str, half: bool) -> list[str]:
    """A traced module converted to an ML program (.mlpackage) with a float tensor input
    "images" [B, 3, H, W] (normalised as metadata.json says) and one output named `output`."""
    import coremltools as ct
    import torch

    patch_coremltools_numpy()
    with torch.inference_mode():
        traced = torch.jit.trace(model.cpu().eval(), example.cpu(), check_trace=False)
    converted = ct.convert(
        traced,
        inputs=[ct.TensorType(name="images", shape=tuple(example.shape))],
        outputs=[ct.TensorType(name=output)],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16 if half else ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.iOS15,
    )
    converted.save(str(path))
    return [f"coremltools {ct.__version__} ML program from torch.jit.trace ({'float16' if half else 'float32'} compute precision)"]


def tflite_from_torch(model, example, path: Path, *, quantize: str | None, calibration: list[np.ndarray] | None = None) -> tuple[list[str], int | None]:
    """The module converted by litert-torch (torch.export, then LiteRT's converter) to one
    .tflite file, input [B, 3, H, W] float32 as torch takes it. `quantize`: "int8" is the
    quantizer's dynamic-range recipe (int8 weights, activations quantized at run time), "float16"
    casts the weights of convolutions and fully connected layers to float16, "static" is
    full-integer int8 calibrated on `calibration` (`static_int8_from_torch`). Returns the notes
    and the float32 file's size when quantized."""
    import litert_torch

    edge = litert_torch.convert(model.cpu().eval(), (example.cpu(),))
    edge.export(str(path))
    notes = [f"litert-torch {_version('litert-torch')}: torch.export, then the LiteRT converter"]
    if quantize is None:
        return notes, None
    unquantized = path.stat().st_size
    if quantize == "static":
        notes.append(static_int8_from_torch(model, example, path, calibration or []))
        return notes, unquantized
    notes.append(quantize_tflite_weights(path, quantize))
    return notes, unquantized


def quantize_tflite_weights(path: Path, quantize: str) -> str:
    """Rewrites a float32 .tflite file in place with ai-edge-quantizer: "int8" dynamic-range
    (int8 weights, activations quantized at run time) or "float16" weights (float casting,
    computed in float32). Returns what was done."""
    from ai_edge_quantizer import qtyping, quantizer, recipe

    qt = quantizer.Quantizer(str(path))
    if quantize == "int8":
        qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        note = f"ai-edge-quantizer {_version('ai-edge-quantizer')} dynamic_wi8_afp32 (int8 weights, float32 activations quantized at run time)"
    elif quantize == "float16":
        qt.add_weight_only_config(
            regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16, algorithm_key=recipe.AlgorithmName.FLOAT_CASTING
        )
        note = f"ai-edge-quantizer {_version('ai-edge-quantizer')} float16 weights (float casting; computed in float32)"
    else:
        raise ValueError(f"TFLite exports quantize to int8 or float16, not {quantize}")
    qt.quantize().export_model(str(path), overwrite=True)
    return note


def static_int8_from_torch(model, example, path: Path, calibration: list[np.ndarray]) -> str:
    """Full-integer int8 (static) through litert-torch's PT2E quantizer: torch.export, observers
    inserted by the quantizer's symmetric config (per-channel int8 weights, int8 activations),
    calibrated by running the validation split's preprocessed images through the prepared graph,
    converted to quantize/dequantize pairs that LiteRT's converter folds into int8 kernels. The
    model's input tensor is int8 too, and its output where the last op is quantized (logits; an
    embedded softmax stays float32): their scale and zero point are in the file, and the wrappers
    quantize the normalised input and dequantize an int8 output. Overwrites `path`."""
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calibration:
        raise ValueError("static quantization needs calibration images; VALIDATION_DATASET_ID gave none")
    model, example = model.cpu().eval(), example.cpu()
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(torch.from_numpy(batch))
    converted = convert_pt2e(prepared, fold_quantize=False)
    litert_torch.convert(converted, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    from ai_edge_litert.interpreter import Interpreter

    # An op the quantizer does not annotate (the softmax INCLUDE_POSTPROCESSING embeds) stays float: say what the file holds.
    interpreter = Interpreter(model_path=str(path))
    io = [np.dtype(d["dtype"]).name for d in interpreter.get_input_details()] + [np.dtype(d["dtype"]).name for d in interpreter.get_output_details()]
    return (
        f"litert-torch PT2E static int8 (per-channel int8 weights, int8 activations; {io[0]} input, {'/'.join(io[1:])} output), "
        f"calibrated on {len(calibration)} images"
    )


def static_int8_tflite_file(path: Path, calibration: list[np.ndarray]) -> str:
    """Static int8 of a float32 .tflite file with ai-edge-quantizer, the recipe ultralytics' own
    LiteRT export applies for `quantize=8` (static_wi8_ai8: int8 weights and activations,
    calibrated by running `calibration` through the model), input and output left float32 as
    ultralytics leaves them (its box coordinates are normalised to 0..1 for int8 ranges).
    Rewrites `path` in place; returns what was done."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import qtyping, quantizer, recipe

    if not calibration:
        raise ValueError("static quantization needs calibration images; VALIDATION_DATASET_ID gave none")
    signatures = Interpreter(model_path=str(path)).get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"the LiteRT model has signatures {sorted(signatures)}, not one")
    ((name, signature),) = signatures.items()
    (input_name,) = signature["inputs"]
    qt = quantizer.Quantizer(str(path))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    for op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
        qt.update_quantization_recipe(regex=".*", operation_name=op, algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
    result = qt.calibrate({name: [{input_name: batch} for batch in calibration]})
    qt.quantize(calibration_result=result).export_model(str(path), overwrite=True)
    return (
        f"ai-edge-quantizer {_version('ai-edge-quantizer')} static_wi8_ai8 (int8 weights and activations, float32 input and output), "
        f"calibrated on {len(calibration)} images"
    )


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _shape_of(feature) -> list[int]:
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        return [int(d) for d in feature.type.multiArrayType.shape]
    if kind == "imageType":
        t = feature.type.imageType
        channels = 1 if t.colorSpace == t.GRAYSCALE else 3
        return [1, channels, int(t.height), int(t.width)]
    return []


def _dtype_of(feature) -> str:
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        import coremltools as ct

        name = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(feature.type.multiArrayType.dataType)
        return name.lower()
    if kind == "imageType":
        return "image (uint8 RGB, scaled in the model)"
    return kind or "unknown"


@entry
def inspect_coreml(params: InspectCoremlParams) -> CoremlInspection:
    """The structural check of a saved .mlpackage (predictions need macOS): its spec loaded back
    with coremltools, the declared input against the expected shape, every output with a static
    shape, class labels against the expected names when the model is a classifier. Raises, naming
    the mismatch, when a check fails."""
    import coremltools as ct

    path = Path(params["path"])
    spec = ct.utils.load_spec(str(path))
    kind = spec.WhichOneof("Type")
    desc = spec.description
    checks: list[str] = [f"loaded the {kind} spec (specification version {spec.specificationVersion}) with coremltools {ct.__version__}"]
    inputs = [{"name": f.name, "shape": _shape_of(f), "dtype": _dtype_of(f)} for f in desc.input]
    outputs = [{"name": f.name, "shape": _shape_of(f), "dtype": _dtype_of(f)} for f in desc.output]
    expected = [int(v) for v in params["input_shape"]]
    if len(inputs) != 1 or inputs[0]["shape"] != expected:
        raise ValueError(f"the CoreML model's inputs are {inputs}, not one input of shape {expected}")
    checks.append(f"one input {inputs[0]['name']!r} of shape {expected}")
    tensors = [o for o in outputs if o["dtype"] not in ("dictionaryType", "stringType", "int64Type")]
    if not outputs or any(not o["shape"] for o in tensors):
        raise ValueError(f"the CoreML model's outputs have no static shapes: {outputs}")
    checks.append("outputs " + ", ".join(f"{o['name']!r} {o['shape'] if o in tensors else o['dtype']}" for o in outputs))
    names = [str(n) for n in params["class_names"]]
    labels = _class_labels(spec)
    if labels is not None:
        if labels != names:
            raise ValueError(f"the CoreML model's class labels {labels} are not the checkpoint's classes {names}")
        checks.append(f"class labels are the checkpoint's {len(names)} classes, in output order")
    elif params["classifier"]:
        probabilities = next((o for o in outputs if o["shape"]), None)
        if probabilities is None or probabilities["shape"][-1] != len(names):
            raise ValueError(f"the CoreML classifier's output {probabilities} does not end in the checkpoint's {len(names)} classes")
        checks.append(f"output {probabilities['name']!r} holds the checkpoint's {len(names)} classes")
    return {
        "inputs": inputs,
        "outputs": outputs,
        "spec_type": kind or "unknown",
        "class_labels": labels,
        "checks": checks,
        "user_metadata": dict(desc.metadata.userDefined),
    }


def _class_labels(spec: Any) -> list[str] | None:
    """The class labels a CoreML classifier declares (ultralytics' classify exports: the ML
    program's `classify` op, whose classes are an inline list of strings), or None."""
    if spec.WhichOneof("Type") != "mlProgram" or not spec.description.predictedFeatureName:
        return None
    for function in spec.mlProgram.functions.values():
        block = function.block_specializations[function.opset]
        for op in block.operations:
            if op.type != "classify":
                continue
            value = op.inputs["classes"].arguments[0].value.immediateValue
            if value.WhichOneof("value") == "list":
                return [str(v.immediateValue.tensor.strings.values[0]) for v in value.list.values]
    return None
