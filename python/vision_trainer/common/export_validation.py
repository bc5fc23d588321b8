"""The Python half of export validation (src/jobs/export/validate.ts drives it).

TypeScript owns the loop: it preprocesses each validation image with the Node wrapper's code,
writes the float32 tensor to a file, and asks Python to run the models that only Python can run
(the original checkpoint, and TorchScript/OpenVINO/... exports through the package's own Python
wrapper backends). Outputs go back as float32 files. Python also scores both models'
predictions against the ground truth with pycocotools (COCO mAP50-95) or top-1 accuracy.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol import (
    BenchmarkParams,
    DecodedImage,
    DecodeImagesParams,
    EvaluateParams,
    HandleParams,
    ModelIo,
    ModelIoParams,
    OpenedModel,
    OpenExportedParams,
    PathParams,
    RunModelAnswer,
    RunModelParams,
    TensorInfo,
)
from ..support import entry

RUNTIME_PYTHON_DIR = Path(__file__).resolve().parents[3] / "runtime" / "python"
_models: dict[str, Callable[[np.ndarray], list[np.ndarray]]] = {}


def model_wrapper_module():
    """The deployment package's Python wrapper: validation runs exported models through it."""
    if str(RUNTIME_PYTHON_DIR) not in sys.path:
        sys.path.insert(0, str(RUNTIME_PYTHON_DIR))
    return importlib.import_module("model_wrapper")


def register_model(handle: str, model: Callable[[np.ndarray], list[np.ndarray]]) -> OpenedModel:
    """Makes a model runnable under `handle`: a framework's `open_original` registers the
    checkpoint here (TypeScript chose the framework), `open_exported` an exported model."""
    _models[handle] = model
    return {"handle": handle, "device": str(getattr(model, "device", "cpu"))}


@entry
def open_exported(params: OpenExportedParams) -> OpenedModel:
    """An exported model, run through the package's own Python wrapper backend."""
    wrapper = model_wrapper_module()
    return register_model(params["handle"], wrapper.open_backend(params["format"], Path(params["path"]), None))


@entry
def close_model(params: HandleParams) -> None:
    _models.pop(params["handle"], None)


@entry
def run_model(params: RunModelParams) -> RunModelAnswer:
    """Runs one batch; writes output i to `{output_prefix}.{i}.bin` (float32, C order)."""
    output_prefix = params["output_prefix"]
    batch = np.fromfile(params["input_file"], dtype=np.float32).reshape(params["shape"])
    started = time.perf_counter()
    outputs = _models[params["handle"]](batch)
    seconds = time.perf_counter() - started
    described = []
    for i, out in enumerate(outputs):
        path = f"{output_prefix}.{i}.bin"
        np.ascontiguousarray(out, dtype=np.float32).tofile(path)
        described.append({"path": path, "shape": [int(d) for d in out.shape]})
    return {"outputs": described, "seconds": seconds}


@entry
def benchmark(params: BenchmarkParams) -> list[float]:
    """Seconds per run of `runs` timed runs after `warmup` untimed ones."""
    batch = np.fromfile(params["input_file"], dtype=np.float32).reshape(params["shape"])
    model = _models[params["handle"]]
    for _ in range(params["warmup"]):
        model(batch)
    times = []
    for _ in range(params["runs"]):
        started = time.perf_counter()
        model(batch)
        times.append(time.perf_counter() - started)
    return times


@entry
def model_io(params: ModelIoParams) -> ModelIo:
    """Output shapes of a model, read by running it once on a zero batch of the input shape
    (TorchScript files carry no static output shapes)."""
    shape = params["shape"]
    outputs = _models[params["handle"]](np.zeros(shape, dtype=np.float32))
    return {
        "inputs": [{"name": "images", "shape": shape, "dtype": "float32"}],
        "outputs": [{"name": f"output{i}", "shape": [int(d) for d in o.shape], "dtype": str(o.dtype)} for i, o in enumerate(outputs)],
    }


@entry
def openvino_io(params: PathParams) -> ModelIo:
    """Input and output ports of an OpenVINO IR as stored in its .xml."""
    import openvino as ov

    p = Path(params["path"])
    xml = p if p.suffix == ".xml" else next(p.glob("*.xml"))
    model = ov.Core().read_model(str(xml))

    def port(v, i, kind):
        names = sorted(v.get_names())
        shape = [int(d.get_length()) if d.is_static else "?" for d in v.get_partial_shape()]
        return {"name": names[0] if names else f"{kind}{i}", "shape": shape, "dtype": v.get_element_type().to_dtype().name}

    return {"inputs": [port(v, i, "input") for i, v in enumerate(model.inputs)], "outputs": [port(v, i, "output") for i, v in enumerate(model.outputs)]}


@entry
def tflite_io(params: PathParams) -> ModelIo:
    """Input and output tensors of a LiteRT model as the interpreter declares them; integer
    tensors (full-integer int8 exports) carry their scale and zero point, which a caller needs to
    feed and read them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=params["path"])

    def tensor(d) -> TensorInfo:
        info: TensorInfo = {"name": str(d["name"]), "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
        if np.issubdtype(np.dtype(d["dtype"]), np.integer):
            scale, zero = d["quantization"]
            info["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
        return info

    return {"inputs": [tensor(d) for d in interpreter.get_input_details()], "outputs": [tensor(d) for d in interpreter.get_output_details()]}


@entry
def decode_images(params: DecodeImagesParams) -> list[DecodedImage]:
    """Writes each image as raw RGB uint8 (H, W, 3) to its `out` with the decoder the Python
    wrapper uses (OpenCV), so every image format the platform accepts works."""
    wrapper = model_wrapper_module()
    sizes: list[DecodedImage] = []
    for item in params["items"]:
        rgb = wrapper.load_image(item["path"])
        np.ascontiguousarray(rgb).tofile(item["out"])
        sizes.append({"width": int(rgb.shape[1]), "height": int(rgb.shape[0])})
    return sizes


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def _coco_ground_truth(gt: dict, task: str) -> dict:
    images, annotations = [], []
    keypoint_count = int(gt.get("keypoint_count") or 0)
    for index, image in enumerate(gt["images"]):
        images.append({"id": index + 1, "width": image["width"], "height": image["height"]})
        for obj in image.get("objects", []):
            x, y, w, h = obj["bbox"]
            ann = {
                "id": len(annotations) + 1,
                "image_id": index + 1,
                "category_id": int(obj["class_id"]) + 1,
                "bbox": [x, y, w, h],
                "area": float(w * h),
                "iscrowd": 1 if obj.get("iscrowd") else 0,
            }
            if task == "instance_segmentation":
                ann["segmentation"] = obj.get("segmentation") or [[x, y, x + w, y, x + w, y + h, x, y + h]]
                ann["area"] = float(_polygon_area(ann["segmentation"]))
            if task == "pose_estimation":
                kpts = obj.get("keypoints") or [[0, 0, 0]] * keypoint_count
                ann["keypoints"] = [float(v) for k in kpts for v in k]
                ann["num_keypoints"] = sum(1 for k in kpts if k[2] > 0)
                # ultralytics' OKS uses 0.53 of the box area as the object scale.
                ann["area"] = float(w * h * 0.53)
            annotations.append(ann)
    categories = [{"id": int(cid) + 1, "name": n} for cid, n in zip(gt["class_ids"], gt["class_names"], strict=True)]
    if task == "pose_estimation":
        for c in categories:
            c["keypoints"] = [f"kpt{j}" for j in range(keypoint_count)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _polygon_area(polygons: list[list[float]]) -> float:
    total = 0.0
    for p in polygons:
        xs, ys = np.asarray(p[0::2]), np.asarray(p[1::2])
        total += 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))
    return total


def _coco_results(predictions: list[list[dict]], images: list[dict], task: str) -> list[dict]:
    from pycocotools import mask as mask_utils

    results = []
    for index, preds in enumerate(predictions):
        h, w = images[index]["height"], images[index]["width"]
        for p in preds:
            x1, y1, x2, y2 = p["bbox"]
            r: dict[str, Any] = {
                "image_id": index + 1,
                "category_id": int(p["class_id"]) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(p["confidence"]),
            }
            if task == "instance_segmentation":
                rle = mask_utils.frPyObjects(p["mask"], h, w)
                r["segmentation"] = rle
            if task == "pose_estimation":
                r["keypoints"] = [float(v) for k in p["keypoints"] for v in (k if len(k) == 3 else [*k, 1.0])]
            results.append(r)
    return results


def _coco_map(gt_dict: dict, results: list[dict], iou_type: str, keypoint_count: int) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not any(a["iscrowd"] == 0 for a in gt_dict["annotations"]):
        return {"mAP50-95": None, "mAP50": None}
    if not results:
        return {"mAP50-95": 0.0, "mAP50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt_dict
        coco.createIndex()
        detections = coco.loadRes(results)
        evaluator = COCOeval(coco, detections, iou_type)
        if iou_type == "keypoints" and keypoint_count != 17:
            evaluator.params.kpt_oks_sigmas = np.full(keypoint_count, 1.0 / keypoint_count)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"mAP50-95": max(0.0, float(stats[0])), "mAP50": max(0.0, float(stats[1]))}


@entry
def evaluate(params: EvaluateParams) -> dict[str, float | None]:
    """Scores one model's predictions (one list per ground-truth image, boxes xyxy in image
    pixels, masks as COCO RLE, keypoints [x, y, conf]). Classification: predictions are the
    top-k lists; top-1 and top-5 accuracy over the labelled images."""
    task, ground_truth, predictions = params["task"], params["ground_truth"], params["predictions"]
    if task in ("image_classification", "zero_shot_classification"):
        labelled = [(img["label"], preds) for img, preds in zip(ground_truth["images"], predictions, strict=True) if img.get("label") is not None]
        if not labelled:
            return {"accuracy": None, "top5_accuracy": None, "images": 0}
        top1 = sum(1 for label, preds in labelled if preds and preds[0]["class_id"] == label) / len(labelled)
        top5 = sum(1 for label, preds in labelled if any(p["class_id"] == label for p in preds[:5])) / len(labelled)
        return {"accuracy": top1, "top5_accuracy": top5, "images": len(labelled)}
    if task == "semantic_segmentation":
        return _semantic_metrics(ground_truth, predictions)

    gt = _coco_ground_truth(ground_truth, task)
    keypoint_count = int(ground_truth.get("keypoint_count") or 0)
    results = _coco_results(predictions, gt["images"], task)
    box = _coco_map(gt, [{k: v for k, v in r.items() if k in ("image_id", "category_id", "bbox", "score")} for r in results], "bbox", keypoint_count)
    metrics = dict(box)
    if task == "instance_segmentation":
        mask = _coco_map(gt, results, "segm", keypoint_count)
        metrics = {**mask, "box_mAP50-95": box["mAP50-95"], "box_mAP50": box["mAP50"]}
    elif task == "pose_estimation":
        pose = _coco_map(gt, results, "keypoints", keypoint_count)
        metrics = {**pose, "box_mAP50-95": box["mAP50-95"], "box_mAP50": box["mAP50"]}
    metrics["images"] = len(gt["images"])
    metrics["predictions"] = len(results)
    return metrics


def _semantic_metrics(ground_truth, predictions: list[list[dict[str, Any]]]) -> dict[str, float | None]:
    """mIoU and pixel accuracy of the wrappers' class maps (one prediction per class present,
    its mask as COCO RLE) against the images' masks, over one confusion matrix of every
    labelled pixel (common/semantic_metrics.py)."""
    from pycocotools import mask as mask_utils

    from .semantic_metrics import IGNORE_INDEX, confusion, metrics_from_confusion, read_mask

    model_ids = [int(i) for i in ground_truth["class_ids"]]
    index_of = {cid: i for i, cid in enumerate(model_ids)}
    pairs = [(int(d), int(m)) for d, m in ground_truth.get("mask_class_ids") or []]
    table = np.full(max([d for d, _ in pairs] + [255]) + 1, IGNORE_INDEX, dtype=np.uint8)
    for dataset_id, model_id in pairs:
        if model_id in index_of:
            table[dataset_id] = index_of[model_id]
    n = len(model_ids)
    # One column more than the classes: labelled pixels no prediction covers (a miss, never right).
    matrix = np.zeros((n + 1, n + 1), dtype=np.int64)
    images = 0
    for image, preds in zip(ground_truth["images"], predictions, strict=True):
        if not image.get("mask"):
            continue
        raw = read_mask(image["mask"])
        target = np.full(raw.shape, IGNORE_INDEX, dtype=np.uint8)
        inside = (raw >= 0) & (raw < len(table))
        target[inside] = table[raw[inside]]
        pred = np.full(raw.shape, n, dtype=np.int64)
        for p in preds:
            rle = mask_utils.frPyObjects(p["mask"], *p["mask"]["size"])
            pred[mask_utils.decode(rle).astype(bool)] = index_of[int(p["class_id"])]
        matrix += confusion(pred, target, n + 1)
        images += 1
    if images == 0:
        return {"mIoU": None, "pixel_accuracy": None, "images": 0}
    out = metrics_from_confusion(matrix, [*[str(c) for c in ground_truth["class_names"]], "(none)"])
    rows = out["per_class_metrics"][:n]
    ious = [r["iou"] for r in rows if r["iou"] is not None]
    labelled = int(matrix[:n].sum())
    return {
        "mIoU": float(np.mean(ious)) if ious else None,
        "pixel_accuracy": float(np.trace(matrix[:n, :n]) / labelled) if labelled else None,
        "images": images,
    }
