"""The native side of bench/infer.ts: prepares the checkpoints and images, and runs each
framework's own Python predict loop on them (what a user writes without vision-trainer).

  prepare OUT_DIR IMAGES SIZE     images (OUT_DIR/images/*.jpg: skimage photos, cropped and
                                  resized) and one checkpoint per framework:
                                  OUT_DIR/ultralytics.pt (YOLO11n), OUT_DIR/timm.pt (resnet18),
                                  OUT_DIR/huggingface.pt (a small ViT)
  native FRAMEWORK CHECKPOINT IMAGES_DIR BATCH IMGSZ [DEVICE [BACKEND]]
                                  predicts every image in batches; prints one JSON line
                                  {"images", "seconds", "images_per_second", "preprocess_seconds",
                                  "forward_seconds", "cpu_seconds", "settings"}
                                  (settings: torch's CPU threads, batch, the model's input
                                  size, device: what bench/infer.ts compares with the job's)

BACKEND: pytorch (the default), or onnx / openvino: the model exported as the job exports it
(ultralytics' exporter; torch.onnx.export for classifiers) and run by that runtime with the job's
settings, in the same hand-written loop (ultralytics' predict; torchvision's transforms, a
stacked batch, softmax and top-5): what the graph gains over PyTorch in a loop with nothing else
in it, the ceiling for the job's INFERENCE_BACKEND speed-up.

Weights are random (no hub here); throughput does not depend on them.
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
# vision_trainer.support sends stdout to stderr when imported (the job's stdout is its JSON log);
# this script's one result line still goes to the real stdout.
RESULT_OUT = sys.stdout


def prepare(out: str, count: int, size: int) -> dict:
    import numpy as np
    from PIL import Image
    from skimage import data

    root = Path(out)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size * 3 // 4))
        crop.save(images / f"img-{i:05d}.jpg", quality=90)

    os.environ.setdefault("YOLO_CONFIG_DIR", str(root / "yolo-config"))
    os.environ["YOLO_OFFLINE"] = "true"
    from ultralytics import YOLO

    YOLO("yolo11n.yaml").save(str(root / "ultralytics.pt"))

    from vision_trainer.common.checkpoints import save_checkpoint
    from vision_trainer.huggingface.train import scratch_config
    from vision_trainer.timm.train import create_timm_model

    names = [f"class-{i}" for i in range(10)]
    common = {"task_type": "image_classification", "class_names": names, "image_size": 128}
    model, kwargs = create_timm_model("resnet18", len(names), 128)
    save_checkpoint(
        root / "timm.pt",
        {
            **common,
            "framework": "timm",
            "model_name": "resnet18",
            "architecture": "resnet18",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "interpolation": "bilinear",
            "resize_mode": "shorter_side_center_crop",
            "crop_pct": 0.875,
            "model_kwargs": kwargs,
        },
        model.state_dict(),
    )
    import transformers

    config = scratch_config(
        "vit-base-patch16-224", {"hidden_size": 192, "num_hidden_layers": 6, "num_attention_heads": 3, "intermediate_size": 768, "patch_size": 16}, 128
    )
    config.num_labels = len(names)
    vit = transformers.ViTForImageClassification(config)
    save_checkpoint(
        root / "huggingface.pt",
        {
            **common,
            "framework": "huggingface",
            "model_name": "vit-base-patch16-224",
            "architecture": "ViTForImageClassification",
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "interpolation": "bilinear",
            "resize_mode": "squash",
            "crop_pct": 1.0,
            "hf_config": vit.config.to_json_string(use_diff=False),
        },
        vit.state_dict(),
    )
    return {"images": count}


def graph_runner(model, size: int, backend: str, folder: str, precision: str):
    """The model exported and loaded as the job does it (graph_runtime.export_classifier)."""
    from vision_trainer.common.graph_runtime import export_classifier

    runner, _ = export_classifier(model, size, folder, backend, precision)
    return runner


def split_backend(label: str) -> tuple[str, str]:
    """`openvino-bf16` -> (openvino, bf16): bench/infer.ts's label for a backend at a precision."""
    name, _, precision = label.partition("-")
    return name, precision or "fp32"


def native(framework: str, checkpoint: str, images_dir: str, batch: int, imgsz: int, device: str = "cpu", backend: str = "pytorch") -> dict:
    backend, precision = split_backend(backend)
    ran_precision = "fp32"
    paths = sorted(str(p) for p in Path(images_dir).glob("*.jpg"))
    batches = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    preprocess = forward = 0.0
    if framework == "ultralytics":
        from ultralytics import YOLO

        model = YOLO(checkpoint)
        if backend != "pytorch":
            import tempfile

            from vision_trainer.common.graph_runtime import export_ultralytics, ultralytics_runtime_settings

            exported, _ = export_ultralytics(checkpoint, imgsz, tempfile.mkdtemp(prefix="vt-native-graph-"), backend)
            model = YOLO(str(exported), task="detect")
            # The job's runtime settings (threads, no spinning, float32), its predictor built on a blank image.
            ran_precision = ultralytics_runtime_settings(model, exported, imgsz, backend, precision)
        started, cpu_started = time.perf_counter(), time.process_time()
        for b in batches:
            for r in model.predict(b, imgsz=imgsz, conf=0.25, iou=0.45, batch=len(b), device=device, verbose=False):
                r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist()
                # The stages as the job reports them (ultralytics' own timing, ms per image).
                preprocess += r.speed["preprocess"] / 1000
                forward += r.speed["inference"] / 1000
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        input_size = imgsz
    else:
        import math

        import torch
        import torchvision.transforms as T
        from PIL import Image
        from vision_trainer.common.checkpoints import build_model_from_checkpoint

        model, meta = build_model_from_checkpoint(checkpoint)
        model = model.to(device)
        size = int(meta["image_size"])
        if backend != "pytorch":
            import tempfile

            graph = graph_runner(model, size, backend, tempfile.mkdtemp(prefix="vt-native-graph-"), precision)
            ran_precision = graph.precision
            model = lambda x: torch.from_numpy(graph(x.numpy()))  # noqa: E731
        if meta["resize_mode"] == "shorter_side_center_crop":
            resize = [T.Resize(math.floor(size / meta["crop_pct"])), T.CenterCrop(size)]
        else:
            resize = [T.Resize((size, size))]
        transform = T.Compose([*resize, T.ToTensor(), T.Normalize(meta["mean"], meta["std"])])
        started, cpu_started = time.perf_counter(), time.process_time()
        for b in batches:
            t0 = time.perf_counter()
            x = torch.stack([transform(Image.open(p).convert("RGB")) for p in b]).to(device)
            t1 = time.perf_counter()
            with torch.inference_mode():
                probabilities = torch.softmax(model(x), dim=1)
            forward += time.perf_counter() - t1
            preprocess += t1 - t0
            probabilities.topk(min(5, probabilities.shape[1])).indices.tolist()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        input_size = size
    import torch

    # What bench/infer.ts compares with the job's results.json: a ratio between different work measures nothing.
    settings = {
        "cpu_threads": torch.get_num_threads() if device == "cpu" else None,
        "batch": batch,
        "input_size": input_size,
        "device": device,
        "precision": ran_precision,
    }
    if backend != "pytorch":
        from vision_trainer.common.graph_runtime import runtime_threads

        settings["cpu_threads"] = runtime_threads(backend, device)
    return {
        "images": len(paths),
        "seconds": seconds,
        "images_per_second": len(paths) / seconds,
        # Where the time went, as the job's results.json `timing` reports it: the forward passes
        # and the preprocessing (wall seconds), and the process's CPU seconds over the loop.
        "preprocess_seconds": preprocess,
        "forward_seconds": forward,
        "cpu_seconds": cpu,
        "settings": settings,
    }


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "prepare":
        result = prepare(args[0], int(args[1]), int(args[2]))
    else:
        result = native(args[0], args[1], args[2], int(args[3]), int(args[4]), *args[5:7])
    print(json.dumps(result), file=RESULT_OUT, flush=True)
