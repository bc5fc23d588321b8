"""Runs the exported model on images and prints the predictions as JSON lines.

    python example.py                      # the package's samples/ folder
    python example.py photo.jpg images/    # image files, or every image in a folder
    python example.py --confidence 0.5 photo.jpg
    python example.py --confidence 0.001 --iou 0.7 --max-detections 100   # the validation step's settings

Each line: {"image": "<path>", "predictions": [...]} (masks as COCO RLE).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from model_wrapper import ModelWrapper, image_files, to_json

PACKAGE_DIR = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", help="image files or folders (default: the package's samples/)")
    parser.add_argument("--model", help="model file (default: from metadata.json)")
    parser.add_argument("--metadata", default=str(PACKAGE_DIR / "metadata.json"))
    parser.add_argument("--confidence", type=float, help="minimum confidence (detection tasks)")
    parser.add_argument("--iou", type=float, help="NMS IoU threshold (detection tasks)")
    parser.add_argument("--max-detections", type=int, help="at most this many boxes per image (detection tasks)")
    parser.add_argument("--top-k", type=int, help="classes reported (classification)")
    parser.add_argument("--threads", type=int, help="CPU threads for the runtime")
    args = parser.parse_args()

    wrapper = ModelWrapper(args.model, args.metadata, threads=args.threads)
    if not wrapper.metadata["preprocessing"].get("included", True):
        print(
            "this package was exported with INCLUDE_PREPROCESSING=false: call ModelWrapper.predict(tensor) from your code "
            f"with a preprocessed float32 batch of shape {wrapper.metadata['model']['inputs'][0]['shape']}",
            file=sys.stderr,
        )
        return 2
    files = image_files(args.images or [PACKAGE_DIR / "samples"])
    if not files:
        print("no images given (and no samples/ folder in the package)", file=sys.stderr)
        return 2
    options = {
        k: v for k, v in {"confidence": args.confidence, "iou": args.iou, "max_detections": args.max_detections, "top_k": args.top_k}.items() if v is not None
    }
    for f in files:
        started = time.perf_counter()
        predictions = wrapper.predict(f, **options)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if wrapper.metadata["postprocessing"].get("included", True):
            print(json.dumps({"image": str(f), "predictions": to_json(predictions), "elapsed_ms": round(elapsed_ms, 2)}))
        else:  # INCLUDE_POSTPROCESSING=false: the raw outputs
            print(json.dumps({"image": str(f), "outputs": [{"shape": list(o.shape), "first_values": o.reshape(-1)[:8].tolist()} for o in predictions]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
