"""Checkpoint files for security.test.ts, written into OUT_DIR; prints one JSON line of paths.

  official.pt     a YOLO built from yolo11n.yaml and saved by ultralytics' own `model.save()`,
                  as an official release is: a pickle of ultralytics classes
  evil-plain.pt   torch.save of a dict whose value's __reduce__ runs `touch MARKER` when unpickled
  evil-yolo.pt    official.pt's contents plus the same payload, so it names ultralytics classes
                  and passes a framework sniff
  evil-raw.pkl    the payload as a plain pickle (protocol 4, STACK_GLOBAL), no torch framing

This script is trusted test code: it writes the payload, it never loads it.
"""

import json
import os
import pickle
import sys
from pathlib import Path

import torch


class Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def main(out_dir: str, marker: str) -> None:
    from ultralytics import YOLO

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    official = out / "official.pt"
    YOLO("yolo11n.yaml").save(str(official))
    torch.save({"model": Payload(marker), "epoch": 3}, out / "evil-plain.pt")
    ckpt = torch.load(official, map_location="cpu", weights_only=False)  # our own file, just written
    ckpt["train_args"] = {"epochs": 1}
    ckpt["optimizer"] = Payload(marker)
    torch.save(ckpt, out / "evil-yolo.pt")
    with open(out / "evil-raw.pkl", "wb") as f:
        pickle.dump({"state_dict": Payload(marker)}, f, protocol=4)
    print(json.dumps({name: str(out / name) for name in ("official.pt", "evil-plain.pt", "evil-yolo.pt", "evil-raw.pkl")}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
