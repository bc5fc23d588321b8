"""The design's Python YOLO converter, as the baseline for bench/convert.ts.

PlatformToYOLOConverter below is the platform design's example YOLO converter as written,
with the helpers it calls filled in the straightforward way its code implies:

  _get_splits                 the design's apply_split (random.seed, shuffle, cut at ratio[0])
  _get_annotations_for_image  takes an image id and the whole annotations dict, so it looks the
                              image up in platform_annotations['images'] (a scan per image)
  _to_yolo_format             class cx cy w h, normalised, 6 decimals

IndexedPlatformToYOLOConverter is the same with the obvious fix (an id -> image dict built
once), to show what a careful Python version costs. The timing covers json.load and
convert(), not the interpreter's start. Prints one JSON line: {"seconds", "images", "boxes"}.
"""

import argparse
import json
import random
import time
from pathlib import Path

import yaml


class PlatformToYOLOConverter:
    """Convert Platform Format to YOLO format (the design's sketch)."""

    def convert(self, platform_annotations, output_dir, split_info):
        # 1. Determine split
        splits = self._get_splits(platform_annotations, split_info)

        # 2. Split images
        train_images = [img for img in platform_annotations["images"] if splits.get(img["id"]) == "train"]
        val_images = [img for img in platform_annotations["images"] if splits.get(img["id"]) == "val"]

        # 3. Create label files
        labels_dir = output_dir / "labels"
        for split_name, images in [("train", train_images), ("val", val_images)]:
            split_label_dir = labels_dir / split_name
            split_label_dir.mkdir(parents=True, exist_ok=True)

            for img in images:
                label_path = split_label_dir / f"{Path(img['file_name']).stem}.txt"
                with open(label_path, "w") as f:
                    for ann in self._get_annotations_for_image(img["id"], platform_annotations):
                        yolo_line = self._to_yolo_format(ann, img)
                        f.write(yolo_line + "\n")

        # 4. Create train.txt and val.txt
        with open(output_dir / "train.txt", "w") as f:
            for img in train_images:
                f.write(f"/workspace/dataset/images/{img['file_name']}" + "\n")
        with open(output_dir / "val.txt", "w") as f:
            for img in val_images:
                f.write(f"/workspace/dataset/images/{img['file_name']}" + "\n")

        # 5. Create data.yaml
        data_yaml = {
            "path": "/workspace/dataset",
            "train": "train.txt",
            "val": "val.txt",
            "nc": len(platform_annotations["classes"]),
            "names": [c["name"] for c in platform_annotations["classes"]],
        }
        yaml_path = output_dir / "data.yaml"
        with open(yaml_path, "w") as f:
            yaml.dump(data_yaml, f)
        return yaml_path

    def _get_splits(self, platform_annotations, split_info):
        # The design's apply_split, method "auto".
        images = platform_annotations["images"]
        random.seed(split_info["seed"])
        shuffled = images.copy()
        random.shuffle(shuffled)
        split_idx = int(len(shuffled) * split_info["ratio"][0])
        splits = {}
        for img in shuffled[:split_idx]:
            splits[img["id"]] = "train"
        for img in shuffled[split_idx:]:
            splits[img["id"]] = "val"
        return splits

    def _get_annotations_for_image(self, image_id, platform_annotations):
        for img in platform_annotations["images"]:
            if img["id"] == image_id:
                return img.get("annotations") or []
        return []

    def _to_yolo_format(self, ann, img):
        x, y, w, h = ann["bbox"]
        width, height = img["width"], img["height"]
        return f"{ann['class_id']} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}"


class IndexedPlatformToYOLOConverter(PlatformToYOLOConverter):
    """The same converter with the image lookup indexed once."""

    def convert(self, platform_annotations, output_dir, split_info):
        self._by_id = {img["id"]: img for img in platform_annotations["images"]}
        return super().convert(platform_annotations, output_dir, split_info)

    def _get_annotations_for_image(self, image_id, platform_annotations):
        return self._by_id[image_id].get("annotations") or []


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", choices=["design", "indexed"], default="design")
    args = parser.parse_args()

    converter = PlatformToYOLOConverter() if args.variant == "design" else IndexedPlatformToYOLOConverter()
    start = time.perf_counter()
    with open(args.annotations) as f:
        annotations = json.load(f)
    converter.convert(annotations, Path(args.out), {"method": "auto", "ratio": [0.8, 0.2], "seed": 42})
    seconds = time.perf_counter() - start
    boxes = sum(len(img.get("annotations") or []) for img in annotations["images"])
    print(json.dumps({"seconds": seconds, "images": len(annotations["images"]), "boxes": boxes}))


if __name__ == "__main__":
    main()
