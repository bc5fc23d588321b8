"""The Python side of an inference job, driven batch by batch from TypeScript.

    <framework>.open_session(params)  the framework's module loads the checkpoint into its
                                      backend and calls `open_with`: the task is checked against
                                      TASK_TYPE and the XAI layers are resolved here
    predict_batch(params)             predict, evaluate against ground truth, draw, explain; one dict per image
    finish()                          the test run's metrics (infer_metrics.py)
    close_session()

TypeScript picks the framework; its backend (ultralytics/infer.py, common/classifier_infer.py) has one
shape: predict / describe / render / xai_*. Everything an image produces is a plain dict; images
and heatmaps are written to the paths TypeScript names and uploaded from there.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..protocol import BatchAnswer, ModelInfo, PredictParams, SessionParams
from ..support import entry, is_out_of_memory
from .infer_metrics import ClassificationEvaluator, DetectionEvaluator
from .xai import CamExplainer, UnknownLayerError, resolve_layers, save_overlay, summarize
from .yolo_metrics import TASK_BY_PLATFORM

LOG = logging.getLogger("vision_trainer.infer")
# Test runs keep every detection down to this confidence for mAP, as ultralytics' validator does.
EVALUATION_CONFIDENCE = 0.001


class CheckpointMismatchError(ValueError):
    """The checkpoint's task does not fit the job's TASK_TYPE."""


class XaiMethodError(ValueError):
    """XAI_METHOD does not fit the model's task."""


class FrameworkMismatchError(ValueError):
    """FRAMEWORK names another framework than the one that wrote the checkpoint."""


class Session:
    def __init__(self, backend, params: SessionParams):
        self.params = params
        self.backend = backend
        expected = TASK_BY_PLATFORM.get(params["task_type"], "classify" if params["task_type"].endswith("classification") else None)
        if self.backend.task != expected:
            raise CheckpointMismatchError(
                f"the checkpoint holds a {self.backend.task} model (classes: {', '.join(list(self.backend.names.values())[:8])}), "
                f"but TASK_TYPE={params['task_type']} needs a {expected} model"
            )
        self.conf_threshold = float(params["conf_threshold"])
        self.evaluator = None
        if params.get("evaluate"):
            if self.backend.task == "classify":
                self.evaluator = ClassificationEvaluator(self.backend.names)
            else:
                self.evaluator = DetectionEvaluator(self.backend.task, self.backend.names, self.conf_threshold, self.backend.kpt_shape)
        # A test run predicts down to the evaluation confidence and reports what passes the threshold.
        self.predict_conf = min(EVALUATION_CONFIDENCE, self.conf_threshold) if self.evaluator else self.conf_threshold
        self.explainer = None
        self.xai_layers: list[str] = []
        xai = params.get("xai")
        if xai:
            method = xai["method"]
            if method not in self.backend.xai_methods():
                raise XaiMethodError(f"XAI_METHOD={method} does not fit a {self.backend.task} model; use one of: {', '.join(self.backend.xai_methods())}")
            network, root = self.backend.xai_network()
            self.xai_layers = list(xai.get("layers") or self.backend.default_xai_layers(root))
            layers = resolve_layers(root, self.xai_layers)  # UnknownLayerError before any image is processed
            self.explainer = CamExplainer(network, layers, method, self.backend.xai_reshape_for(root, self.xai_layers))

    def info(self) -> dict:
        return {**self.backend.info(), "xai_layers": self.xai_layers, "prediction_confidence": self.predict_conf}

    def predict(self, items: list[dict]) -> dict:
        paths = [item["path"] for item in items]
        started = time.perf_counter()
        try:
            results: list[Any] = list(self.backend.predict(paths, self.predict_conf))
        except Exception as batch_error:  # one unreadable image must not sink its whole batch
            if is_out_of_memory(batch_error):
                raise
            results = []
            for path in paths:
                try:
                    results.append(self.backend.predict([path], self.predict_conf)[0])
                except Exception as exc:  # noqa: BLE001
                    results.append(exc)
            if len(paths) > 1 and all(isinstance(r, Exception) for r in results):
                raise batch_error  # not an image's fault: the model or the framework fails
        seconds = time.perf_counter() - started
        images = [self._one(item, r) if not isinstance(r, Exception) else {"error": f"{type(r).__name__}: {r}"} for item, r in zip(items, results, strict=True)]
        return {"images": images, "inference_seconds": seconds}

    def _one(self, item: dict, result) -> dict:
        width, height = self.backend.image_size(result)
        ground_truth = item.get("ground_truth")
        evaluate = self.evaluator is not None and ground_truth is not None
        reported, evaluation_input, shown = self.backend.describe(result, self.conf_threshold, evaluate)
        evaluation = None
        if evaluate:
            if self.backend.task == "classify":
                evaluation = self.evaluator.add(ground_truth["class"], evaluation_input["ranked_classes"])
            else:
                evaluation = self.evaluator.add(item["key"], width, height, ground_truth, evaluation_input)
        if item.get("visualization_path"):
            self.backend.render(shown, item["visualization_path"], ground_truth if evaluate else None, evaluation)
        out = {"width": width, "height": height, "predictions": reported, "evaluation": self._named(evaluation), "xai": None}
        if self.explainer is not None and item.get("xai_path"):
            out["xai"] = self._explain(item, reported)
        return out

    def _named(self, evaluation: dict | None) -> dict | None:
        """Class names next to every class id, so results.json reads without the class list."""
        if evaluation is None:
            return None
        names = self.backend.names
        for key in ("class_id", "predicted_class_id", "true_class_id"):
            for rows in evaluation.values():
                if isinstance(rows, list):
                    for row in rows:
                        if key in row:
                            row[key.replace("_id", "_name")] = names.get(row[key], str(row[key]))
        return evaluation

    def _explain(self, item: dict, reported: dict) -> dict:
        import torch

        base = {"method": self.explainer.method, "target_layers": self.xai_layers}
        try:
            with torch.enable_grad():
                cam_input = self.backend.xai_input(item["path"])
                target, explained = self.backend.xai_target(cam_input, reported)
                heat = self.explainer.heatmap(cam_input, target)
            save_overlay(cam_input.original_rgb, heat, item["xai_path"])
            boxes = [b["bbox"] for b in reported["boxes"]] if "boxes" in reported else None
            return {**base, "target": explained, **summarize(heat, boxes), "error": None}
        except Exception as exc:  # noqa: BLE001 - a heatmap that fails must not fail the job
            LOG.warning("XAI failed for %s: %s", item["path"], exc)
            return {**base, "target": None, "error": f"{type(exc).__name__}: {exc}"}


_session: Session | None = None


def _require() -> Session:
    if _session is None:
        raise RuntimeError("no inference session is open: call open_session first")
    return _session


def open_with(backend, params: SessionParams) -> ModelInfo:
    """Makes `backend` (a framework's, loaded on params["checkpoint"]) the open session."""
    global _session
    _session = None
    _session = Session(backend, params)
    return _session.info()


@entry
def predict_batch(params: PredictParams) -> BatchAnswer:
    return _require().predict([dict(item) for item in params["items"]])


@entry
def finish() -> dict | None:
    """The test run's metrics (None when not evaluating)."""
    session = _require()
    return session.evaluator.finish() if session.evaluator is not None else None


@entry
def close_session() -> None:
    global _session
    _session = None


__all__ = ["CheckpointMismatchError", "FrameworkMismatchError", "UnknownLayerError", "XaiMethodError", "close_session", "finish", "open_with", "predict_batch"]
