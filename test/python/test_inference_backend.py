"""INFERENCE_BACKEND=auto (graph_runtime.resolve_backend): the exported graph only where it is
known to pay off, an explicit choice untouched, and the reason results.json reports."""

from vision_trainer.common import graph_runtime
from vision_trainer.common.graph_runtime import AUTO_GRAPH_MIN_IMAGES, backend_info, resolve_backend


def test_an_explicit_backend_stands():
    for name in ("pytorch", "onnx", "openvino"):
        assert resolve_backend(name, "cuda", 1) == (name, "INFERENCE_BACKEND")


def test_auto_takes_onnx_on_the_cpu_for_a_large_job():
    name, reason = resolve_backend("auto", "cpu", AUTO_GRAPH_MIN_IMAGES)
    assert name == "onnx"
    assert f"{AUTO_GRAPH_MIN_IMAGES} images" in reason


def test_auto_keeps_pytorch_where_the_graph_does_not_pay_or_cannot_run():
    assert resolve_backend("auto", "cpu", AUTO_GRAPH_MIN_IMAGES - 1)[0] == "pytorch"
    assert "fewer than" in resolve_backend("auto", "cpu", 12)[1]
    assert resolve_backend("auto", "cpu", None)[0] == "pytorch"
    assert resolve_backend("auto", "cuda", 10**6) == ("pytorch", "auto: the device is cuda (the graph runtimes here run on the CPU)")
    assert resolve_backend("auto", "cpu", 10**6, "the graph does not run semantic segmentation yet") == (
        "pytorch",
        "auto: the graph does not run semantic segmentation yet",
    )


def test_auto_without_onnxruntime_keeps_pytorch(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert resolve_backend("auto", "cpu", 10**6) == ("pytorch", "auto: onnxruntime is not installed")


def test_backend_info_says_what_was_asked_why_and_with_how_many_threads():
    info = backend_info("onnx", "cpu", 1.23456, True, "auto", "auto: the CPU and 5000 images (at least 1000)")
    assert info["name"] == "onnx" and info["requested"] == "auto" and info["reason"].startswith("auto:")
    assert info["export_seconds"] == 1.235 and info["xai_backend"] == "pytorch"
    assert info["cpu_threads"] == graph_runtime.cpu_threads()
    assert backend_info("pytorch", "cuda:0", None, False)["cpu_threads"] is None
    assert backend_info("pytorch", "cuda:0", None, False)["requested"] == "pytorch"


def test_under_auto_a_failed_export_leaves_pytorch_running_and_says_why():
    def broken():
        raise RuntimeError("Unsupported: ONNX export of operator foo\nmore detail")

    name, reason, exported = graph_runtime.export_or_fall_back("auto", "onnx", "auto: the CPU and 5000 images", broken)
    assert (name, exported) == ("pytorch", None)
    assert reason == "auto: the export to onnx failed (RuntimeError: Unsupported: ONNX export of operator foo)"
    assert graph_runtime.export_or_fall_back("auto", "onnx", "why", lambda: ("graph", 1.0)) == ("onnx", "why", ("graph", 1.0))


def test_a_named_backend_whose_export_fails_fails_the_job():
    import pytest

    def broken():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        graph_runtime.export_or_fall_back("onnx", "onnx", "INFERENCE_BACKEND", broken)


def test_with_a_graph_torch_preprocesses_on_one_thread_unless_gradcam_needs_the_budget():
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        graph_runtime.torch_for_preprocessing_only(xai=True)
        assert torch.get_num_threads() == 2
        graph_runtime.torch_for_preprocessing_only(xai=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
