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


def test_an_export_jobs_graph_is_fed_its_own_input_type_and_batch(tmp_path):
    """A graph of a fixed batch of 2 that normalises uint8 NHWC pixels itself and ends in a
    softmax (what EXPORT_FORMAT=onnx writes by default, at BATCH_SIZE=2) gives the float model's
    logits' probabilities for 3 images: the last batch is padded, the pixels recovered exactly."""
    import numpy as np
    import torch

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()

    class Embedded(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, pixels):
            x = pixels.permute(0, 3, 1, 2).float() / 255.0
            x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
            return torch.softmax(self.net(x), dim=1)

    path = tmp_path / "model.onnx"
    torch.onnx.export(Embedded().eval(), (torch.zeros(2, 8, 8, 3, dtype=torch.uint8),), str(path), input_names=["images"], opset_version=17, dynamo=False)
    graph = {"path": str(path), "embedded_preprocessing": True, "embedded_softmax": True, "batch": 2}
    runner = graph_runtime.ExportedClassifier(graph, "onnx", mean, std)
    pixels = np.random.default_rng(1).integers(0, 256, size=(3, 3, 8, 8)).astype(np.float32) / 255.0
    batch = (pixels - runner.mean) / runner.std
    with torch.inference_mode():
        expected = torch.softmax(net(torch.from_numpy(batch)), dim=1).numpy()
    got = torch.softmax(torch.from_numpy(runner(batch)), dim=1).numpy()
    assert got.shape == (3, 3)
    assert np.abs(got - expected).max() < 1e-5


def _tiny_classifier(seed: int):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()


def _exported(tmp_path, net) -> dict:
    import torch

    path = tmp_path / "model.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), str(path), input_names=["images"], dynamic_axes={"images": {0: "batch"}}, opset_version=17, dynamo=False)
    return {
        "path": str(path),
        "uri": "s3://bucket/export-jobs/exp-1/model.onnx",
        "framework": "timm",
        "task_type": "image_classification",
        "class_names": ["a", "b", "c"],
        "input_size": [8, 8],
        "embedded_preprocessing": False,
        "embedded_softmax": False,
        "batch": None,
        "quantized": False,
    }


META = {"framework": "timm", "class_names": ["a", "b", "c"], "mean": [0.5] * 3, "std": [0.25] * 3}


def test_an_export_of_this_checkpoint_opens_and_says_nothing_is_wrong(tmp_path):
    net = _tiny_classifier(0)
    runner, seconds = graph_runtime.open_exported_classifier(_exported(tmp_path, net), "onnx", net, META, 8)
    assert seconds >= 0 and runner.batch is None


def test_a_model_exported_from_another_checkpoint_is_refused_naming_what_differs(tmp_path):
    import pytest

    net = _tiny_classifier(0)
    graph = _exported(tmp_path, net)
    mismatches = [
        ({**graph, "framework": "huggingface"}, META, 8, "exported from a huggingface model, the checkpoint is timm"),
        ({**graph, "class_names": ["a", "c", "b"]}, META, 8, "its classes (a, c, b) are not the checkpoint's (a, b, c)"),
        (graph, META, 16, "it takes 8x8 images, the checkpoint 16x16"),
    ]
    for model, meta, size, message in mismatches:
        with pytest.raises(graph_runtime.GraphModelMismatchError, match=message.replace("(", r"\(").replace(")", r"\)")):
            graph_runtime.open_exported_classifier(model, "onnx", net, meta, size)
    # Same classes and size, other weights: caught by comparing the outputs.
    with pytest.raises(graph_runtime.GraphModelMismatchError, match="class probabilities differ from the checkpoint's"):
        graph_runtime.open_exported_classifier(graph, "onnx", _tiny_classifier(1), META, 8)


def test_classifier_preprocessing_is_torchvisions_bit_for_bit():
    """The job normalises in NumPy (outside torch's thread pool); a test run must still see the
    tensors validation saw during training: torchvision's ToTensor + Normalize, exactly."""
    import numpy as np
    import torch
    import torchvision.transforms as T
    from PIL import Image
    from vision_trainer.common.classifier_infer import NormalisedInput

    rng = np.random.default_rng(3)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    resize = T.Compose([T.Resize(73), T.CenterCrop(64)])
    ours = NormalisedInput(resize, mean, std)
    reference = T.Compose([resize, T.ToTensor(), T.Normalize(mean, std)])
    for shape in [(90, 120, 3), (64, 64, 3), (201, 77, 3)]:
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        got, want = ours(image), reference(image)
        assert got.dtype == torch.float32 and got.shape == (3, 64, 64)
        assert torch.equal(got, want)


def _loading_backend(device: str):
    """A classifier backend with only what `load` uses: its device and its validation transform."""
    import torch
    import torchvision.transforms as T
    from vision_trainer.common.classifier_infer import ClassifierBackend, NormalisedInput

    backend = ClassifierBackend.__new__(ClassifierBackend)
    backend.device = torch.device(device)
    backend.transform = NormalisedInput(T.Compose([T.Resize(36), T.CenterCrop(32)]), [0.5] * 3, [0.25] * 3)
    return backend


def _images(tmp_path, sizes):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(5)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = tmp_path / f"img-{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_a_loaded_batch_is_stacked_with_each_images_size_and_pinned_only_for_a_gpu(tmp_path, monkeypatch):
    """What the prefetch thread hands to predict: one stacked tensor, each image's (width, height),
    the same values as each image prepared alone; in page-locked memory only when the model is on
    a CUDA device (pinning needs one: here the call is recorded, not made)."""
    import torch

    paths = _images(tmp_path, [(40, 30), (50, 60), (33, 33)])
    cpu = _loading_backend("cpu")
    loaded = cpu.load(paths)
    assert loaded.tensor.shape == (3, 3, 32, 32) and loaded.sizes == [(40, 30), (50, 60), (33, 33)]
    assert torch.equal(loaded.tensor[1], cpu._load_one(paths[1])[0])
    assert not loaded.tensor.is_pinned()

    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: pinned.append(tuple(self.shape)) or self)
    assert _loading_backend("cpu").load(paths) is not None and pinned == []
    _loading_backend("cuda").load(paths)
    assert pinned == [(3, 3, 32, 32)]


def test_bf16_under_auto_takes_openvino_and_an_explicit_backend_stands():
    name, reason = resolve_backend("auto", "cpu", AUTO_GRAPH_MIN_IMAGES, precision="bf16")
    assert name == "openvino" and reason.endswith("in bfloat16 (INFERENCE_PRECISION)")
    assert resolve_backend("auto", "cpu", 12, precision="bf16")[0] == "pytorch"
    assert resolve_backend("auto", "cpu", 1, given_graph="onnx", precision="bf16")[0] == "openvino"
    assert resolve_backend("openvino", "cpu", 1, precision="bf16") == ("openvino", "INFERENCE_BACKEND")


def test_precision_info_says_what_computed_and_why_it_is_not_what_was_asked():
    assert graph_runtime.precision_info("fp32", "onnx", "fp32", "INFERENCE_BACKEND") == {
        "precision": "fp32",
        "precision_requested": "fp32",
        "precision_reason": "INFERENCE_PRECISION",
    }
    assert graph_runtime.precision_info("bf16", "openvino", "bf16", "INFERENCE_BACKEND")["precision_reason"] == "INFERENCE_PRECISION"
    kept = graph_runtime.precision_info("bf16", "pytorch", "fp32", "auto: 12 image(s), fewer than 1000 that pay for the export")
    assert kept["precision"] == "fp32" and kept["precision_requested"] == "bf16"
    assert kept["precision_reason"].startswith("pytorch computes in float32 here") and "fewer than 1000" in kept["precision_reason"]
    no_bf16 = graph_runtime.precision_info("bf16", "openvino", "fp32", "INFERENCE_BACKEND")
    assert no_bf16["precision_reason"].startswith("this CPU has no native bfloat16")
    # backend_info carries it; without one, float32 as asked.
    assert backend_info("onnx", "cpu", None, False)["precision"] == "fp32"
    assert backend_info("openvino", "cpu", None, False, precision=kept)["precision_requested"] == "bf16"


def test_openvino_computes_in_bfloat16_only_when_asked_and_the_cpu_has_it(tmp_path):
    """What the compiled model reports, not what was asked: on a CPU without native bfloat16
    OpenVINO computes in float32 whatever the hint. In bfloat16 the logits stay within what 8
    bits of mantissa allow; in float32 they are PyTorch's to rounding."""
    import numpy as np
    import openvino as ov
    import torch

    net = _tiny_classifier(0)
    graph = _exported(tmp_path, net)
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    batch = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.inference_mode():
        expected = net(torch.from_numpy(batch)).numpy()
    f32 = graph_runtime.OpenVinoRunner(graph["path"], "fp32")
    assert f32.precision == "fp32"
    assert np.abs(f32(batch) - expected).max() < 1e-4
    bf16 = graph_runtime.OpenVinoRunner(graph["path"], "bf16")
    assert bf16.precision == ("bf16" if has_bf16 else "fp32")
    assert np.abs(bf16(batch) - expected).max() < 0.05
    assert graph_runtime.OnnxRunner(graph["path"]).precision == "fp32"


def test_an_export_jobs_graph_opens_in_bfloat16_within_its_own_tolerance(tmp_path):
    """INFERENCE_MODEL_PATH under INFERENCE_PRECISION=bf16: the checkpoint comparison allows what
    bfloat16 moves (BF16_GRAPH_MATCH_TOLERANCE), and still refuses other weights."""
    import openvino as ov
    import pytest

    net = _tiny_classifier(0)
    graph = _exported(tmp_path, net)
    runner, _ = graph_runtime.open_exported_classifier(graph, "openvino", net, META, 8, "bf16")
    assert runner.precision == ("bf16" if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "fp32")
    with pytest.raises(graph_runtime.GraphModelMismatchError, match="class probabilities differ"):
        graph_runtime.open_exported_classifier(graph, "openvino", _tiny_classifier(1), META, 8, "bf16")


def test_auto_runs_an_export_jobs_model_on_the_runtime_that_reads_it():
    assert resolve_backend("auto", "cpu", 1, given_graph="onnx") == ("onnx", "auto: INFERENCE_MODEL_PATH names an export job's ONNX model")
    assert resolve_backend("auto", "cpu", 1, given_graph="openvino") == ("openvino", "auto: INFERENCE_MODEL_PATH names an export job's OpenVINO model")
    assert resolve_backend("auto", "cpu", 1, given_graph="openvino", precision="bf16")[0] == "openvino"
    assert resolve_backend("openvino", "cpu", 1, given_graph="openvino") == ("openvino", "INFERENCE_BACKEND")
