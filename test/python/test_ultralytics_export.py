"""ultralytics TorchScript export (vision_trainer.ultralytics.export): ultralytics' own float
exporter and our static int8 trace give the same output layout from one checkpoint; the int8
archive is under half the size and names what stays float32. (The integration tests export
trained checkpoints through the CLI; this one keeps the float exporter covered at small cost.)"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")


def _answer(envelope: str):
    answer = json.loads(envelope)
    assert "ok" in answer, answer
    return answer["ok"]


def test_float_and_static_int8_torchscript_share_the_layout(tmp_path):
    from ultralytics import YOLO
    from vision_trainer.ultralytics import export
    from vision_trainer.ultralytics.train import configure_offline

    configure_offline()
    checkpoint = tmp_path / "yolo11n.pt"
    YOLO("yolo11n.yaml").save(str(checkpoint))
    rng = np.random.default_rng(0)
    calibration = []
    for i in range(4):
        path = tmp_path / f"calibration{i}.f32"
        rng.random((1, 3, 64, 64), dtype=np.float32).tofile(path)
        calibration.append(str(path))
    base = {"checkpoint": str(checkpoint), "format": "torchscript", "input_size": [64, 64], "batch": 1, "device": "cpu", "opset": 12}
    base |= {"embed_preprocessing": None, "simplify": False, "quantize": None, "nms": None, "optimization_level": 2, "calibration_shape": [1, 3, 64, 64]}
    plain = _answer(export.export({**base, "out_dir": str(tmp_path / "float"), "quantize_static": False, "calibration": []}))
    int8 = _answer(export.export({**base, "out_dir": str(tmp_path / "int8"), "quantize_static": True, "calibration": calibration}))

    assert int8["float32_modules"] == ["Attention", "Detect"]
    assert "unquantized_size_bytes" not in plain
    float_size = (tmp_path / "float" / "model.torchscript").stat().st_size
    int8_size = (tmp_path / "int8" / "model.torchscript").stat().st_size
    assert int8_size < 0.5 * float_size and int8_size < 0.5 * int8["unquantized_size_bytes"]
    x = torch.from_numpy(rng.random((1, 3, 64, 64), dtype=np.float32))
    with torch.inference_mode():
        y_float = torch.jit.load(plain["path"])(x)
        y_int8 = torch.jit.load(int8["path"])(x)
    # detect: [batch, 4 + 80 classes, anchors of strides 8, 16, 32]; boxes in input pixels, class scores in 0-1.
    assert y_float.shape == y_int8.shape == (1, 84, 84)
    assert "quantized::conv2d" in str(torch.jit.load(int8["path"]).inlined_graph)
    torch.testing.assert_close(y_int8[:, 4:], y_float[:, 4:], atol=0.1, rtol=0)
