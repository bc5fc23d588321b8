"""The demo's datasets, made from real images that ship inside installed packages.

- detection: handwritten digits from scikit-learn's `load_digits()` (real scans, 8x8) pasted,
  upscaled, onto crops of scikit-image's sample photographs, so every box is exact.
- classification: the same digits, upscaled, one class folder per digit.

Written in the Platform Format (annotations.json + images/), deterministic for a seed.

    python -m vision_trainer.sample_data detection OUT_DIR [--images 60] [--size 96] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
CLASS_NAMES = [str(d) for d in range(10)]


def _backgrounds():
    from skimage import data

    images = []
    for name in BACKGROUNDS:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        img = np.asarray(loader())
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        images.append(img[..., :3].astype(np.uint8))
    return images


def _digit_sprite(pixels8x8: np.ndarray, size: int, color: np.ndarray):
    """An 8x8 digit (0..16) as an RGBA sprite: ink coloured, paper transparent."""
    gray = Image.fromarray((pixels8x8 / 16.0 * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
    alpha = np.asarray(gray).astype(np.float32) / 255.0
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    rgba[..., :3] = color
    rgba[..., 3] = (np.clip(alpha * 1.6, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA"), alpha


def _ink_box(alpha: np.ndarray, x: int, y: int):
    ys, xs = np.nonzero(alpha > 0.2)
    return [float(x + xs.min()), float(y + ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def make_detection(out_dir: str, images: int = 60, size: int = 96, seed: int = 0) -> dict:
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits()
    backgrounds = _backgrounds()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    ann_id = 0
    for i in range(images):
        bg = backgrounds[i % len(backgrounds)]
        side = min(bg.shape[0], bg.shape[1])
        # A crop of at least `size` where the photograph allows; larger outputs (640 px) upscale it whole.
        crop = int(rng.integers(size, side)) if size < side else side
        y0 = int(rng.integers(0, bg.shape[0] - crop + 1))
        x0 = int(rng.integers(0, bg.shape[1] - crop + 1))
        canvas = Image.fromarray(bg[y0 : y0 + crop, x0 : x0 + crop]).resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
        annotations = []
        placed: list[tuple[int, int, int, int]] = []
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(0, len(digits.images)))
            label = int(digits.target[k])
            s = int(rng.integers(size // 5, size // 2))
            color = np.array([255, 255, 255]) if rng.random() < 0.5 else rng.integers(200, 256, size=3)
            sprite, alpha = _digit_sprite(digits.images[k], s, color)
            for _attempt in range(20):  # digits must not hide each other: their boxes are exact
                x = int(rng.integers(0, size - s + 1))
                y = int(rng.integers(0, size - s + 1))
                if all(x + s <= bx or bx + bw <= x or y + s <= by or by + bh <= y for bx, by, bw, bh in placed):
                    break
            else:
                continue
            placed.append((x, y, s, s))
            canvas.paste(sprite, (x, y), sprite)
            ann_id += 1
            bbox = _ink_box(alpha, x, y)
            annotations.append(
                {
                    "id": ann_id,
                    "class_id": label,
                    "class_name": CLASS_NAMES[label],
                    "bbox": bbox,
                    "bbox_format": "xywh",
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
        file_name = f"img_{i:04d}.png"
        canvas.save(out / "images" / file_name)
        records.append({"id": i + 1, "file_name": file_name, "width": size, "height": size, "annotations": annotations})
    doc = {
        "format_version": "1.0",
        "dataset_id": out.name,
        "dataset_name": "Digits on photographs (scikit-learn digits, scikit-image photos)",
        "task_type": "object_detection",
        "classes": [{"id": i, "name": n} for i, n in enumerate(CLASS_NAMES)],
        "images": records,
    }
    (out / "annotations.json").write_text(json.dumps(doc, indent=1))
    return {"images": len(records), "objects": ann_id, "path": str(out)}


def make_classification(out_dir: str, per_class: int = 12, size: int = 32, seed: int = 0) -> dict:
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    available = int(np.bincount(digits.target).min())
    if not 1 <= per_class <= available:
        raise SystemExit(
            f"--per-class must be between 1 and {available} (scikit-learn's digits hold {available} to {int(np.bincount(digits.target).max())} images per digit)"
        )
    for label in range(10):
        picks = rng.choice(np.nonzero(digits.target == label)[0], size=per_class, replace=False)
        for j, k in enumerate(picks):
            img = Image.fromarray((digits.images[k] / 16.0 * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
            file_name = f"{label}/{label}_{j:03d}.png"
            (out / "images" / str(label)).mkdir(exist_ok=True)
            img.save(out / "images" / file_name)
            records.append(
                {
                    "id": f"d{label}-{j}",
                    "file_name": file_name,
                    "width": size,
                    "height": size,
                    "annotation": {"class_id": label, "class_name": CLASS_NAMES[label]},
                }
            )
    doc = {
        "format_version": "1.0",
        "dataset_id": out.name,
        "task_type": "image_classification",
        "classes": [{"id": i, "name": n} for i, n in enumerate(CLASS_NAMES)],
        "images": records,
    }
    (out / "annotations.json").write_text(json.dumps(doc, indent=1))
    return {"images": len(records), "path": str(out)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["detection", "classification"])
    parser.add_argument("out_dir")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    if a.kind == "detection":
        result = make_detection(a.out_dir, a.images, a.size or 96, a.seed)
    else:
        result = make_classification(a.out_dir, a.per_class, a.size or 32, a.seed)
    print(json.dumps(result))
