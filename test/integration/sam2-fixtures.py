"""SAM 2 weights for infer-cli.test.ts, without a model hub: `sam2-fixtures.py OUT_DIR` writes two
randomly initialised tiny models as their release files hold them, {"model": state dict}:
- sam2_t.pt: SAM 2 tiny, in float16 to halve the file;
- sam2.1_t.pt: SAM 2.1 tiny in float32, exactly the release's layout (Meta's and ultralytics'
  sam2.1_hiera_tiny.pt / sam2.1_t.pt: the model's state dict under "model", nothing else).
Prints one JSON line. Kept apart from classifier-fixtures.py so that it imports ultralytics alone."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

from vision_trainer.ultralytics.sam import build

if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, half in (("sam2_t", True), ("sam2.1_t", False)):
        torch.manual_seed(0)
        state = build(name).state_dict()
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        path = out / f"{name}.pt"
        torch.save({"model": state}, path)
        written[name] = {"path": str(path), "bytes": path.stat().st_size}
    sys.__stdout__.write(json.dumps(written) + "\n")
