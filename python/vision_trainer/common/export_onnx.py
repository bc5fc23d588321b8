"""ONNX graph passes and quantization shared by every framework's export.

`finalize(path, level)` makes an exported graph portable and lean; `quantize(params)` writes the
dynamic int8, static int8/int16 (calibrated) or float16 variant of a finalized model;
`specialize(path, level)` applies the runtime-specific optimizations of level 3 last and names
the operators of the final file. All three are
called from TypeScript (src/jobs/export/) after the framework's own exporter has written the file.
"""

from __future__ import annotations

import os

import numpy as np

from ..protocol import FinalizeAnswer, FinalizeParams, QuantizeAnswer, QuantizeParams, SpecializeAnswer
from ..support import entry

# Elementwise ops whose broadcasting older runtimes mishandle when one side is a constant of
# lower rank (OpenCV 4.6's DNN module computes a wrong shape for [1,4,N] * [1,N]).
BROADCAST_OPS = {"Mul", "Add", "Sub", "Div"}
# A constant is expanded to the full shape only while it stays small.
MAX_EXPANDED_ELEMENTS = 4_000_000


def _static_shapes(model) -> dict[str, list[int]]:
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def materialize_broadcast_constants(model) -> int:
    """Rewrites `x * c` where the constant c broadcasts to x's static shape into `x * c_full`,
    with c_full a new initializer of x's shape. The result is numerically identical and lets
    runtimes without general broadcasting (OpenCV DNN 4.6, Debian's) run the graph. Returns the
    number of rewritten operands."""
    from onnx import numpy_helper

    shapes = _static_shapes(model)
    initializers = {t.name: t for t in model.graph.initializer}
    constants = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    rewritten = 0
    for node in model.graph.node:
        if node.op_type not in BROADCAST_OPS or len(node.input) != 2:
            continue
        for i, name in enumerate(list(node.input)):
            other = shapes.get(node.input[1 - i])
            tensor = initializers.get(name) or constants.get(name)
            if tensor is None or not other or not all(other):
                continue
            value = numpy_helper.to_array(tensor)
            if value.size <= 1 or list(value.shape) == other or int(np.prod(other)) > MAX_EXPANDED_ELEMENTS:
                continue
            try:
                full = np.ascontiguousarray(np.broadcast_to(value, tuple(other)))
            except ValueError:
                continue  # the constant is the larger operand
            # A new initializer per use: the constant may feed other nodes of other shapes.
            expanded = numpy_helper.from_array(full, f"{name}__full_{rewritten}")
            model.graph.initializer.append(expanded)
            node.input[i] = expanded.name
            rewritten += 1
    if rewritten:
        _drop_unused_constants(model)
    return rewritten


def embed_preprocessing(path: str, normalize: dict) -> None:
    """Builds the wrappers' normalisation and layout conversion into the ONNX file at `path`
    (INCLUDE_PREPROCESSING): its input becomes uint8 [batch, height, width, 3], RGB pixels of the
    image already resized to the model's size, and the graph itself transposes to NCHW, casts to
    float32 and normalises as metadata.json's `normalize` says ("standardize": pixel / 255, then
    (x - mean) / std; "divide": (pixel - mean) / std). The same float32 steps as the wrappers',
    so the outputs match theirs. Resizing stays outside: it depends on each image's size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(path)
    graph = model.graph
    source = graph.input[0]
    name = source.name
    dims = list(source.type.tensor_type.shape.dim)
    if len(dims) != 4 or dims[1].dim_value != 3:
        raise ValueError(f"preprocessing can be embedded in a model with an [N, 3, H, W] input; {name} is not one")
    inner = f"{name}__normalized"
    for node in graph.node:
        for i, value in enumerate(node.input):
            if value == name:
                node.input[i] = inner
    for output in graph.output:
        if output.name == name:
            raise ValueError("the model passes its input straight to an output")

    def const(tag: str, values) -> str:
        tensor = numpy_helper.from_array(
            np.asarray(values, dtype=np.float32).reshape(1, 3, 1, 1) if np.size(values) == 3 else np.float32(values), f"{name}__{tag}"
        )
        graph.initializer.append(tensor)
        return tensor.name

    steps = [
        helper.make_node("Transpose", [name], [f"{name}__nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", [f"{name}__nchw"], [f"{name}__float"], to=TensorProto.FLOAT),
    ]
    x = f"{name}__float"
    if normalize["method"] == "standardize":
        steps.append(helper.make_node("Div", [x, const("scale", 255.0)], [f"{name}__unit"]))
        x = f"{name}__unit"
    steps.append(helper.make_node("Sub", [x, const("mean", normalize["mean"])], [f"{name}__centred"]))
    steps.append(helper.make_node("Div", [f"{name}__centred", const("std", normalize["std"])], [inner]))
    for node in reversed(steps):
        graph.node.insert(0, node)

    layout = [dims[0], dims[2], dims[3]]
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in layout] + [3]
    graph.input.remove(source)
    graph.input.insert(0, helper.make_tensor_value_info(name, TensorProto.UINT8, shape))
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _drop_unused_constants(model) -> None:
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    for tensor in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(tensor)
    for node in [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        model.graph.node.remove(node)


def _opset(model) -> int:
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _ort_optimized(path: str, level) -> None:
    """Bakes ONNX Runtime's graph optimizations of `level` into the file at `path`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = level
    optimized = f"{path}.opt.onnx"
    options.optimized_model_filepath = optimized
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    os.replace(optimized, path)


@entry
def finalize(params: FinalizeParams) -> FinalizeAnswer:
    """The portable passes of OPTIMIZATION_LEVEL, before any quantization (every result keeps to
    standard ONNX operators, so every runtime of the package loads it):

    - 0: the file as the framework's exporter wrote it.
    - 1: broadcast constants materialized (runtimes without general broadcasting), graph checked.
    - 2: also onnxslim (constant folding, dead and duplicate nodes, shape-op cleanup) and
      ONNX Runtime's basic graph optimizations baked in.
    - 3: as 2 here; `specialize` adds the runtime-specific step after quantization.
    """
    import onnx

    path, level = params["path"], params["level"]
    model = onnx.load(path)
    report: FinalizeAnswer = {"level": level, "opset": _opset(model), "passes": []}
    if level >= 1:
        n = materialize_broadcast_constants(model)
        report["passes"].append(f"materialized {n} broadcast constant(s)")
        onnx.checker.check_model(model)
        onnx.save(model, path)
    if level >= 2:
        import onnxslim

        before = len(model.graph.node)
        slim = onnxslim.slim(model)
        onnx.checker.check_model(slim)
        onnx.save(slim, path)
        report["passes"].append(f"onnxslim {_version('onnxslim')} ({before} -> {len(slim.graph.node)} nodes)")
        import onnxruntime as ort

        _ort_optimized(path, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
        report["passes"].append("onnxruntime basic graph optimizations (constant folding, redundant nodes)")
    return report


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def operators(model) -> list[str]:
    """Every operator of the graph as "domain:op" ("" for standard ONNX), sorted."""
    return sorted({f"{n.domain if n.domain not in ('', 'ai.onnx') else ''}:{n.op_type}" for n in model.graph.node})


@entry
def specialize(params: FinalizeParams) -> SpecializeAnswer:
    """The last pass, after quantization. Level 3 bakes in ONNX Runtime's extended and layout
    optimizations (ORT_ENABLE_ALL: fused Conv+activation, GELU, attention and the NCHWc layout
    of this CPU's vector width) for this fixed input shape: the fastest file for ONNX Runtime on
    CPU, loadable by ONNX Runtime only (its com.microsoft operators). Every level answers the
    operators of the final file, which decide the wrappers a package can ship."""
    import onnx

    path, level = params["path"], params["level"]
    passes: list[str] = []
    if level >= 3:
        import onnxruntime as ort

        _ort_optimized(path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        passes.append(f"onnxruntime {ort.__version__} extended and layout optimizations (ORT_ENABLE_ALL) for the CPU execution provider")
    return {"passes": passes, "operators": operators(onnx.load(path, load_external_data=False))}


class _TensorFiles:
    """Calibration batches for static quantization: float32 tensors written by TypeScript, in the
    model's input layout; a model with embedded preprocessing gets them as its uint8 pixels."""

    def __init__(self, input_name: str, files: list[str], shape: list[int], dtype: np.dtype):
        self.input_name = input_name
        self.items = iter(files)
        self.shape = shape
        self.dtype = dtype

    def get_next(self):
        path = next(self.items, None)
        if path is None:
            return None
        return {self.input_name: np.fromfile(path, dtype=np.float32).reshape(self.shape).astype(self.dtype)}


@entry
def quantize(params: QuantizeParams) -> QuantizeAnswer:
    """Writes params["output"], a quantized copy of params["source"]; `calibration` lists tensor
    files (static quantization only).

    - dynamic int8: weights int8, activations quantized per batch at run time (MatMul/Conv).
    - static int8/int16: weights and activations in QDQ form, ranges calibrated (MinMax) on the
      validation images; int16 needs opset 21, which the quantizer sets.
    - float16: weights and activations in float16; inputs and outputs stay float32, so every
      wrapper feeds and reads the same tensors as for the float32 model.
    """
    import onnx

    source, output = params["source"], params["output"]
    qtype, dtype = params["type"], params["dtype"]
    if dtype == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(source), keep_io_types=True)
        onnx.save(model, output)
        return {"method": "float16 conversion (onnxruntime.transformers.float16)", "output": output}

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = f"{output}.pre.onnx"
    # Shape inference and graph cleanup before quantizing, as onnxruntime recommends.
    quant_pre_process(source, prepared, skip_symbolic_shape=True)
    try:
        if qtype == "dynamic":
            quantize_dynamic(prepared, output, weight_type=QuantType.QInt8, per_channel=False)
            return {"method": "onnxruntime quantize_dynamic (int8 weights, dynamic uint8 activations)", "output": output}
        files = params["calibration"]
        if not files:
            raise ValueError("static quantization needs calibration images; VALIDATION_DATASET_ID gave none")
        model = onnx.load(prepared)
        if _opset(model) < 13:
            # Per-channel QDQ (DequantizeLinear with an axis) needs opset 13.
            from onnx import version_converter

            model = version_converter.convert_version(model, 13)
            onnx.save(model, prepared)
        from onnx import helper

        first = model.graph.input[0]
        reader = _TensorFiles(first.name, files, params["input_shape"], helper.tensor_dtype_to_np_dtype(first.type.tensor_type.elem_type))
        activation = QuantType.QInt16 if dtype == "int16" else QuantType.QUInt8
        weight = QuantType.QInt16 if dtype == "int16" else QuantType.QInt8
        quantize_static(
            prepared,
            output,
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=activation,
            weight_type=weight,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            # Weights-bearing ops only: the decode steps after them (box scaling, the concat of
            # pixel boxes with 0-1 scores) would share one int8 range and lose the scores.
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            extra_options={"ActivationSymmetric": dtype == "int16"},
        )
        return {
            "method": f"onnxruntime quantize_static (QDQ, {weight.name} weights, {activation.name} activations, MinMax on {len(files)} images)",
            "output": output,
        }
    finally:
        if os.path.exists(prepared):
            os.unlink(prepared)
