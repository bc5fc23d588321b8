"""SAM 2 weights for sam2.test.ts, without a model hub: `sam2-fixtures.py OUT` writes a randomly
initialised sam2_t (ultralytics' smallest SAM 2) as its weights file holds it, {"model": state
dict}, in float16 to halve the file; prints one JSON line. Kept apart from classifier-fixtures.py
so that it imports ultralytics alone."""

import json
import sys
from pathlib import Path

import torch
from ultralytics.models.sam.build import build_sam2_t

if __name__ == "__main__":
    out = sys.argv[1]
    torch.manual_seed(0)
    state = {k: v.half() if v.is_floating_point() else v for k, v in build_sam2_t().state_dict().items()}
    torch.save({"model": state}, out)
    print(json.dumps({"path": out, "bytes": Path(out).stat().st_size}))
