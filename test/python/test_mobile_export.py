"""The CoreML and TFLite converters of common/mobile_export.py on a tiny conv network: the
structural check reads the saved CoreML package back and refuses a mismatch, and TFLite's float16 weights shrink the file and
keep the outputs, and dynamic-range int8 keeps them close (run in the LiteRT interpreter through the
package's Python wrapper backend).
The integration tests cover the other quantizations through the export job."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from vision_trainer.common import mobile_export

ROOT = Path(__file__).resolve().parents[2]


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def _call(entry, params):
    answer = json.loads(entry(params))
    if "ok" not in answer:
        raise AssertionError(answer)
    return answer["ok"]


def test_coreml_converts_and_is_checked_structurally(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.mlpackage"
    notes = mobile_export.coreml_from_torch(_Tiny().eval(), torch.zeros(1, 3, 16, 16), path, output="logits", half=False)
    assert notes[0].startswith("coremltools 9.0 ML program")
    params = {"path": str(path), "input_shape": [1, 3, 16, 16], "class_names": ["a", "b", "c"], "classifier": True}
    inspected = _call(mobile_export.inspect_coreml, params)
    assert inspected["inputs"] == [{"name": "images", "shape": [1, 3, 16, 16], "dtype": "float32"}]
    assert inspected["outputs"][0]["name"] == "logits" and inspected["outputs"][0]["shape"] == [1, 3]
    assert "output 'logits' holds the checkpoint's 3 classes" in inspected["checks"]
    refused = json.loads(mobile_export.inspect_coreml({**params, "input_shape": [1, 3, 32, 32]}))
    assert "not one input of shape [1, 3, 32, 32]" in json.dumps(refused)
    refused = json.loads(mobile_export.inspect_coreml({**params, "class_names": ["a", "b"]}))
    assert "does not end in the checkpoint's 2 classes" in json.dumps(refused)


def test_tflite_float16_weights_halve_the_file_and_keep_the_outputs(tmp_path):
    torch.manual_seed(0)
    model = _Tiny().eval()
    x = torch.rand(1, 3, 16, 16)
    path = tmp_path / "model.tflite"
    notes, unquantized = mobile_export.tflite_from_torch(model, x, path, quantize="float16")
    assert notes[0].startswith("litert-torch 0.10.0") and "float16 weights" in notes[1]
    assert unquantized is not None and path.stat().st_size < unquantized
    sys.path.insert(0, str(ROOT / "runtime" / "python"))
    import model_wrapper

    backend = model_wrapper.LiteRtBackend(path, 1)
    assert not backend.channels_last  # litert-torch keeps torch's NCHW input
    (y,) = backend(x.numpy())
    with torch.inference_mode():
        expected = model(x).numpy()
    np.testing.assert_allclose(y, expected, atol=2e-3)
    # Dynamic-range int8 (the integration tests export static int8 for timm): int8 weights, float32 tensors in and out.
    notes, unquantized = mobile_export.tflite_from_torch(model, x, tmp_path / "int8.tflite", quantize="int8")
    assert "dynamic_wi8_afp32" in notes[1] and (tmp_path / "int8.tflite").stat().st_size < unquantized
    int8 = model_wrapper.LiteRtBackend(tmp_path / "int8.tflite", 1)
    assert int8.input["dtype"] == np.float32
    np.testing.assert_allclose(int8(x.numpy())[0], expected, atol=5e-2)
    with pytest.raises(ValueError, match="int8 or float16"):
        mobile_export.tflite_from_torch(model, x, tmp_path / "other.tflite", quantize="int4")


def test_a_converter_failure_names_the_model_the_reason_and_the_formats_that_work():
    from vision_trainer.common import torch_export

    cause = NotImplementedError("PyTorch convert function for op 'upsample_bicubic2d' not implemented.")
    error = torch_export._converter_failure("coreml", {"architecture": "Dinov2ForImageClassification", "model_name": "dinov2-small"}, cause)
    assert str(error) == (
        "coremltools could not convert Dinov2ForImageClassification (dinov2-small) to coreml: NotImplementedError: "
        "PyTorch convert function for op 'upsample_bicubic2d' not implemented. This architecture does not export to coreml "
        "with the pinned converter; export it to onnx, torchscript or openvino, which take every model of its framework"
    )
