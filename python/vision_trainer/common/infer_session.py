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
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..cpu_budget import budget as cpu_budget
from ..protocol import BatchAnswer, ModelInfo, PrecisionCheck, PredictParams, SessionParams, XaiProgress
from ..support import entry, guarded_js_call, is_out_of_memory
from .decode_pool import DecodePool
from .infer_metrics import ClassificationEvaluator, DetectionEvaluator
from .precision_check import compare as compare_precision
from .semantic_infer import SemanticEvaluator
from .xai import CamExplainer, UnknownLayerError, resolve_layers, save_overlay, summarize
from .xai_perturbation import DEFAULT_SAMPLES, LAYERLESS_METHODS, PERTURBATION_METHODS, AttentionRollout, PerturbationExplainer
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


def prefetch_choice(requested: bool | str | None, compute_threads: int | None, budget_threads: int) -> tuple[bool, str]:
    """(prefetch, why) for PREFETCH_NEXT_BATCH. `auto` prefetches where the decoding has a CPU of its
    own: the model runs on a GPU (`compute_threads` None), or its runtime computes on fewer threads
    than the job's CPU budget. Where the runtime already uses every CPU of the budget, decoding beside
    it takes CPU from the forward pass: on 2 CPUs (bench:infer, four or five quiet runs of 3-5
    pairs) the prefetch's median was 1.02x for ultralytics, whose predictor computes on one thread,
    0.95x for timm (0.90-1.16x, within the machine's drift) and 0.94x for transformers, both on two."""
    if requested is True or requested is False:
        return requested, "PREFETCH_NEXT_BATCH"
    if compute_threads is None:
        return True, "auto: the model runs on a GPU; the next batch decodes on the CPU meanwhile"
    if compute_threads < budget_threads:
        return True, f"auto: the model computes on {compute_threads} of the {budget_threads} CPU(s) the job may use; the next batch decodes on the rest"
    return False, f"auto: the model computes on all {budget_threads} CPU(s) the job may use; decoding beside it would take CPU from the forward pass"


class Prefetcher:
    """Decodes and preprocesses the next batch's images (`backend.load`) in a background thread
    while the current batch runs through the model: JPEG decoding and resizing (PIL, OpenCV)
    release the GIL, as do the model's kernels, so the two overlap, and the next call finds its
    batch ready. TypeScript names the next batch with each call (`prefetch`). A batch that fails
    to load here is loaded again on the normal path, which reports which image is at fault.
    Whether it runs: `prefetch_choice`."""

    def __init__(self, load, enabled: bool):
        self.load = load
        self.enabled = enabled
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vt-prefetch") if self.enabled else None
        self.pending: tuple[tuple[str, ...], Future] | None = None

    def start(self, paths: list[str]) -> None:
        if self.pool is not None:
            self.pending = (tuple(paths), self.pool.submit(self.load, paths))

    def take(self, paths: list[str]):
        """The loaded batch when `paths` is the one prefetched, else None."""
        pending, self.pending = self.pending, None
        if pending is None or pending[0] != tuple(paths):
            return None
        try:
            return pending[1].result()
        except Exception:  # noqa: BLE001  (the normal path loads it again and names the image)
            return None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def lowest_confidence(params: SessionParams) -> float:
    """The confidence a job predicts down to: a test run keeps every prediction down to the
    evaluation confidence (and reports those passing CONFIDENCE_THRESHOLD), others the threshold."""
    threshold = float(params["conf_threshold"])
    return min(EVALUATION_CONFIDENCE, threshold) if params.get("evaluate") else threshold


class Session:
    def __init__(self, backend, params: SessionParams):
        self.params = params
        self.backend = backend
        expected = {**TASK_BY_PLATFORM, "semantic_segmentation": "semantic"}.get(
            params["task_type"], "classify" if params["task_type"].endswith("classification") else None
        )
        if self.backend.task != expected:
            raise CheckpointMismatchError(
                f"the checkpoint holds a {self.backend.task} model (classes: {', '.join(list(self.backend.names.values())[:8])}), "
                f"but TASK_TYPE={params['task_type']} needs a {expected} model"
            )
        self.conf_threshold = float(params["conf_threshold"])
        self.evaluator = None
        self.class_ids = self.backend.class_ids
        if not self.class_ids.stored:
            LOG.warning(
                "the checkpoint does not say which dataset class id each of its outputs is (it was written before class ids were stored, "
                "or not by vision-trainer): its output indices are reported as the class ids"
            )
        if params.get("evaluate"):
            if getattr(self.backend, "prompted", False):
                from ..ultralytics.sam import PromptedMaskEvaluator

                self.evaluator = PromptedMaskEvaluator(self.backend.names)
            elif self.backend.task == "classify":
                self.evaluator = ClassificationEvaluator(self.backend.names)
            elif self.backend.task == "semantic":
                self.evaluator = SemanticEvaluator([self.backend.names[i] for i in sorted(self.backend.names)])
            else:
                self.evaluator = DetectionEvaluator(self.backend.task, self.backend.names, self.conf_threshold, self.backend.kpt_shape)
        self.predict_conf = lowest_confidence(params)
        # Decoding a batch on the CPU budget's threads (DECODE_THREADS; decode_pool.py).
        self.decoder = DecodePool(params.get("decode_threads") or cpu_budget().threads)
        self.backend.decoder = self.decoder
        ran = self.backend.info()["inference_backend"]
        prefetch, self.prefetch_reason = prefetch_choice(params.get("prefetch", "auto"), ran["cpu_threads"], cpu_budget().threads)
        self.prefetcher = Prefetcher(self.backend.load, prefetch)
        # INFERENCE_PRECISION=bf16 that ran: the first batch is compared with float32 (precision_check.py).
        self.precision_check_pending = ran.get("precision") == "bf16" and hasattr(self.backend, "reference_predict")
        self.explainer = None
        self.on_explained = None
        self.xai_layers: list[str] = []
        xai = params.get("xai")
        if xai:
            method = xai["method"]
            if method not in self.backend.xai_methods():
                able = ", ".join(self.backend.xai_methods())
                raise XaiMethodError(
                    f"XAI_METHOD={method} does not fit a {self.backend.task} model; "
                    + (f"use one of: {able}" if able else "no explanation method explains it yet: set ENABLE_XAI=false")
                )
            network, root = self.backend.xai_network()
            if method in PERTURBATION_METHODS:
                # Superpixel perturbations of the whole input: no layer is involved.
                self.explainer = PerturbationExplainer(network, method, int(xai.get("samples") or DEFAULT_SAMPLES))
            elif method == "attention":
                self.explainer = AttentionRollout(root)
            else:
                self.xai_layers = list(xai.get("layers") or self.backend.default_xai_layers(root))
                layers = resolve_layers(root, self.xai_layers)  # UnknownLayerError before any image is processed
                self.explainer = CamExplainer(network, layers, method, self.backend.xai_reshape_for(root, self.xai_layers))

    def info(self) -> dict:
        info = self.backend.info()
        return {
            **info,
            "inference_backend": {
                **info["inference_backend"],
                "decode_threads": self.decoder.threads,
                "prefetch": self.prefetcher.enabled,
                "prefetch_reason": self.prefetch_reason,
                # The allocator settings the process started with (the job sets them: RETAIN_FREED_MEMORY).
                "malloc_tunables": os.environ.get("GLIBC_TUNABLES") or None,
                "omp_spin_count": os.environ.get("GOMP_SPINCOUNT") or None,
            },
            "class_ids": self.class_ids.ids,
            "class_ids_stored": self.class_ids.stored,
            "xai_layers": self.xai_layers,
            "prediction_confidence": self.predict_conf,
        }

    def predict(self, items: list[dict], prefetch: list[str] | None = None, on_explained=None) -> dict:
        """`on_explained`: a JavaScript function told after each image's heatmap (XaiProgress)."""
        self.on_explained = on_explained
        paths = [item["path"] for item in items]
        started = time.perf_counter()
        cpu_started = time.process_time()
        self.stages: dict[str, float] | None = {"preprocess": 0.0, "forward": 0.0}
        loaded = self.prefetcher.take(paths)
        if prefetch:
            self.prefetcher.start(prefetch)
        try:
            results: list[Any] = self._predict(items, loaded)
        except Exception as batch_error:  # one unreadable image must not sink its whole batch
            if is_out_of_memory(batch_error):
                raise
            results = []
            for item in items:
                try:
                    results.append(self._predict([item])[0])
                except Exception as exc:  # noqa: BLE001
                    results.append(exc)
            if len(paths) > 1 and all(isinstance(r, Exception) for r in results):
                raise batch_error  # not an image's fault: the model or the framework fails
        seconds = time.perf_counter() - started
        images = [self._one(item, r) if not isinstance(r, Exception) else {"error": f"{type(r).__name__}: {r}"} for item, r in zip(items, results, strict=True)]
        stages = self.stages
        answer: BatchAnswer = {
            "images": images,
            "inference_seconds": seconds,
            "preprocess_seconds": stages["preprocess"] if stages else None,
            "forward_seconds": stages["forward"] if stages else None,
            # Every thread of this process (torch's pool, a prefetch), results and drawing included.
            "cpu_seconds": time.process_time() - cpu_started,
        }
        if self.precision_check_pending and not any(isinstance(r, Exception) for r in results):
            self.precision_check_pending = False
            answer["precision_check"] = self._precision_check(paths, results)
        return answer

    def _precision_check(self, paths: list[str], results: list[Any]) -> PrecisionCheck:
        """The batch predicted again in float32 by the PyTorch model, compared as reported. Not
        timed with the batch: it is the check's cost, paid once."""
        try:
            reference = self.backend.reference_predict(paths, self.predict_conf)
            reported = lambda batch: [self.backend.describe(r, self.conf_threshold, False)[0] for r in batch]  # noqa: E731
            return compare_precision(reported(reference), reported(results))
        except Exception as exc:  # noqa: BLE001 - the check failing must not fail the predictions it checks
            LOG.warning("INFERENCE_PRECISION: comparing the first batch with float32 failed: %s", exc)
            return {
                "against": "pytorch float32",
                "images": len(paths),
                "compared": "",
                "agreement": None,
                "max_score_difference": None,
                "error": f"{type(exc).__name__}: {exc}",
            }

    def _predict(self, items: list[dict], loaded=None) -> list[Any]:
        """A prompted backend (SAM 2) takes the items, whose ground truth may be its prompts.
        Adds to `self.stages` the backend's timing of the batch (`preprocess_seconds`: decoding
        and preparing the images, `forward_seconds`: the model), None where it has none."""
        if getattr(self.backend, "prompted", False):
            self.stages = None
            return self.backend.predict_items(items, self.predict_conf)
        self.backend.preprocess_seconds, self.backend.forward_seconds = None, None
        results = list(self.backend.predict([item["path"] for item in items], self.predict_conf, loaded))
        preprocess, forward = self.backend.preprocess_seconds, self.backend.forward_seconds
        if self.stages is not None and preprocess is not None and forward is not None:
            self.stages["preprocess"] += preprocess
            self.stages["forward"] += forward
        else:
            self.stages = None
        return results

    def _one(self, item: dict, result) -> dict:
        width, height = self.backend.image_size(result)
        ground_truth = item.get("ground_truth")
        if self.backend.task == "semantic":
            return self._one_semantic(item, result, width, height)
        evaluate = self.evaluator is not None and ground_truth is not None
        reported, evaluation_input, shown = self.backend.describe(result, self.conf_threshold, evaluate)
        metrics = None
        if evaluate:
            if self.backend.task == "classify":
                metrics = self.evaluator.add(ground_truth["class"], evaluation_input["ranked_classes"], evaluation_input.get("scores"))
            else:
                metrics = self.evaluator.add(item["key"], width, height, ground_truth, evaluation_input)
        if item.get("visualization_path"):
            self.backend.render(shown, item["visualization_path"], ground_truth if evaluate else None, metrics)
        # The backends speak the model's class indices; what leaves carries the dataset's ids.
        out = {
            "width": width,
            "height": height,
            "predictions": self.class_ids.predictions(reported),
            "metrics": self.class_ids.evaluation(metrics),
            "xai": None,
        }
        if self.explainer is not None and item.get("xai_path"):
            started = time.perf_counter()
            out["xai"] = self._explain(item, reported)
            if self.on_explained is not None:
                progress: XaiProgress = {"method": self.explainer.method, "seconds": time.perf_counter() - started}
                guarded_js_call(self.on_explained, progress)
        return out

    def _one_semantic(self, item: dict, result, width: int, height: int) -> dict:
        """A class map: its indexed PNG (item["mask_path"]), the classes it holds, and in a test
        run the ground truth's classes and the image's pixel accuracy and IoUs (dataset ids)."""
        ground_truth = item.get("ground_truth")
        evaluator = self.evaluator if ground_truth is not None else None
        out = self.backend.outcome(result, ground_truth, evaluator, item.get("mask_path"))
        if item.get("visualization_path"):
            self.backend.render(result, item["visualization_path"], out["target"])
        return {
            "width": width,
            "height": height,
            "predictions": out["predictions"],
            "ground_truth": out["ground_truth"],
            "metrics": out["metrics"],
            "xai": None,
        }

    def _explain(self, item: dict, reported: dict) -> dict:
        """The design's xai member: {method, <method>: statistics} (plus the layers and what the
        heatmap explains); `reported` is still in the model's class indices."""
        import torch

        method = self.explainer.method
        base = {"method": method, "target_layers": self.xai_layers}
        try:
            with torch.enable_grad():
                cam_input = self.backend.xai_input(item["path"])
                target, explained = self.backend.xai_target(cam_input, reported)
                # LIME/SHAP explain the reported class's score (classifiers only).
                heat = self.explainer.heatmap(cam_input, explained["class_id"] if method in LAYERLESS_METHODS else target)
            save_overlay(cam_input.original_rgb, heat, item["xai_path"])
            boxes = [b["bbox"] for b in reported["boxes"]] if "boxes" in reported else None
            if "class_id" in explained:
                explained = {**explained, "class_id": self.class_ids.of(explained["class_id"])}
            return {**base, "target": explained, method: summarize(heat, boxes), "error": None}
        except Exception as exc:  # noqa: BLE001 - a heatmap that fails must not fail the job
            LOG.warning("XAI failed for %s: %s", item["path"], exc)
            return {**base, "target": None, "error": f"{type(exc).__name__}: {exc}"}

    def close(self) -> None:
        self.prefetcher.close()
        self.decoder.close()

    def finish(self) -> dict | None:
        """The test run's metrics with dataset class ids, tables in ascending id order."""
        if self.evaluator is None:
            return None
        out = self.evaluator.finish()
        ids = self.class_ids
        order = ids.order + list(range(len(ids), len(out["confusion_matrix"])))
        labels = out["confusion_matrix_labels"]
        return {
            **out,
            "per_class_metrics": ids.rows(out["per_class_metrics"]),
            "confusion_matrix": ids.matrix(out["confusion_matrix"]),
            "confusion_matrix_labels": [labels[i] for i in order],
            "confusion_matrix_class_ids": [ids.of(i) if i < len(ids) else None for i in order],
        }


_session: Session | None = None


def _require() -> Session:
    if _session is None:
        raise RuntimeError("no inference session is open: call open_session first")
    return _session


def open_with(backend, params: SessionParams) -> ModelInfo:
    """Makes `backend` (a framework's, loaded on params["checkpoint"]) the open session."""
    global _session
    if _session is not None:
        _session.close()
    _session = None
    _session = Session(backend, params)
    return _session.info()


@entry
def predict_batch(params: PredictParams, on_explained=None) -> BatchAnswer:
    return _require().predict([dict(item) for item in params["items"]], list(params.get("prefetch") or []), on_explained)


@entry
def finish() -> dict | None:
    """The test run's metrics (None when not evaluating)."""
    return _require().finish()


@entry
def close_session() -> None:
    global _session
    if _session is not None:
        _session.close()
    _session = None


__all__ = ["CheckpointMismatchError", "FrameworkMismatchError", "UnknownLayerError", "XaiMethodError", "close_session", "finish", "open_with", "predict_batch"]
