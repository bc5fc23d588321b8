"""Decoding a batch's images on several threads (DECODE_THREADS) changes nothing but the time."""

import numpy as np
import pytest
from vision_trainer.common.decode_pool import SEQUENTIAL, DecodePool


def _jpegs(tmp_path, count: int) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        path = tmp_path / f"img-{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def test_the_batch_comes_back_in_its_order_with_the_same_pixels(tmp_path):
    from PIL import Image

    paths = _jpegs(tmp_path, 12)

    def decode(path):
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((32, 32)))

    pool = DecodePool(3)
    try:
        parallel = pool.map(decode, paths)
    finally:
        pool.close()
    sequential = SEQUENTIAL.map(decode, paths)
    assert pool.threads == 3 and SEQUENTIAL.threads == 1
    assert len(parallel) == 12
    for a, b in zip(parallel, sequential, strict=True):
        assert np.array_equal(a, b)


def test_an_image_that_fails_raises_as_on_one_thread(tmp_path):
    paths = _jpegs(tmp_path, 3)
    paths.insert(1, str(tmp_path / "broken.jpg"))

    def decode(path):
        if path.endswith("broken.jpg"):
            raise OSError(f"cannot identify image file {path!r}")
        return path

    pool = DecodePool(2)
    try:
        with pytest.raises(OSError, match=r"cannot identify image file .*broken\.jpg"):
            pool.map(decode, paths)
        assert pool.map(decode, paths[2:]) == paths[2:]  # the pool still works after a failure
    finally:
        pool.close()


def test_ultralytics_predicts_the_same_from_our_decoded_images_as_from_the_files(tmp_path, monkeypatch):
    """With DECODE_THREADS > 1 the job decodes with ultralytics' own imread on its pool and hands
    ultralytics the arrays: the boxes must be those ultralytics finds reading the files itself."""
    monkeypatch.setenv("YOLO_OFFLINE", "true")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo-config"))
    import torch
    from ultralytics import YOLO
    from ultralytics.utils.patches import imread

    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")
    paths = _jpegs(tmp_path, 4)
    pool = DecodePool(2)
    try:
        arrays = pool.map(imread, paths)
    finally:
        pool.close()
    kwargs = {"imgsz": 64, "conf": 0.0001, "batch": 4, "device": "cpu", "verbose": False, "save": False}
    from_files = model.predict(paths, **kwargs)
    from_arrays = model.predict(arrays, **kwargs)
    assert sum(len(r.boxes) for r in from_files) > 0
    for a, b in zip(from_files, from_arrays, strict=True):
        assert a.orig_shape == b.orig_shape
        assert torch.equal(a.boxes.data, b.boxes.data)


def test_with_ultralytics_imported_an_unreadable_image_still_names_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "true")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo-config"))
    from PIL import Image, UnidentifiedImageError
    from vision_trainer.ultralytics.train import configure_offline

    configure_offline()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(UnidentifiedImageError, match=r"cannot identify image file .*broken"):
        Image.open(broken)
