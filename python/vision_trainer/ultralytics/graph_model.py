"""INFERENCE_MODEL_PATH for ultralytics checkpoints: an export job's model.onnx (or model.openvino)
predicting through ultralytics' own predictor, in place of a fresh export of the checkpoint.

An export job's ONNX differs from the graph an inference job exports for itself in four ways,
each undone here so the predictor (letterbox, NMS, result objects) runs exactly as on the .pt:
- a fixed input size and batch: ultralytics letterboxes to the full square and splits or pads
  batches to the graph's batch (its own handling of static exports);
- the normalisation built in (INCLUDE_PREPROCESSING): the graph takes the letterboxed uint8 NHWC
  pixels, recovered exactly from the predictor's float input (x * 255 undoes its / 255);
- NMS built in (INCLUDE_POSTPROCESSING): rows of x1, y1, x2, y2, score, class, which the
  predictor reads as an end-to-end model's; the graph numbers classes by dataset id, mapped
  back to the model's index here. Its IoU, floor and row count are fixed at export, so the job
  refuses a graph whose NMS is not the one it would run (`nms_problems`);
- its metadata comes from outside: ultralytics parses it (ast.literal_eval, never executed), and
  every field the predictor reads (task, names, stride, size, batch, NMS) is then set from the
  checkpoint and the export's metadata.json, which the job has already compared.

Whether the graph computes the checkpoint's function is then measured, not assumed:
`check_same_model` predicts two seeded random images with both and compares their scores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..common.graph_runtime import (
    BF16_GRAPH_MATCH_TOLERANCE,
    GRAPH_MATCH_TOLERANCE,
    QUANTIZED_GRAPH_MATCH_TOLERANCE,
    GraphModelMismatchError,
    ultralytics_runtime_settings,
)

# The scores compared per image: the top ones, ordered, so NMS's order of near-ties does not count.
COMPARED_SCORES = 10


def _mismatch(uri: str, problems: list[str]) -> GraphModelMismatchError:
    return GraphModelMismatchError(f"{uri} was not exported from CHECKPOINT_PATH, or not for this job: {'; '.join(problems)}")


def metadata_problems(graph_model: dict, names: list[str], class_ids: list[int], imgsz: int) -> list[str]:
    """What metadata.json says that makes the graph another model than the checkpoint."""
    problems = []
    if graph_model["framework"] != "ultralytics":
        problems.append(f"it was exported from a {graph_model['framework']} model, the checkpoint is ultralytics'")
    if list(graph_model["class_names"]) != names:
        problems.append(f"its classes ({', '.join(graph_model['class_names'][:8])}) are not the checkpoint's ({', '.join(names[:8])}) in the same order")
    elif list(graph_model["class_ids"]) != list(class_ids):
        # The rows of a built-in NMS name these ids: the job would report another class than predicted.
        shown = lambda ids: ", ".join(str(i) for i in list(ids)[:8])  # noqa: E731
        problems.append(f"its dataset class ids ({shown(graph_model['class_ids'])}) are not the checkpoint's ({shown(class_ids)})")
    height, width = graph_model["input_size"]
    if [height, width] != [imgsz, imgsz]:
        remedy = f"set IMAGE_SIZE={height}, or export at {imgsz}" if height == width else f"export at {imgsz}x{imgsz}"
        problems.append(f"it takes {height}x{width} images, this job predicts at {imgsz}x{imgsz} (IMAGE_SIZE): {remedy}")
    if graph_model.get("box_units") == "normalized":
        problems.append("its boxes are fractions of the input size; export it with pixel coordinates")
    return problems


def nms_problems(nms: dict | None, iou: float, lowest_confidence: float, max_detections: int) -> list[str]:
    """An NMS built into the graph must keep what the job's would: the same IoU, class-aware, a
    score floor at or below the lowest confidence the job predicts at, and as many rows."""
    if nms is None:
        return []
    problems = []
    advice = "; export with INCLUDE_POSTPROCESSING=false to leave NMS to the job"
    if abs(float(nms["iou_threshold"]) - iou) > 1e-9:
        problems.append(
            f"its NMS is built in at IoU {nms['iou_threshold']}, this job's IOU_THRESHOLD is {iou}: set IOU_THRESHOLD={nms['iou_threshold']}{advice}"
        )
    if not nms.get("class_aware", True):
        problems.append(f"its NMS is built in class-agnostic, this job's is class-aware{advice}")
    floor = float(nms.get("min_confidence") or 0.0)
    if floor > lowest_confidence:
        problems.append(f"its NMS drops scores at or below {floor}, and this job keeps predictions down to {lowest_confidence}{advice}")
    if int(nms["max_detections"]) < max_detections:
        problems.append(f"its NMS keeps at most {nms['max_detections']} detections per image, this job {max_detections}{advice}")
    return problems


def _openvino_folder(graph_model: dict, graph_dir: str) -> Path:
    """The IR folder ultralytics' OpenVINO backend reads (it knows one by its `_openvino_model`
    name): the export's own .xml and .bin (an export job's model.openvino), or IR converted from
    its ONNX. Its metadata.yaml is left behind: what the predictor needs comes from `_adapt`."""
    import shutil

    import openvino as ov

    folder = Path(graph_dir) / "model_openvino_model"
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(graph_model["path"])
    if graph_model["format"] == "openvino":
        for part in (source, source.with_suffix(".bin")):
            shutil.copyfile(part, folder / f"model{part.suffix}")
    else:
        # compress_to_fp16=False: the weights stay float32, as in the export job's graph.
        ov.save_model(ov.Core().read_model(str(source)), str(folder / "model.xml"), compress_to_fp16=False)
    return folder


def _adapt(auto_backend, graph_model: dict, checkpoint_meta: dict, backend_name: str) -> None:
    """The predictor's AutoBackend made to read the export as the checkpoint: what it knows of the
    model from the checkpoint, the uint8 NHWC input and the dataset's class ids undone."""
    import torch

    inner = auto_backend.backend
    nms = graph_model.get("nms") is not None
    batch = graph_model.get("batch") or 1
    inner.names = dict(checkpoint_meta["names"])
    inner.task = checkpoint_meta["task"]
    inner.stride = checkpoint_meta["stride"]
    inner.imgsz = list(graph_model["input_size"])
    inner.batch = int(batch)
    inner.dynamic = False
    inner.end2end = nms
    if checkpoint_meta.get("kpt_shape"):
        inner.kpt_shape = list(checkpoint_meta["kpt_shape"])
    inner.metadata = {**(getattr(inner, "metadata", None) or {}), "dynamic": False, "args": {"nms": nms, "dynamic": False, "batch": int(batch)}}
    # The dataset id a row names -> the model's output index (ClassIds: index i is dataset id ids[i]).
    index_of = {float(class_id): float(i) for i, class_id in enumerate(graph_model["class_ids"])}
    embedded_preprocessing = bool(graph_model["embedded_preprocessing"])

    def run(feed: torch.Tensor) -> list[np.ndarray]:
        if backend_name == "onnx":
            return inner.session.run(inner.output_names, {inner.session.get_inputs()[0].name: feed.cpu().numpy()})
        # ultralytics' own OpenVINO forward casts every input to float32.
        return list(inner.ov_compiled_model(feed.cpu().numpy()).values())

    def forward(im: torch.Tensor, **_: Any) -> list[np.ndarray]:
        feed = im
        if embedded_preprocessing:
            feed = (im.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        outputs = run(feed)
        if nms:
            rows = np.array(outputs[0], copy=True)
            # Rounded: a dynamically quantized graph carries its rows through uint8 (3.02 for 3).
            rows[..., 5] = np.rint(rows[..., 5])
            kept = rows[..., 4] > 0  # the rows NMS filled; the rest are zeros
            unknown = sorted({float(c) for c in rows[..., 5][kept]} - set(index_of))
            if unknown:
                raise GraphModelMismatchError(
                    f"{graph_model['uri']}: its NMS names class ids {unknown[:8]}, which are not metadata.json's class ids ({sorted(index_of)[:8]})"
                )
            rows[..., 5] = np.vectorize(lambda c: index_of.get(float(c), 0.0), otypes=[np.float32])(rows[..., 5])
            outputs = [rows, *outputs[1:]]
        return outputs

    inner.forward = forward


def predictor_for(yolo, adapt):
    """The task's predictor class, adapting its AutoBackend once the predictor has built it, so
    the first predict (which builds it) already runs the export as the checkpoint."""
    base = yolo._smart_load("predictor")

    class ExportedGraphPredictor(base):  # type: ignore[misc, valid-type]
        def setup_model(self, model, verbose: bool = True):
            super().setup_model(model, verbose)
            adapt(self.model)

    return ExportedGraphPredictor


def _scores(result) -> np.ndarray:
    """A result's scores, highest first: class probabilities or detection confidences."""
    if getattr(result, "probs", None) is not None:
        values = result.probs.data.float().cpu().numpy()
    else:
        found = result.obb if getattr(result, "obb", None) is not None else result.boxes
        values = found.conf.float().cpu().numpy() if found is not None else np.zeros(0)
    return np.sort(values)[::-1][:COMPARED_SCORES]


def check_same_model(uri: str, reference: list, got: list, tolerance: float) -> float:
    """The largest score difference over two images' top scores (GraphModelMismatchError beyond
    `tolerance`): other weights, classes or normalisation move them by far more than float rounding."""
    difference = 0.0
    for r, g in zip(reference, got, strict=True):
        expected, actual = _scores(r), _scores(g)
        count = min(len(expected), len(actual))
        # A score one side has and the other lacks is a difference of that score.
        unmatched = [*expected[count:], *actual[count:]]
        difference = max(difference, float(np.abs(expected[:count] - actual[:count]).max(initial=0.0)), float(max(unmatched, default=0.0)))
    if not difference <= tolerance:
        raise GraphModelMismatchError(
            f"{uri} was not exported from CHECKPOINT_PATH: on the same images its scores differ from the checkpoint's by up to {difference:.4f} "
            f"(more than {tolerance}); point INFERENCE_MODEL_PATH at the export of this checkpoint, or leave it unset"
        )
    return difference


def open_exported(
    graph_model: dict,
    backend_name: str,
    yolo,
    checkpoint_meta: dict,
    predict_settings: dict,
    graph_dir: str,
    precision: str,
):
    """(YOLO on the export, its predictor class, what it computes in, seconds): INFERENCE_MODEL_PATH's
    graph once metadata.json and the graph's own scores show it is the checkpoint's
    (GraphModelMismatchError otherwise). `predict_settings`: imgsz, iou, max_det, the job's
    lowest confidence (`conf`)."""
    from ultralytics import YOLO

    started = time.perf_counter()
    imgsz = int(predict_settings["imgsz"])
    names = [checkpoint_meta["names"][i] for i in sorted(checkpoint_meta["names"])]
    problems = metadata_problems(graph_model, names, checkpoint_meta["class_ids"], imgsz) + nms_problems(
        graph_model.get("nms"), float(predict_settings["iou"]), float(predict_settings["conf"]), int(predict_settings["max_det"])
    )
    if problems:
        raise _mismatch(graph_model["uri"], problems)
    source = Path(graph_model["path"]) if backend_name == "onnx" else _openvino_folder(graph_model, graph_dir)
    model = YOLO(str(source), task=checkpoint_meta["task"])
    predictor = predictor_for(model, lambda auto_backend: _adapt(auto_backend, graph_model, checkpoint_meta, backend_name))
    ran = ultralytics_runtime_settings(model, source, imgsz, backend_name, precision, predictor=predictor)
    images = [np.random.default_rng(seed).integers(0, 256, size=(imgsz, imgsz, 3), dtype=np.uint8) for seed in (0, 1)]
    # Every score the graph gives (down to its NMS's floor), not only those above the job's
    # threshold: on random pixels a trained model's scores can all sit below it.
    floor = float((graph_model.get("nms") or {}).get("min_confidence") or 0.0)
    settings = {"imgsz": imgsz, "conf": floor, "iou": float(predict_settings["iou"]), "max_det": int(predict_settings["max_det"])}
    reference = yolo.predict(images, device="cpu", batch=len(images), verbose=False, save=False, **settings)
    got = model.predict(images, device="cpu", batch=len(images), verbose=False, save=False, predictor=predictor, **settings)
    tolerance = QUANTIZED_GRAPH_MATCH_TOLERANCE if graph_model.get("quantized") else BF16_GRAPH_MATCH_TOLERANCE if ran == "bf16" else GRAPH_MATCH_TOLERANCE
    check_same_model(graph_model["uri"], reference, got, tolerance)
    return model, predictor, ran, time.perf_counter() - started
