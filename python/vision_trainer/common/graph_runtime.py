"""INFERENCE_BACKEND: what runs an inference session's model.

    auto      (the default) onnx on the CPU for a job of at least AUTO_GRAPH_MIN_IMAGES images
              that the graph can run; pytorch otherwise (a GPU, a small job, semantic
              segmentation, onnxruntime missing): `resolve_backend`
    pytorch   the framework itself (any DEVICE)
    onnx      the checkpoint exported once into the job's work folder (`graph_dir`) and run by
              ONNX Runtime's CPU provider
    openvino  the same ONNX graph converted to OpenVINO IR and run by OpenVINO's CPU plugin

Only the forward pass moves: images are decoded, resized and normalised by the same code as on
the PyTorch path and the outputs go through the same post-processing (ultralytics' own
AutoBackend for YOLO graphs; softmax and top-k here for classifiers), so predictions and metrics
agree with PyTorch's to float rounding. Grad-CAM needs gradients, so heatmaps always come from
the PyTorch model, which stays loaded when ENABLE_XAI is on.

Both runtimes size their thread pools to the process's CPU budget (cpu_budget.py) and compute in
float32 (OpenVINO would otherwise pick bf16 on CPUs that have it, and drift from PyTorch), unless
INFERENCE_PRECISION=bf16 asks OpenVINO for bfloat16: on a CPU with native bfloat16 (AVX512-BF16,
AMX) ResNet-18's forward pass took 2.6 ms per image against 5.2 ms in float32 and 6.1 ms with
PyTorch (docs/performance.md), at the cost of probabilities that differ from PyTorch's in the
third digit. What ran is read back from the compiled model (`precision_info`), since OpenVINO
computes in float32 where the CPU has no bfloat16, whatever it was asked.
"""

from __future__ import annotations

import logging
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ..protocol import InferenceBackendInfo

BACKENDS = ("pytorch", "onnx", "openvino")
GRAPH_BACKENDS = ("onnx", "openvino")
# INFERENCE_BACKEND=auto exports to ONNX only for a job this large. Measured on a 2-CPU Xeon
# (docs/performance.md): exporting costs 0.4-1.8 CPU seconds (2-7 s of wall time on a busy
# machine) and the graph saves 0.4 (small ViT) to 3.9 (ResNet-18) CPU ms per image, so the
# export pays for itself after 150-1,000 images; below that PyTorch finishes first. ONNX rather
# than OpenVINO: its export is half the cost and its per-image figures were within 10% of
# OpenVINO's (better on ResNet-18, worse on ViT and YOLO11n).
AUTO_GRAPH_MIN_IMAGES = 1000
AUTO_GRAPH_BACKEND = "onnx"
# torch.onnx.export's TorchScript exporter: opset 17 holds every op timm and transformers
# classifiers use (LayerNorm, GELU) and is read by both runtimes.
OPSET = 17
RUNTIME_PACKAGE = {"pytorch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}
# The only runtime here that computes in bfloat16 on the CPU (ONNX Runtime's CPU provider and
# the PyTorch path compute in float32): INFERENCE_PRECISION=bf16 under auto takes it.
BF16_BACKEND = "openvino"


class InferenceBackendError(ValueError):
    """INFERENCE_BACKEND does not fit this job (a GPU device for a CPU runtime)."""


class GraphModelMismatchError(ValueError):
    """INFERENCE_MODEL_PATH's model was not exported from CHECKPOINT_PATH, or cannot run here."""


# An export job's graph must give the checkpoint's class probabilities on the same input to within
# float rounding (measured ~1e-6); a quantized graph within what int8 costs. Beyond that it holds
# other weights, classes or preprocessing than the checkpoint it is meant to replace.
GRAPH_MATCH_TOLERANCE = 1e-3
QUANTIZED_GRAPH_MATCH_TOLERANCE = 0.1
# bfloat16 keeps 8 bits of mantissa: probabilities moved by at most 6e-4 on the models measured
# (docs/performance.md); other weights or another normalisation move them by far more.
BF16_GRAPH_MATCH_TOLERANCE = 0.05


def check_device(backend: str, device: str) -> None:
    """ONNX Runtime (the CPU build this image installs) and OpenVINO's CPU plugin run on the CPU."""
    if backend in GRAPH_BACKENDS and device != "cpu":
        raise InferenceBackendError(
            f"INFERENCE_BACKEND={backend} runs on the CPU, but the job's device is {device}: on a GPU use INFERENCE_BACKEND=pytorch, or set DEVICE=cpu"
        )


def resolve_backend(
    requested: str, device_type: str, images: int | None, unsupported: str | None = None, given_graph: str | None = None, precision: str = "fp32"
) -> tuple[str, str]:
    """(backend, why) for INFERENCE_BACKEND; an explicit choice stands as it is (check_device and
    the backends refuse what cannot run). `auto` takes the graph only where it is known to be
    faster end to end: on the CPU, for a task the graph runs (`unsupported` says why not), for a
    job with enough images to pay for the export, with onnxruntime installed; and always when
    INFERENCE_MODEL_PATH names an export job's graph (`given_graph`, its format: there is no
    export to pay for). The graph is ONNX Runtime's, or OpenVINO's when INFERENCE_PRECISION=bf16
    (the one that computes in bfloat16) or for an OpenVINO IR model (the one that reads it)."""
    graph = BF16_BACKEND if precision == "bf16" else AUTO_GRAPH_BACKEND
    if requested != "auto":
        return requested, "INFERENCE_BACKEND"
    if given_graph == "openvino":
        return "openvino", "auto: INFERENCE_MODEL_PATH names an export job's OpenVINO model"
    if given_graph:
        return (
            graph,
            f"auto: INFERENCE_MODEL_PATH names an export job's ONNX model{', run in bfloat16 (INFERENCE_PRECISION)' if graph != AUTO_GRAPH_BACKEND else ''}",
        )
    if device_type != "cpu":
        return "pytorch", f"auto: the device is {device_type} (the graph runtimes here run on the CPU)"
    if unsupported:
        return "pytorch", f"auto: {unsupported}"
    if images is None or images < AUTO_GRAPH_MIN_IMAGES:
        return (
            "pytorch",
            f"auto: {images if images is not None else 'an unknown number of'} image(s), fewer than {AUTO_GRAPH_MIN_IMAGES} that pay for the export",
        )
    import importlib.util

    if importlib.util.find_spec(RUNTIME_PACKAGE[graph]) is None:
        return "pytorch", f"auto: {RUNTIME_PACKAGE[graph]} is not installed"
    return (
        graph,
        f"auto: the CPU and {images} images (at least {AUTO_GRAPH_MIN_IMAGES}){' in bfloat16 (INFERENCE_PRECISION)' if graph != AUTO_GRAPH_BACKEND else ''}",
    )


def precision_info(requested: str, backend: str, ran: str, backend_reason: str) -> dict:
    """results.json's account of INFERENCE_PRECISION: what was asked, what computed, and why they
    differ when they do (auto kept PyTorch, or the CPU has no bfloat16)."""
    if requested == ran:
        reason = "INFERENCE_PRECISION"
    elif backend != BF16_BACKEND:
        reason = f"{backend} computes in float32 here; bfloat16 runs on openvino, which INFERENCE_BACKEND did not choose ({backend_reason})"
    else:
        reason = "this CPU has no native bfloat16 (AVX512-BF16 or AMX), so OpenVINO computed in float32"
    return {"precision": ran, "precision_requested": requested, "precision_reason": reason}


def export_or_fall_back(requested: str, backend: str, reason: str, export):
    """(backend, reason, what `export()` returned): under auto, a graph that fails to export (a
    model torch.onnx or the converter cannot take) leaves the job on PyTorch, as it ran before
    auto existed, with the failure in the reason; a backend named explicitly fails the job."""
    try:
        return backend, reason, export()
    except Exception as exc:
        if requested != "auto":
            raise
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        logging.getLogger("vision_trainer.infer").warning("INFERENCE_BACKEND=auto: exporting to %s failed (%s); PyTorch runs the model", backend, message)
        return "pytorch", f"auto: the export to {backend} failed ({message})", None


def backend_info(
    backend: str,
    device: str,
    export_seconds: float | None,
    xai: bool,
    requested: str | None = None,
    reason: str | None = None,
    model_path: str | None = None,
    precision: dict | None = None,
) -> InferenceBackendInfo:
    package = RUNTIME_PACKAGE[backend]
    return {  # type: ignore[typeddict-item]
        "name": backend,  # type: ignore[typeddict-item]
        "runtime": f"{package} {version(package)}",
        "device": device,
        "export_seconds": None if export_seconds is None else round(export_seconds, 3),
        "xai_backend": "pytorch" if xai else None,
        "requested": requested or backend,  # type: ignore[typeddict-item]
        "reason": reason or "INFERENCE_BACKEND",
        "cpu_threads": runtime_threads(backend, device),
        "model_path": model_path,
        **(precision or precision_info("fp32", backend, "fp32", reason or "INFERENCE_BACKEND")),
    }


def runtime_threads(backend: str, device: str) -> int | None:
    """The threads the model's runtime computes with on the CPU (None on a GPU): what bench:infer
    compares with its native loop's."""
    if not device.startswith("cpu"):
        return None
    if backend == "pytorch":
        import torch

        return int(torch.get_num_threads())
    return cpu_threads()


def cpu_threads() -> int:
    from ..cpu_budget import budget

    return budget().threads


def torch_for_preprocessing_only(xai: bool) -> None:
    """With a graph running the forward pass, torch only decodes-to-tensor, normalises and stacks
    each batch (and takes a softmax): tensors of ~50,000 values, where OpenMP's fork-join over the
    CPU budget costs more than it saves and its waiting threads spin against the graph runtime's
    own pool. Measured on 2 CPUs (timm ResNet-18 at 128 px, docs/performance.md): preprocessing
    took 14-34 CPU ms per image with torch on 2 threads and 1.8 ms on 1, and OpenVINO's forward
    pass lost to that spinning. So torch gets one thread; not when Grad-CAM runs the PyTorch model
    (ENABLE_XAI), whose forward and backward passes use the budget."""
    if xai:
        return
    import torch

    torch.set_num_threads(1)


def onnx_session(path: Path):
    """An ONNX Runtime CPU session with the CPU budget's threads. Its threads do not spin while
    they wait for work: in a pod with a CPU quota, or on a busy machine, spinning burns the CPU
    the other threads need (a 2-core machine under load ran YOLO11n 1.5x faster without it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def openvino_config(precision: str = "fp32") -> dict:
    return {"INFERENCE_NUM_THREADS": cpu_threads(), "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "PERFORMANCE_HINT": "LATENCY"}


def compiled_precision(compiled) -> str:
    """What an OpenVINO compiled model computes in (fp32 or bf16), as the plugin settled it."""
    return "bf16" if compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16" else "fp32"


class OnnxRunner:
    """float32 NCHW batch -> the graph's first output, with ONNX Runtime's CPU provider."""

    precision = "fp32"

    def __init__(self, path: Path):
        self.session = onnx_session(path)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_raw(np.ascontiguousarray(batch, dtype=np.float32))

    def infer_raw(self, feed: np.ndarray) -> np.ndarray:
        """The graph's first output for an input of its own type (uint8 where the graph normalises)."""
        return self.session.run(None, {self.input: feed})[0]


class OpenVinoRunner:
    """float32 NCHW batch -> the model's first output, with OpenVINO's CPU plugin."""

    def __init__(self, path: Path, precision: str = "fp32"):
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", openvino_config(precision))
        self.request = self.compiled.create_infer_request()
        self.precision = compiled_precision(self.compiled)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_raw(np.ascontiguousarray(batch, dtype=np.float32))

    def infer_raw(self, feed: np.ndarray) -> np.ndarray:
        """The model's first output for an input of its own type (uint8 where the graph normalises)."""
        self.request.infer({0: feed})
        return np.array(self.request.get_output_tensor(0).data, copy=True)


def export_classifier(model, size: int, graph_dir: str, backend: str, precision: str = "fp32"):
    """(runner, seconds): a `normalised [B, 3, S, S] -> logits` model exported with a dynamic batch
    and loaded by `backend`'s runtime (OpenVINO's in `precision` where the CPU has it)."""
    import torch

    started = time.perf_counter()
    folder = Path(graph_dir)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "model.onnx"
    example = torch.zeros(2, 3, size, size)
    with torch.inference_mode():
        torch.onnx.export(
            model.cpu().eval(),
            (example,),
            str(onnx_path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    if backend == "onnx":
        runner = OnnxRunner(onnx_path)
    else:
        import openvino as ov

        xml = folder / "model.xml"
        ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
        runner = OpenVinoRunner(xml, precision)
    return runner, time.perf_counter() - started


class ExportedClassifier:
    """An export job's ONNX classifier (INFERENCE_MODEL_PATH) behind the runner's interface: the
    session's normalised float32 NCHW batch in, logits out. Where the graph normalises itself
    (INCLUDE_PREPROCESSING) the batch goes back to the resized image's uint8 NHWC pixels
    (ToTensor's x / 255 inverted, exact after rounding); where it ends in a softmax, its
    probabilities come back as log-probabilities, whose softmax is those probabilities again; a
    graph of a fixed batch size is fed batches of that size, the last padded with copies."""

    def __init__(self, graph_model: dict, backend: str, mean: list[float], std: list[float], precision: str = "fp32"):
        self.runner = OnnxRunner(Path(graph_model["path"])) if backend == "onnx" else OpenVinoRunner(Path(graph_model["path"]), precision)
        self.precision = self.runner.precision
        self.embedded_preprocessing = bool(graph_model["embedded_preprocessing"])
        self.embedded_softmax = bool(graph_model["embedded_softmax"])
        self.batch = graph_model.get("batch")
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)

    def _feed(self, batch: np.ndarray) -> np.ndarray:
        if not self.embedded_preprocessing:
            return np.ascontiguousarray(batch, dtype=np.float32)
        pixels = np.rint((batch * self.std + self.mean) * 255.0).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.runner.infer_raw(self._feed(batch))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if self.batch:
            outputs = []
            for start in range(0, len(batch), self.batch):
                chunk = batch[start : start + self.batch]
                padded = np.concatenate([chunk, np.repeat(chunk[:1], self.batch - len(chunk), axis=0)]) if len(chunk) < self.batch else chunk
                outputs.append(self._run(padded)[: len(chunk)])
            out = np.concatenate(outputs)
        else:
            out = self._run(batch)
        out = np.asarray(out, dtype=np.float32)
        return np.log(np.clip(out, 1e-30, None)) if self.embedded_softmax else out


def open_exported_classifier(graph_model: dict, backend: str, model, meta: dict, size: int, precision: str = "fp32"):
    """(runner, seconds): INFERENCE_MODEL_PATH's graph, once what its metadata.json says and what
    it computes are shown to be the checkpoint's (GraphModelMismatchError otherwise): the same
    framework, classes in the same order and input size, and the same class probabilities on two
    seeded random images (so other weights, or another normalisation, are caught too)."""
    import torch

    started = time.perf_counter()
    names = [str(n) for n in meta["class_names"]]
    problems = []
    if graph_model["framework"] != str(meta["framework"]):
        problems.append(f"it was exported from a {graph_model['framework']} model, the checkpoint is {meta['framework']}")
    if list(graph_model["class_names"]) != names:
        problems.append(f"its classes ({', '.join(graph_model['class_names'][:8])}) are not the checkpoint's ({', '.join(names[:8])}) in the same order")
    if list(graph_model["input_size"]) != [size, size]:
        problems.append(f"it takes {graph_model['input_size'][0]}x{graph_model['input_size'][1]} images, the checkpoint {size}x{size}")
    if problems:
        raise GraphModelMismatchError(f"{graph_model['uri']} was not exported from CHECKPOINT_PATH: {'; '.join(problems)}")
    runner = ExportedClassifier(graph_model, backend, meta["mean"], meta["std"], precision)
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 3, size, size)).astype(np.float32) / 255.0
    batch = (pixels - runner.mean) / runner.std
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(batch)).float(), dim=1).numpy()
        got = torch.softmax(torch.from_numpy(runner(batch)), dim=1).numpy()
    difference = float(np.abs(expected - got).max())
    tolerance = (
        QUANTIZED_GRAPH_MATCH_TOLERANCE if graph_model.get("quantized") else BF16_GRAPH_MATCH_TOLERANCE if runner.precision == "bf16" else GRAPH_MATCH_TOLERANCE
    )
    if not difference <= tolerance:
        raise GraphModelMismatchError(
            f"{graph_model['uri']} was not exported from CHECKPOINT_PATH: on the same input its class probabilities differ from the checkpoint's "
            f"by up to {difference:.4f} (more than {tolerance}); point INFERENCE_MODEL_PATH at the export of this checkpoint, or leave it unset"
        )
    return runner, time.perf_counter() - started


def export_ultralytics(checkpoint: str, imgsz: int, graph_dir: str, backend: str):
    """(path of the exported model, seconds): ultralytics' own exporter, with a dynamic batch and
    input size so its predictor letterboxes exactly as for the .pt (minimal rectangular padding)."""
    import shutil

    from ultralytics import YOLO

    started = time.perf_counter()
    folder = Path(graph_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # ultralytics writes the export beside its input: a copy keeps the job's checkpoint folder clean.
    source = folder / "model.pt"
    shutil.copyfile(checkpoint, source)
    kwargs = {"format": backend, "imgsz": imgsz, "dynamic": True, "batch": 1, "device": "cpu", "nms": False, "verbose": False}
    if backend == "onnx":
        kwargs["simplify"] = False
    path = Path(YOLO(str(source)).export(**kwargs))
    source.unlink(missing_ok=True)
    return path, time.perf_counter() - started


def ultralytics_runtime_settings(yolo, graph: Path, imgsz: int, backend_name: str, precision: str = "fp32", predictor=None) -> str:
    """ultralytics opens the exported graph with its runtime's defaults: ONNX Runtime with one
    spinning thread per core, OpenVINO with the CPU plugin's default precision, bf16 on CPUs that
    have it (AMX, AVX512-BF16), where confidences drift ~1% from PyTorch's. Its predictor is built
    here on a blank image and its runtime reopened with this module's settings (the CPU budget's
    threads, no spinning, float32 unless `precision` asks OpenVINO for bf16). Returns what the
    runtime computes in. `predictor`: the predictor class to build (an export job's graph is read
    through its own, ultralytics/graph_model.py)."""
    from functools import partial

    yolo.predict(np.zeros((imgsz, imgsz, 3), dtype=np.uint8), imgsz=imgsz, device="cpu", verbose=False, save=False, predictor=predictor)
    backend = yolo.predictor.model.backend
    if backend_name == "onnx":
        backend.session = onnx_session(graph)
        return "fp32"
    config = {**backend.compile_model.keywords.get("config", {}), **openvino_config(precision)}
    backend.compile_model = partial(backend.compile_model, config=config)
    xml = graph if graph.suffix == ".xml" else next(graph.glob("*.xml"))
    backend.ov_compiled_model = backend.compile_model(str(xml))
    return compiled_precision(backend.ov_compiled_model)
