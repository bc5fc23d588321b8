"""The Python side of bench/onnx.ts.

    python bench/onnx_python.py export OUT_DIR        -> writes yolo11n.onnx / resnet18.onnx (+ .pt modules)
    python bench/onnx_python.py run MODEL INPUT THREADS SECONDS RUNTIME

RUNTIME is "onnxruntime" (the .onnx file, the same session options as the Node side) or
"pytorch" (the eager module the .onnx was exported from, MODEL with .pt). INPUT is a float32
file of the model's input shape. Prints one JSON line: batches, seconds, the output's checksum, the runtime's version.
"""

import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "true")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

MODELS = {
    # name: (input shape, how to build)
    "yolo11n": [4, 3, 320, 320],
    "resnet18": [8, 3, 224, 224],
}


def build(name: str):
    if name == "yolo11n":
        from ultralytics import YOLO

        net = YOLO("yolo11n.yaml").model.float().eval()
        for m in net.modules():
            if type(m).__name__ in ("Detect",):
                m.export, m.format, m.dynamic = True, "onnx", False
        return net
    import timm

    return timm.create_model("resnet18", pretrained=False, num_classes=1000).eval()


def export(out_dir: str) -> None:
    import torch

    torch.manual_seed(0)
    for name, shape in MODELS.items():
        net = build(name)
        torch.save(net, os.path.join(out_dir, f"{name}.pt"))
        torch.onnx.export(
            net, (torch.zeros(shape),), os.path.join(out_dir, f"{name}.onnx"), input_names=["images"], output_names=["output0"], opset_version=17, dynamo=False
        )
        np.random.default_rng(0).random(shape, dtype=np.float32).tofile(os.path.join(out_dir, f"{name}.input.bin"))
    print(json.dumps({"models": {k: v for k, v in MODELS.items()}}))


def run(model: str, input_file: str, threads: int, seconds: float, runtime: str) -> None:
    name = os.path.basename(model).rsplit(".", 1)[0]
    x = np.fromfile(input_file, dtype=np.float32).reshape(MODELS[name])
    if runtime == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        version = f"onnxruntime {ort.__version__}"
        call = lambda: session.run(None, {"images": x})[0]  # noqa: E731
    else:
        import torch

        torch.set_num_threads(threads)
        version = f"torch {torch.__version__}"
        net = torch.load(model.replace(".onnx", ".pt"), weights_only=False)
        xt = torch.from_numpy(x)

        def call():
            with torch.inference_mode():
                y = net(xt)
            return (y[0] if isinstance(y, (list, tuple)) else y).numpy()

    for _ in range(3):
        y = call()
    batches, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        y = call()
        batches += 1
    elapsed = time.perf_counter() - started
    print(json.dumps({"batches": batches, "seconds": elapsed, "checksum": float(np.asarray(y, dtype=np.float64).sum()), "version": version}))


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2])
    else:
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
