"""The label caches written from image checks made while the images downloaded
(vision_trainer.ultralytics.label_cache) against ultralytics' own scan of the same files: the
same labels, counts and messages, and a cache ultralytics' YOLODataset loads instead of scanning."""

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

NAMES = {0: "digit", 1: "blob"}


def _layout(root: Path, images: int, downloads: Path) -> Path:
    """A YOLO layout as the job writes it from the annotations: links to images in `downloads`
    (which may not be there yet), label files, train.txt / val.txt and data.yaml."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    lists = {"train": [], "val": []}
    for i in range(images):
        split = "val" if i % 4 == 0 else "train"
        link = root / "images" / split / f"im{i:03d}.jpg"
        link.symlink_to(downloads / f"im{i:03d}.jpg")
        rows = "" if i % 7 == 0 else f"{i % 2} 0.5 0.5 0.25 0.3\n"
        (root / "labels" / split / f"im{i:03d}.txt").write_text(rows)
        lists[split].append(str(link))
    for split, paths in lists.items():
        (root / f"{split}.txt").write_text("\n".join(paths) + "\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root), "train": "train.txt", "val": "val.txt", "nc": 2, "names": NAMES}))
    return root / "data.yaml"


def _image(path: Path, seed: int, size: int = 40) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size + seed % 5, 3), dtype=np.uint8)).save(path.with_suffix(".part.jpg"), quality=90)
    os.replace(path.with_suffix(".part.jpg"), path)  # as the download does: whole or absent


def _download(downloads: Path, indices, corrupt=()) -> None:
    downloads.mkdir(exist_ok=True)
    for i in indices:
        if i in corrupt:
            (downloads / f"im{i:03d}.jpg").write_bytes(b"not a jpeg at all")
        else:
            _image(downloads / f"im{i:03d}.jpg", i)


def _dataset(root: Path, split: str):
    from ultralytics.cfg import get_cfg
    from ultralytics.data.dataset import YOLODataset

    data = {"names": NAMES, "nc": 2, "channels": 3, "path": str(root)}
    return YOLODataset(img_path=str(root / f"{split}.txt"), imgsz=32, augment=False, hyp=get_cfg(), data=data, task="detect", prefix="")


def _plain(labels):
    return [(lb["im_file"], tuple(lb["shape"]), lb["cls"].tolist(), np.round(lb["bboxes"], 6).tolist(), len(lb["segments"]), lb["normalized"]) for lb in labels]


@pytest.fixture
def logged():
    """What label_cache logs, through ultralytics' logger (which does not propagate to caplog)."""
    lines = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("ultralytics")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def _start(data_yaml: Path, **trainer_args):
    from vision_trainer.ultralytics import label_cache

    return json.loads(label_cache.start({"data": str(data_yaml), "task_type": "object_detection", "trainer_args": trainer_args}))["ok"]


def _scanned_by_ultralytics(root: Path, split: str, monkeypatch):
    """What ultralytics' own scan gives on the final files (its cache removed first)."""
    (root / "labels" / f"{split}.cache").unlink(missing_ok=True)
    return _plain(_dataset(root, split).labels)


def _loaded_from_cache(root: Path, split: str, monkeypatch):
    """The dataset ultralytics builds, failing if it scans instead of reading the cache."""
    from ultralytics.data.dataset import YOLODataset

    def no_scan(self, path):
        raise AssertionError(f"ultralytics scanned {path} instead of reading the cache written beforehand")

    with monkeypatch.context() as m:
        m.setattr(YOLODataset, "cache_labels", no_scan)
        return _plain(_dataset(root, split).labels)


def test_images_checked_as_they_arrive_give_ultralytics_own_cache(tmp_path, monkeypatch, logged):
    from vision_trainer.ultralytics import label_cache

    downloads = tmp_path / "download"
    data_yaml = _layout(tmp_path / "data", 24, downloads)
    _download(downloads, range(0, 10), corrupt={3})
    answer = _start(data_yaml)
    assert answer == {"started": True, "reason": None, "images": 24}
    time.sleep(0.2)
    _download(downloads, range(10, 24))  # the rest arrives while the checks wait
    label_cache.finish(str(data_yaml))
    assert any("24 images checked then, train 0, val 0 checked again now" in line for line in logged)

    root = tmp_path / "data"
    for split in ("train", "val"):
        assert (root / "labels" / f"{split}.cache").is_file()
        early = _loaded_from_cache(root, split, monkeypatch)
        assert early == _scanned_by_ultralytics(root, split, monkeypatch)
    # The corrupt image is left out by both, as ultralytics' scan leaves it out.
    assert all("im003" not in lb[0] for lb in early)


def test_a_file_that_changed_after_its_check_is_checked_again(tmp_path, monkeypatch, logged):
    from vision_trainer.ultralytics import label_cache

    downloads = tmp_path / "download"
    data_yaml = _layout(tmp_path / "data", 12, downloads)
    _download(downloads, range(12))
    _start(data_yaml)
    time.sleep(0.5)
    # A bigger image under the same name (a retried download, a file written in place) and a changed label.
    _image(downloads / "im001.jpg", 1, size=64)
    (tmp_path / "data" / "labels" / "train" / "im002.txt").write_text("1 0.4 0.4 0.2 0.2\n0 0.6 0.6 0.1 0.1\n")
    label_cache.finish(str(data_yaml))
    assert any("train 2, val 0 checked again now" in line for line in logged)
    root = tmp_path / "data"
    early = _loaded_from_cache(root, "train", monkeypatch)
    assert early == _scanned_by_ultralytics(root, "train", monkeypatch)
    assert any(lb[0].endswith("im001.jpg") and lb[1] == (64, 65) for lb in early)


def test_images_never_downloaded_leave_the_scan_to_ultralytics(tmp_path, monkeypatch):
    from vision_trainer.ultralytics import label_cache

    downloads = tmp_path / "download"
    data_yaml = _layout(tmp_path / "data", 8, downloads)
    _download(downloads, range(4))
    _start(data_yaml)
    label_cache.finish(str(data_yaml))  # returns although four images never came
    root = tmp_path / "data"
    # What ultralytics makes of the missing files is its own scan's answer (here: the cache it wrote).
    assert _loaded_from_cache(root, "train", monkeypatch) == _scanned_by_ultralytics(root, "train", monkeypatch)


def test_no_checks_start_once_training_started_or_where_ultralytics_keeps_no_cache(tmp_path):
    from vision_trainer.ultralytics import label_cache

    downloads = tmp_path / "download"
    data_yaml = _layout(tmp_path / "data", 4, downloads)
    classify = json.loads(label_cache.start({"data": str(data_yaml), "task_type": "image_classification", "trainer_args": {}}))["ok"]
    assert classify["started"] is False and "classification" in classify["reason"]
    assert _start(data_yaml, fraction=0.5)["started"] is False
    label_cache.finish(str(data_yaml))  # training started before the layout's checks were asked for
    late = _start(data_yaml)
    assert late == {"started": False, "reason": "training has already started", "images": 0}
    assert not (tmp_path / "data" / "labels" / "train.cache").exists()


@pytest.mark.parametrize("single_cls", [False, True])
def test_the_cache_hash_follows_single_cls(tmp_path, monkeypatch, single_cls):
    """ultralytics hashes the check's settings too: a cache checked with single_cls is used only by a
    dataset built with it."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data.dataset import YOLODataset
    from vision_trainer.ultralytics import label_cache

    downloads = tmp_path / "download"
    data_yaml = _layout(tmp_path / "data", 8, downloads)
    _download(downloads, range(8))
    _start(data_yaml, single_cls=single_cls)
    label_cache.finish(str(data_yaml))
    scanned = []
    real_scan = YOLODataset.cache_labels
    monkeypatch.setattr(YOLODataset, "cache_labels", lambda self, path: scanned.append(path) or real_scan(self, path))
    data = {"names": NAMES, "nc": 2, "channels": 3}
    hyp = get_cfg(overrides={"single_cls": True})
    YOLODataset(img_path=str(tmp_path / "data" / "train.txt"), imgsz=32, augment=False, hyp=hyp, data=data, task="detect", single_cls=True)
    assert bool(scanned) is (not single_cls)
