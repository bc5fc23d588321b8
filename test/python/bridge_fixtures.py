"""Entry points only the tests call: they exercise the bridge itself (errors, JS callbacks,
threads) and evaluate constructed metric cases. The bridge tests put this folder on Python's
path (PythonBridge's `pythonPath` option); production code never imports it."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypedDict

from vision_trainer.common.infer_metrics import MATCH_IOU_THRESHOLD, ClassificationEvaluator, DetectionEvaluator
from vision_trainer.support import entry, guarded_js_call, plain


class FailParams(TypedDict):
    kind: str


@entry
def fail(params: FailParams) -> None:
    """Raises a chosen Python exception, to check how the bridge converts it."""
    if params["kind"] == "value":
        raise ValueError("bad value from python")
    if params["kind"] == "oom":
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    raise RuntimeError(params["kind"])


class TextParams(TypedDict):
    text: str


@entry
def print_both(params: TextParams) -> None:
    """Writes text to file descriptors 1 and 2; the bridge tests check both are relayed, redacted."""
    sys.stderr.write(f"stderr: {params['text']}\n")
    sys.stderr.flush()
    os.write(1, f"stdout: {params['text']}\n".encode())


class PayloadParams(TypedDict):
    payload: dict[str, Any]


@entry
def call_js(params: PayloadParams, fn: Callable) -> Any:
    """Calls a JS function with a dict (NaN conversion, stop answers, JS errors)."""
    return fn(plain(params["payload"]))


class TimesParams(TypedDict):
    times: int


@entry
def call_js_repeatedly(params: TimesParams, fn: Callable) -> list:
    """Calls the same JS function several times, as a trainer calls its emit function."""
    return [guarded_js_call(fn, {"i": i}) for i in range(params["times"])]


@entry
def call_js_from_thread(fn: Callable) -> str:
    """Demonstrates the guard: JS may only be called from the main thread."""
    result: dict = {}

    def run():
        try:
            result["value"] = guarded_js_call(fn, {"from": "thread"})
        except Exception as exc:  # noqa: BLE001 - the thread's error is the answer
            result["error"] = f"{type(exc).__name__}: {exc}"

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout=10)
    return result.get("error") or str(result.get("value"))


class EvaluateParams(TypedDict):
    task: str
    names: dict[str, str]
    images: list[dict[str, Any]]
    options: dict[str, Any]


@entry
def evaluate(params: EvaluateParams) -> dict:
    """The inference evaluators in one call, for constructed cases: images are
    {"key", "width", "height", "ground_truth", "predictions"} (detection) or
    {"true_class", "ranked_classes"} (classification). Returns the summary and each image's evaluation."""
    task, images, options = params["task"], params["images"], params["options"]
    names = {int(k): v for k, v in params["names"].items()}
    if task == "classify":
        evaluator = ClassificationEvaluator(names)
        per_image = [evaluator.add(im["true_class"], im["ranked_classes"]) for im in images]
    else:
        match_iou = options.get("match_iou", MATCH_IOU_THRESHOLD)
        evaluator = DetectionEvaluator(task, names, options.get("conf_threshold", 0.25), options.get("kpt_shape"), match_iou)
        per_image = [evaluator.add(str(im.get("key", i)), im["width"], im["height"], im["ground_truth"], im["predictions"]) for i, im in enumerate(images)]
    return plain({"summary": evaluator.finish(), "images": per_image})
