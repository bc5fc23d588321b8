"""ultralytics' label cache (labels/{split}.cache) with its per-image checks done while the
images still download.

When ultralytics builds a detection, segmentation or pose dataset it checks every image and
label file of the split (PIL open and verify, EXIF size, JPEG end marker, label rows): on 20,000
small images that is 5 s of the set-up after the download, on a 2-CPU machine. The job writes the
layout from the annotations before the images arrive (links to files not there yet), so `start`
checks each image in a background thread as soon as its file is there, with ultralytics' own
check and arguments (its `verify_args`).

The cache is still written by ultralytics' own `cache_labels`, when training starts (`finish`),
from those results: an image or label file never checked, or whose size, modification time or
inode changed since its check, is checked again then. So the file is what ultralytics' own scan
of the final files writes, and ultralytics still decides by its hash whether to use it (it scans
again when the list of files or the check's settings differ). A download that writes files in
place rather than renaming them is therefore safe too: a file checked half-written has changed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from ..common.yolo_metrics import TASK_BY_PLATFORM
from ..protocol import LabelCheckAnswer, LabelCheckParams
from ..support import entry

# ultralytics' own logger: its lines reach the job's output and training.log beside its scan's.
LOG = logging.getLogger("ultralytics")

# How often the checking thread looks again for an image that has not arrived.
_POLL_SECONDS = 0.05
_SPLITS = ("train", "val")

_lock = threading.Lock()
# data.yaml -> the checks running for it; the data.yaml files whose training started (no checks may begin).
_running: dict[str, _Checks] = {}
_closed: set[str] = set()


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        s = os.stat(path)
    except OSError:
        return None
    return (s.st_size, s.st_mtime_ns, s.st_ino)


def _dataset_stub(list_file: Path, data: dict[str, Any], mode: str, task: str, single_cls: bool):
    """A YOLODataset that never ran its __init__ (which would scan at once): only what ultralytics'
    scan hooks (verify_args, get_cache_hash, cache_labels) read, set as YOLODataset sets it."""
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.utils import colorstr

    ds = YOLODataset.__new__(YOLODataset)
    ds.prefix = colorstr(f"{mode}: ")
    ds.fraction = 1.0
    ds.augment = mode == "train"
    ds.data = data
    ds.use_segments = task == "segment"
    ds.use_keypoints = task == "pose"
    ds.use_obb = task == "obb"
    ds.single_cls = single_cls
    # Its read-speed sample of a few images would find them not downloaded yet and say so in the log.
    with mock.patch("ultralytics.data.base.check_file_speeds"):
        ds.im_files = ds.get_img_files(str(list_file))
    ds.get_label_files()
    return ds


class _Split:
    def __init__(self, name: str, ds) -> None:
        self.name = name
        self.ds = ds
        self.func, iterable = ds.verify_args()
        self.args = list(iterable)
        # im_file -> (result, image stat, label stat) at the time of the check
        self.results: dict[str, tuple[Any, Any, Any]] = {}


class _Checks:
    def __init__(self, splits: list[_Split]) -> None:
        self.splits = splits
        self.download_done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vision-trainer-label-checks", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            for split in self.splits:
                for args in split.args:
                    im_file, lb_file = args[0], args[1]
                    while not os.path.exists(im_file):
                        # After the download an image still missing is left to the final scan.
                        if self.download_done.wait(_POLL_SECONDS):
                            break
                    if not os.path.exists(im_file):  # it may have arrived just before the download's end
                        continue
                    image, label = _stat(im_file), _stat(lb_file)
                    split.results[im_file] = (split.func(args), image, label)
        except BaseException as exc:  # noqa: BLE001 - reported by finish(); ultralytics then scans as usual
            self.error = exc

    def write_caches(self) -> dict[str, int]:
        """ultralytics' cache_labels for each split, with the checks already done reused where the
        files are unchanged; the number of images checked again per split."""
        rechecked: dict[str, int] = {}
        for split in self.splits:
            count = [0]

            def verify(args, split=split, count=count):
                done = split.results.get(args[0])
                if done is not None and done[1] == _stat(args[0]) and done[2] == _stat(args[1]):
                    return done[0]
                count[0] += 1
                return split.func(args)

            split.ds.verify_args = lambda split=split, verify=verify: (verify, iter(split.args))
            split.ds.cache_labels(Path(split.ds.label_files[0]).parent.with_suffix(".cache"))
            rechecked[split.name] = count[0]
        return rechecked


def _splits(data_yaml: str, task: str, single_cls: bool) -> list[_Split]:
    data_path = Path(data_yaml)
    data = yaml.safe_load(data_path.read_text())
    root = Path(data.get("path") or data_path.parent)
    # As ultralytics' check_det_dataset leaves them: names as {index: name}.
    names = data.get("names")
    if isinstance(names, list):
        data["names"] = dict(enumerate(names))
    splits = []
    for mode in _SPLITS:
        listed = data.get(mode)
        if not isinstance(listed, str):
            continue
        list_file = root / listed
        if list_file.suffix != ".txt" or not list_file.is_file():
            continue
        ds = _dataset_stub(list_file, data, mode, task, single_cls)
        if ds.im_files:
            splits.append(_Split(mode, ds))
    return splits


@entry
def start(params: LabelCheckParams) -> LabelCheckAnswer:
    """Starts checking the images of data.yaml's train and val lists as they arrive (a background
    thread); finish() turns the results into ultralytics' label caches when training starts."""
    task = TASK_BY_PLATFORM.get(params["task_type"])
    args = params["trainer_args"]
    if task not in ("detect", "segment", "pose"):
        return {"started": False, "reason": f"ultralytics keeps no label cache for {params['task_type']}", "images": 0}
    if args.get("fraction", 1.0) != 1.0:
        return {"started": False, "reason": "TRAINER_ARGS fraction trains on part of the images: ultralytics scans that part itself", "images": 0}
    data = params["data"]
    with _lock:
        if data in _closed or data in _running:
            return {"started": False, "reason": "training has already started" if data in _closed else "already checking", "images": 0}
        splits = _splits(data, task, bool(args.get("single_cls", False)))
        if not splits:
            return {"started": False, "reason": "data.yaml names no image lists", "images": 0}
        checks = _Checks(splits)
        _running[data] = checks
    checks.thread.start()
    return {"started": True, "reason": None, "images": sum(len(s.args) for s in splits)}


def finish(data: str) -> None:
    """Writes the label caches of the checks start() began for data.yaml, if any, and closes it to
    a late start(). Called when training starts, before ultralytics builds its datasets; anything
    that goes wrong leaves the cache unwritten, and ultralytics scans as it always does."""
    with _lock:
        _closed.add(data)
        checks = _running.pop(data, None)
    if checks is None:
        return
    checks.download_done.set()
    checks.thread.join()
    if checks.error is not None:
        LOG.warning("the images' checks during the download failed (%s): ultralytics checks them now", checks.error)
        return
    early = sum(len(s.results) for s in checks.splits)
    began = time.perf_counter()
    try:
        rechecked = checks.write_caches()
    except Exception as exc:  # noqa: BLE001 - ultralytics scans again without a cache
        LOG.warning("the label cache could not be written from the checks made during the download (%s): ultralytics checks the images now", exc)
        return
    LOG.info(
        "label caches written from the image checks made while the images downloaded: %d images checked then, %s checked again now (%.2f s)",
        early,
        ", ".join(f"{name} {n}" for name, n in rechecked.items()),
        time.perf_counter() - began,
    )
