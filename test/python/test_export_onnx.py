"""OPTIMIZATION_LEVEL's ONNX passes (vision_trainer.common.export_onnx) on a tiny conv network:
each level does something distinct, keeps the outputs, and only level 3 leaves the standard
operator set (which decides the wrappers a package ships)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from vision_trainer.common import export_onnx  # noqa: E402


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.head(y) * torch.ones(1, 3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    model = _Tiny().eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 16, 16),), str(path), input_names=["images"], opset_version=17, dynamo=False, do_constant_folding=False)
    return path.read_bytes()


def _answer(envelope: str):
    answer = json.loads(envelope)
    assert "ok" in answer, answer
    return answer["ok"]


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x})[0]


def _at_level(tmp_path, data, level):
    path = tmp_path / f"level{level}.onnx"
    path.write_bytes(data)
    finalized = _answer(export_onnx.finalize({"path": str(path), "level": level}))
    special = _answer(export_onnx.specialize({"path": str(path), "level": level}))
    return path, finalized["passes"] + special["passes"], special["operators"]


def test_each_level_does_more_and_keeps_the_outputs(tmp_path, exported):
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    reference = None
    seen = []
    for level in range(4):
        path, passes, operators = _at_level(tmp_path, exported, level)
        out = _run(path, x)
        reference = out if reference is None else reference
        np.testing.assert_allclose(out, reference, atol=1e-4)
        seen.append((passes, operators))
    assert seen[0][0] == []
    assert [p.split(" ")[0] for p in seen[1][0]] == ["materialized"]
    assert any(p.startswith("onnxslim") for p in seen[2][0]) and any("basic graph" in p for p in seen[2][0])
    assert any("ORT_ENABLE_ALL" in p for p in seen[3][0])
    # Levels 0-2: standard operators only (BatchNormalization folded into the Conv from level 2).
    for _passes, operators in seen[:3]:
        assert all(op.startswith(":") for op in operators), operators
    assert ":BatchNormalization" in seen[0][1] and ":BatchNormalization" not in seen[2][1]
    # Level 3: ONNX Runtime's own fused operators.
    assert any(op.startswith("com.microsoft") for op in seen[3][1]), seen[3][1]


@pytest.mark.parametrize(
    ("normalize", "float_input"),
    [
        (
            {"method": "standardize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            lambda px: (px / np.float32(255) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225],
        ),
        ({"method": "divide", "mean": [0, 0, 0], "std": [255, 255, 255]}, lambda px: px / np.float32(255)),
    ],
)
def test_embedded_preprocessing_takes_uint8_nhwc_pixels_and_gives_the_float_models_outputs(tmp_path, exported, normalize, float_input):
    path = tmp_path / "embedded.onnx"
    path.write_bytes(exported)
    export_onnx.embed_preprocessing(str(path), normalize)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    assert (first.name, first.type, first.shape) == ("images", "tensor(uint8)", [1, 16, 16, 3])
    pixels = np.random.default_rng(1).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    reference = float_input(pixels.astype(np.float32)).astype(np.float32).transpose(0, 3, 1, 2)
    expected = _run(_at_level(tmp_path, exported, 0)[0], np.ascontiguousarray(reference))
    np.testing.assert_allclose(session.run(None, {"images": pixels})[0], expected, atol=1e-5)
    # onnxslim and ONNX Runtime's basic passes keep the conversion and the uint8 input.
    level2, _, operators = _at_level(tmp_path, path.read_bytes(), 2)
    assert ":Cast" in operators
    np.testing.assert_allclose(_run(level2, pixels), expected, atol=1e-5)


def test_torchscript_levels_differ_and_every_archive_loads_back(tmp_path):
    """TorchScript's OPTIMIZATION_LEVEL (vision_trainer.common.torch_export.traced_at_level): 0-1
    the trace, 2 frozen (the BatchNorm folded away), 3 also channels-last weights; each saved
    archive loads back and gives the float model's outputs."""
    from vision_trainer.common.torch_export import traced_at_level

    torch.manual_seed(0)
    model = _Tiny().eval()
    model.bn.running_mean.uniform_(-1, 1)
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        reference = model(x)
    graphs = {}
    for level in range(4):
        notes: list[str] = []
        path = tmp_path / f"level{level}.torchscript"
        traced_at_level(model, x, level, notes, quantized=False).save(str(path))
        loaded = torch.jit.load(str(path))
        with torch.inference_mode():
            torch.testing.assert_close(loaded(x), reference, rtol=1e-4, atol=1e-5)
        graphs[level] = str(loaded.inlined_graph)
        assert notes == ([] if level < 2 else ["torch.jit.freeze"] if level == 2 else ["torch.jit.freeze", "channels-last weights and activations"])
    assert "batch_norm" in graphs[1] and "batch_norm" not in graphs[2]
    # The level-3 archive keeps its convolution weights channels-last (the model passed in is untouched).
    assert model.conv.weight.is_contiguous()
    level3 = torch.jit.load(str(tmp_path / "level3.torchscript"))
    tensors = [n.output().toIValue() for n in level3.graph.nodes() if n.kind() == "prim::Constant" and n.output().type().kind() == "TensorType"]
    kernels = [t for t in tensors if t.dim() == 4]
    assert kernels and all(t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() for t in kernels)
