"""The bridge's Python half: plain values, the JSON envelope, the main-thread guard."""

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from vision_trainer.support import OffMainThread, entry, error_envelope, guarded_js_call, is_out_of_memory, plain


def test_plain_turns_framework_values_into_json():
    value = {
        "nan": float("nan"),
        "inf": -math.inf,
        "tuple": (1, 2.5),
        "numpy": np.float32(0.25),
        "array": np.arange(3),
        "tensor": torch.tensor([[1.0, float("nan")]]),
        "scalar_tensor": torch.tensor(3),
        "path": Path("/tmp/x"),
        1: "int key",
    }
    out = plain(value)
    assert out == {
        "nan": None,
        "inf": None,
        "tuple": [1, 2.5],
        "numpy": 0.25,
        "array": [0, 1, 2],
        "tensor": [[1.0, None]],
        "scalar_tensor": 3,
        "path": "/tmp/x",
        "1": "int key",
    }
    json.dumps(out, allow_nan=False)


def test_plain_keeps_bools_and_falls_back_to_text():
    class Opaque:
        def __str__(self):
            return "opaque"

    assert plain([True, None, "s", Opaque()]) == [True, None, "s", "opaque"]


def test_entry_answers_with_one_json_envelope():
    @entry
    def answer(params):
        return {"loss": float("nan"), "echo": params["x"]}

    assert json.loads(answer({"x": 1})) == {"ok": {"loss": None, "echo": 1}}
    assert answer.__name__ == "answer"


def test_entry_turns_exceptions_into_typed_errors():
    @entry
    def fails():
        raise ValueError("bad value")

    error = json.loads(fails())["__error__"]
    assert error["type"] == "ValueError"
    assert error["message"] == "bad value"
    assert "fails" in error["traceback"]
    assert error["out_of_memory"] is False


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(type("OutOfMemoryError", (Exception,), {})("x"))
    assert not is_out_of_memory(ValueError("memory of a run"))
    assert error_envelope(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED"))["__error__"]["out_of_memory"] is True


def test_js_calls_only_from_the_main_thread():
    seen = []
    assert guarded_js_call(lambda payload: seen.append(payload) or "stop", {"x": float("nan")}) == "stop"
    assert seen == [{"x": None}]
    errors = []
    thread = threading.Thread(target=lambda: _capture(errors))
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], OffMainThread)


def _capture(errors):
    try:
        guarded_js_call(lambda payload: None, {})
    except OffMainThread as exc:
        errors.append(exc)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_envelopes_never_hold_nan(value):
    @entry
    def answer():
        return [value]

    assert json.loads(answer()) == {"ok": [None]}
