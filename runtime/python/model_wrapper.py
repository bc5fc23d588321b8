"""Runs an exported vision model with the pre- and post-processing its metadata.json describes.

One class, `ModelWrapper`, for every task the platform exports:

    object_detection       letterbox -> model -> confidence filter + class-aware NMS -> boxes
    instance_segmentation  as detection, plus a mask per box from the prototype masks
    pose_estimation        as detection, plus keypoints [x, y, confidence] per box
    image_classification   resize/crop + normalise -> model -> softmax (when the model gives logits) -> top-k
    zero_shot_classification  as classification (the class prompts are baked into the model)
    semantic_segmentation  resize + normalise -> model -> argmax over classes per pixel -> the class
                           map at the image's size (nearest neighbour); one mask per class present

and every format the wrapper can load here: ONNX (onnxruntime), TorchScript (torch), OpenVINO IR
(openvino), LiteRT/TFLite (ai_edge_litert or tflite_runtime) and TensorRT engines (tensorrt +
torch for device buffers). Coordinates in the results are pixels of the original image, boxes as
[x1, y1, x2, y2].

The same arithmetic (rounding, padding, NMS order) is implemented by the Node and C++ wrappers
beside this one, so the three give the same predictions for the same image.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# ultralytics' class offset for class-aware NMS: boxes of different classes never overlap.
MAX_WH = 7680
# At most this many candidates enter NMS (as ultralytics' max_nms).
MAX_NMS = 30000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


def round_half_up(value: float) -> int:
    """The rounding every wrapper uses (Python's round() rounds halves to even)."""
    return math.floor(value + 0.5)


@dataclass
class Transform:
    """How input-tensor pixels map back to the original image: x_orig = (x - pad_left) / scale_x."""

    scale_x: float
    scale_y: float
    pad_left: float
    pad_top: float
    width: int
    height: int

    def to_image(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xo = np.clip((x - self.pad_left) / self.scale_x, 0, self.width)
        yo = np.clip((y - self.pad_top) / self.scale_y, 0, self.height)
        return xo, yo


def load_image(path: str | Path) -> np.ndarray:
    """An image file as an RGB uint8 array (H, W, 3)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path} (missing, or not an image OpenCV can decode)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    return image


# ---------------------------------------------------------------------------------------------
# Pre-processing
# ---------------------------------------------------------------------------------------------


def preprocess(image: np.ndarray, spec: dict) -> tuple[np.ndarray, Transform]:
    """RGB uint8 (H, W, 3) -> a batch of one in the model's input form, per metadata["preprocessing"]:
    float32 NCHW, normalised; or, where the model embeds its preprocessing, its uint8 NHWC pixels."""
    image = as_rgb(image)
    h0, w0 = image.shape[:2]
    resize = spec["resize"]
    out_h, out_w = int(resize["size"][0]), int(resize["size"][1])
    interpolation = INTERPOLATION[resize.get("interpolation", "bilinear")]
    method = resize["method"]
    if method == "letterbox":
        r = min(out_h / h0, out_w / w0)
        new_w, new_h = round_half_up(w0 * r), round_half_up(h0 * r)
        dw, dh = (out_w - new_w) / 2, (out_h - new_h) / 2
        resized = image if (new_w, new_h) == (w0, h0) else cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        top, left = round_half_up(dh - 0.1), round_half_up(dw - 0.1)
        bottom, right = out_h - new_h - top, out_w - new_w - left
        fill = int(resize.get("fill_value", 114))
        canvas = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(fill, fill, fill))
        transform = Transform(new_w / w0, new_h / h0, left, top, w0, h0)
    elif method == "resize_shorter_center_crop":
        crop_pct = float(resize.get("crop_pct", 1.0))
        r = max(out_h / crop_pct / h0, out_w / crop_pct / w0)
        new_w, new_h = max(out_w, round_half_up(w0 * r)), max(out_h, round_half_up(h0 * r))
        resized = image if (new_w, new_h) == (w0, h0) else cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        top, left = round_half_up((new_h - out_h) / 2), round_half_up((new_w - out_w) / 2)
        canvas = resized[top : top + out_h, left : left + out_w]
        transform = Transform(new_w / w0, new_h / h0, -left, -top, w0, h0)
    elif method == "resize":
        canvas = image if (out_w, out_h) == (w0, h0) else cv2.resize(image, (out_w, out_h), interpolation=interpolation)
        transform = Transform(out_w / w0, out_h / h0, 0, 0, w0, h0)
    else:
        raise ValueError(f"unknown resize method {method!r} in metadata.json")

    # "divide": (pixel - mean) / std in 0..255 units (mean 0, std 255 gives 0..1);
    # "standardize": pixels scaled to 0..1 first, then (x - mean) / std (ImageNet style).
    # "embedded": the model normalises in its graph and takes the pixels (uint8 NHWC).
    dtype = np.uint8 if spec.get("data_type", "float32") == "uint8" else np.float32
    if spec.get("embedded", False):
        x = canvas
    else:
        norm = spec["normalize"]
        mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
        x = canvas.astype(np.float32)
        if norm["method"] == "standardize":
            x = x / np.float32(255.0)
        x = (x - mean) / std
    if spec.get("channel_order", "RGB") == "BGR":
        x = x[:, :, ::-1]
    if spec.get("layout", "NCHW") == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=dtype), transform


# ---------------------------------------------------------------------------------------------
# Post-processing
# ---------------------------------------------------------------------------------------------


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS over boxes [N, 4] xyxy, highest score first; ties keep input order."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        xx1 = np.maximum(boxes[i, 0], boxes[:, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[:, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[:, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        union = areas[i] + areas - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        suppressed |= iou > iou_threshold
    return keep


def select_detections(pred: np.ndarray, num_classes: int, conf: float, iou: float, max_det: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pred [4 + nc + extra, anchors] (boxes as centre x, y, w, h in input pixels) ->
    (boxes xyxy, scores, class ids, extra rows) of the kept detections, best first."""
    scores_all = pred[4 : 4 + num_classes]
    class_ids = scores_all.argmax(0)
    scores = scores_all[class_ids, np.arange(pred.shape[1])]
    candidates = np.nonzero(scores > conf)[0]
    if len(candidates) > MAX_NMS:
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")[:MAX_NMS]]
    xywh = pred[:4, candidates].T.astype(np.float32)
    boxes = np.empty_like(xywh)
    boxes[:, 0] = xywh[:, 0] - xywh[:, 2] / 2
    boxes[:, 1] = xywh[:, 1] - xywh[:, 3] / 2
    boxes[:, 2] = xywh[:, 0] + xywh[:, 2] / 2
    boxes[:, 3] = xywh[:, 1] + xywh[:, 3] / 2
    cand_scores = scores[candidates]
    cand_classes = class_ids[candidates]
    keep = nms(boxes + cand_classes[:, None].astype(np.float32) * MAX_WH, cand_scores, iou)[:max_det]
    extra = pred[4 + num_classes :, candidates].T[keep]
    return boxes[keep], cand_scores[keep], cand_classes[keep], extra


def embedded_detections(rows: np.ndarray, class_ids: list[int], conf: float, max_det: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of a model with NMS built in, [max_detections, 6 + extra] (x1, y1, x2, y2, score,
    dataset class id, extra; best first, zero rows after the last) -> the same tuple as
    select_detections, class ids turned back into output indices."""
    rows = rows[rows[:, 4] > conf][:max_det].astype(np.float32)
    index = {cid: i for i, cid in enumerate(class_ids)}
    classes = np.asarray([index[round(float(c))] for c in rows[:, 5]], dtype=np.int64)
    return rows[:, :4], rows[:, 4], classes, rows[:, 6:]


def masks_for(
    coefficients: np.ndarray, protos: np.ndarray, boxes: np.ndarray, transform: Transform, input_size: Sequence[int], threshold: float
) -> list[np.ndarray]:
    """Instance masks at the original image size: prototype combination, the letterbox padding
    cut away, resized (bilinear) to the image, thresholded and limited to the box."""
    nm, mh, mw = protos.shape
    logits = (coefficients.astype(np.float32) @ protos.reshape(nm, -1).astype(np.float32)).reshape(-1, mh, mw)
    in_h, in_w = input_size
    sx, sy = mw / in_w, mh / in_h
    x0, y0 = transform.pad_left * sx, transform.pad_top * sy
    x1 = (transform.pad_left + transform.width * transform.scale_x) * sx
    y1 = (transform.pad_top + transform.height * transform.scale_y) * sy
    c0, r0 = max(0, round_half_up(x0 - 0.1)), max(0, round_half_up(y0 - 0.1))
    c1, r1 = min(mw, round_half_up(x1 + 0.1)), min(mh, round_half_up(y1 + 0.1))
    logit_threshold = math.log(threshold / (1 - threshold))
    w, h = transform.width, transform.height
    # Pixel indices, as ultralytics' crop_mask compares them with the box.
    cols = np.arange(w, dtype=np.float32)
    rows = np.arange(h, dtype=np.float32)
    masks = []
    for k in range(len(boxes)):
        crop = np.ascontiguousarray(logits[k, r0:r1, c0:c1])
        full = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
        x1b, y1b, x2b, y2b = boxes[k]
        inside = (cols[None, :] >= x1b) & (cols[None, :] < x2b) & (rows[:, None] >= y1b) & (rows[:, None] < y2b)
        masks.append((full > logit_threshold) & inside)
    return masks


def softmax(x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = x.astype(np.float64) / temperature
    z = np.exp(z - z.max())
    return (z / z.sum()).astype(np.float32)


def class_map(logits: np.ndarray, transform: Transform) -> np.ndarray:
    """Semantic segmentation: the class index of every pixel of the original image (H x W), from
    logits [batch, classes, h, w] at the input size: argmax over classes (the first of equal
    scores), sampled at the input pixel each image pixel's centre falls in."""
    first = np.asarray(logits, dtype=np.float32)[0]
    best = np.argmax(first, axis=0)
    in_h, in_w = best.shape
    ys = np.clip(np.floor((np.arange(transform.height) + 0.5) * transform.scale_y + transform.pad_top), 0, in_h - 1).astype(np.int64)
    xs = np.clip(np.floor((np.arange(transform.width) + 0.5) * transform.scale_x + transform.pad_left), 0, in_w - 1).astype(np.int64)
    return best[ys[:, None], xs[None, :]]


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (column-major runs, starting with a run of zeros)."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    changes = np.nonzero(np.diff(flat))[0] + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


# ---------------------------------------------------------------------------------------------
# Backends: one per model format, each maps a float32 NCHW batch to a list of output arrays
# ---------------------------------------------------------------------------------------------


class OnnxBackend:
    def __init__(self, path: Path, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        # A model with embedded preprocessing takes uint8 pixels; callers holding them as float32 values get them cast.
        self.input_dtype = np.uint8 if first.type == "tensor(uint8)" else np.float32
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o) for o in self.session.run(None, {self.input_name: batch.astype(self.input_dtype, copy=False)})]


class TorchScriptBackend:
    def __init__(self, path: Path, threads: int | None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model = torch.jit.load(str(path), map_location="cpu").eval()
        # torch's int8 kernels (quantized::conv2d, quantized::linear_dynamic) run on the CPU only.
        quantized = "quantized::" in str(self.model.inlined_graph)
        self.device = "cuda" if torch.cuda.is_available() and not quantized else "cpu"
        if self.device == "cuda":
            # A frozen model's weights are graph constants, which only map_location moves.
            self.model = torch.jit.load(str(path), map_location="cuda").eval()
        self.dtype = next((p.dtype for p in self.model.parameters()), torch.float32)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(batch).to(self.device, self.dtype))
        flat: list[Any] = []

        def collect(value: Any) -> None:
            if isinstance(value, (list, tuple)):
                for v in value:
                    collect(v)
            elif isinstance(value, dict):
                for v in value.values():
                    collect(v)
            else:
                flat.append(value.float().cpu().numpy())

        collect(out)
        return flat


class OpenVinoBackend:
    def __init__(self, path: Path, threads: int | None):
        import openvino as ov

        xml = path if path.suffix == ".xml" else next(path.glob("*.xml"))
        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        self.model = ov.Core().compile_model(str(xml), "CPU", config)
        self.device = "cpu"
        self.input_dtype = self.model.inputs[0].get_element_type().to_dtype()

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self.model(batch.astype(self.input_dtype, copy=False))
        return [np.asarray(result[o]) for o in self.model.outputs]


class LiteRtBackend:
    """LiteRT/TFLite models: litert-torch keeps torch's NCHW input, converters from TensorFlow
    take NHWC (read from the model's input shape); ultralytics' LiteRT exports give boxes and
    keypoints normalised to 0..1, which `scale_outputs` turns back into input pixels."""

    def __init__(self, path: Path, threads: int | None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
        self.interpreter.allocate_tensors()
        self.device = "cpu"
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        shape = list(self.input["shape"])
        self.channels_last = len(shape) == 4 and shape[3] in (1, 3) and shape[1] not in (1, 3)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        x = batch.transpose(0, 2, 3, 1) if self.channels_last else batch
        if self.input["dtype"] != np.float32:
            # Full-integer exports take the normalised tensor quantized with the input's own scale and zero point.
            scale, zero = self.input["quantization"]
            limits = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), limits.min, limits.max).astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        outs = []
        for d in self.outputs:
            y = self.interpreter.get_tensor(d["index"])
            if y.dtype != np.float32:
                scale, zero = d["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            outs.append(y)
        return outs


class CoreMLBackend:
    """A CoreML package through coremltools. Core ML itself predicts on macOS only: elsewhere
    coremltools loads the spec but `predict` raises, and this backend says so. Image inputs
    (ultralytics' exports scale 0..255 pixels inside the model) get the wrapper's normalised
    tensor back as an RGB picture; tensor inputs (timm) get it as it is."""

    def __init__(self, path: Path, threads: int | None):
        import platform

        import coremltools as ct

        if platform.system() != "Darwin":
            raise RuntimeError(
                f"CoreML models run on macOS and iOS only (Core ML); this is {platform.system()}: use the Swift wrapper on Apple devices, or this wrapper on a Mac"
            )
        self.model = ct.models.MLModel(str(path))
        spec = self.model.get_spec()
        self.input = spec.description.input[0]
        self.output_names = [o.name for o in spec.description.output]
        self.device = "coreml"

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.input.type.WhichOneof("Type") == "imageType":
            from PIL import Image

            pictures = [Image.fromarray(np.clip(img.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)) for img in batch]
            results = [self.model.predict({self.input.name: p}) for p in pictures]
            return [
                np.concatenate([np.asarray(r[name], dtype=np.float32).reshape(1, *np.asarray(r[name]).shape[1:]) for r in results])
                for name in self.output_names
            ]
        result = self.model.predict({self.input.name: batch.astype(np.float32)})
        return [np.asarray(result[name], dtype=np.float32) for name in self.output_names]


class TensorRtBackend:
    """A TensorRT engine as ultralytics writes it (a JSON metadata header, then the engine)."""

    def __init__(self, path: Path, threads: int | None):
        import tensorrt as trt
        import torch

        self.torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        with open(path, "rb") as f, trt.Runtime(logger) as runtime:
            head = f.read(4)
            meta_len = int.from_bytes(head, byteorder="little")
            try:
                json.loads(f.read(meta_len).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                f.seek(0)  # an engine without the header
            self.engine = runtime.deserialize_cuda_engine(f.read())
        self.context = self.engine.create_execution_context()
        self.device = "cuda"
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_names = [n for n in self.names if n != self.input_name]

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        torch = self.torch
        x = torch.from_numpy(batch).cuda()
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        outputs = []
        for name in self.output_names:
            y = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, y.data_ptr())
            outputs.append(y)
        stream = torch.cuda.current_stream()
        self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return [y.cpu().numpy() for y in outputs]


BACKENDS = {
    "onnx": OnnxBackend,
    "torchscript": TorchScriptBackend,
    "openvino": OpenVinoBackend,
    "tflite": LiteRtBackend,
    "tensorrt": TensorRtBackend,
    "coreml": CoreMLBackend,
}


def open_backend(export_format: str, path: Path, threads: int | None = None):
    if export_format not in BACKENDS:
        raise ValueError(f"the Python wrapper cannot run {export_format} models (it runs {', '.join(BACKENDS)})")
    return BACKENDS[export_format](path, threads)


# ---------------------------------------------------------------------------------------------
# The wrapper
# ---------------------------------------------------------------------------------------------


class ModelWrapper:
    """An exported model with its metadata.json: `predict(image)` gives final predictions."""

    def __init__(self, model_path: str | Path | None = None, metadata_path: str | Path | None = None, *, threads: int | None = None):
        package_dir = Path(__file__).resolve().parents[2]
        self.metadata_path = Path(metadata_path) if metadata_path else package_dir / "metadata.json"
        if not self.metadata_path.is_file():
            raise ValueError(f"metadata.json not found at {self.metadata_path}; pass metadata_path=")
        self.metadata = json.loads(self.metadata_path.read_text())
        self.model_path = Path(model_path) if model_path else self.metadata_path.parent / self.metadata["model"]["file"]
        self.task = self.metadata["task_type"]
        self.class_names: list[str] = self.metadata["model"]["class_names"]
        # The dataset's class id of each model output: what `class_id` means in every prediction
        # (packages made before class ids were recorded: the output index).
        self.class_ids: list[int] = [int(v) for v in self.metadata["model"].get("class_ids") or range(len(self.class_names))]
        self.input_size = [int(v) for v in self.metadata["preprocessing"]["resize"]["size"]]
        self.backend = open_backend(self.metadata["export_format"], self.model_path, threads)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Transform]:
        return preprocess(image, self.metadata["preprocessing"])

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        # A model exported with a fixed batch > 1 gets copies of a single image.
        fixed = self.metadata["model"]["inputs"][0]["shape"][0]
        if isinstance(fixed, int) and fixed > 1 and batch.shape[0] == 1:
            batch = np.repeat(batch, fixed, axis=0)
        return self.backend(batch)

    def postprocess(
        self,
        outputs: list[np.ndarray],
        transform: Transform,
        *,
        confidence: float | None = None,
        iou: float | None = None,
        max_detections: int | None = None,
        top_k: int | None = None,
    ) -> list[dict]:
        post = self.metadata["postprocessing"]
        if self.task == "semantic_segmentation":
            # One prediction per class of the map: its mask and its share of the image.
            indices = class_map(outputs[0], transform)
            total = indices.size
            return [
                {
                    "class_id": self.class_ids[c],
                    "class_name": self.class_names[c],
                    "confidence": float((indices == c).sum() / total),
                    "mask": (indices == c).astype(np.uint8),
                }
                for c in range(len(self.class_names))
                if (indices == c).any()
            ]
        if self.task in ("image_classification", "zero_shot_classification"):
            first = np.asarray(outputs[0], dtype=np.float32)
            values = first.reshape(first.shape[0], -1)[0]  # the first image of the batch
            soft = post.get("softmax", {})
            probs = softmax(values, float(soft.get("temperature", 1.0))) if soft.get("apply", True) else values
            k = min(top_k or int(post.get("top_k", 5)), len(probs))
            order = np.argsort(-probs, kind="stable")[:k]
            return [{"class_id": self.class_ids[i], "class_name": self.class_names[i], "confidence": float(probs[i])} for i in order]

        nms_spec = post["nms"]
        conf = nms_spec["confidence_threshold"] if confidence is None else confidence
        iou_t = nms_spec["iou_threshold"] if iou is None else iou
        max_det = nms_spec["max_detections"] if max_detections is None else max_detections
        pred = np.asarray(outputs[0], dtype=np.float32)[0]
        normalized = post.get("box_units") == "normalized"
        if normalized:  # LiteRT exports: coordinates as fractions of the input size
            pred = pred.copy()
            pred[[0, 2]] *= self.input_size[1]
            pred[[1, 3]] *= self.input_size[0]
        if post.get("embedded", False):  # the model ran the NMS (INCLUDE_POSTPROCESSING): filter its rows only
            boxes, scores, classes, extra = embedded_detections(pred, self.class_ids, conf, max_det)
        else:
            boxes, scores, classes, extra = select_detections(pred, len(self.class_names), conf, iou_t, max_det)
        x1, y1 = transform.to_image(boxes[:, 0], boxes[:, 1])
        x2, y2 = transform.to_image(boxes[:, 2], boxes[:, 3])
        boxes = np.stack([x1, y1, x2, y2], 1) if len(boxes) else np.zeros((0, 4), np.float32)
        results = [
            {
                "bbox": [float(v) for v in boxes[i]],
                "class_id": self.class_ids[int(classes[i])],
                "class_name": self.class_names[int(classes[i])],
                "confidence": float(scores[i]),
            }
            for i in range(len(boxes))
        ]
        if self.task == "instance_segmentation" and results:
            protos = np.asarray(outputs[1], dtype=np.float32)[0]
            for r, m in zip(
                results, masks_for(extra[:, : protos.shape[0]], protos, boxes, transform, self.input_size, float(post.get("mask_threshold", 0.5))), strict=True
            ):
                r["mask"] = m
        if self.task == "pose_estimation" and results:
            count, dims = self.metadata["model"]["keypoints"]["shape"]
            kpts = extra.reshape(len(results), count, dims)
            scale_x, scale_y = (self.input_size[1], self.input_size[0]) if normalized else (1, 1)
            kx, ky = transform.to_image(kpts[:, :, 0] * scale_x, kpts[:, :, 1] * scale_y)
            for i, r in enumerate(results):
                r["keypoints"] = [[float(kx[i, j]), float(ky[i, j]), *([float(kpts[i, j, 2])] if dims == 3 else [])] for j in range(count)]
        return results

    def predict(self, image: str | Path | np.ndarray, **thresholds: Any) -> Any:
        """Final predictions for one image (a path or an RGB uint8 array).

        A package exported with INCLUDE_PREPROCESSING=false takes a preprocessed float32 batch
        instead; with INCLUDE_POSTPROCESSING=false the raw output arrays are returned."""
        if self.metadata["preprocessing"].get("included", True):
            rgb = load_image(image) if isinstance(image, (str, Path)) else image
            batch, transform = self.preprocess(rgb)
        else:
            batch = np.asarray(image, dtype=np.float32)
            h, w = self.input_size
            transform = Transform(1.0, 1.0, 0, 0, w, h)
        outputs = self.infer(batch)
        if not self.metadata["postprocessing"].get("included", True):
            return outputs
        return self.postprocess(outputs, transform, **thresholds)


def to_json(predictions: list[dict]) -> list[dict]:
    """Predictions as JSON-ready dicts (masks as COCO RLE)."""
    return [{k: (mask_to_rle(v) if k == "mask" else v) for k, v in p.items()} for p in predictions]


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Image files named, or found directly inside named folders, in sorted order."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p])
    return files
