"""Reads converted datasets with the frameworks' own loaders (datasets-frameworks.test.ts).

Input (argv[1]): JSON {"yolo": [{"task", "data"}], "imagefolder": {"root", "class_map"},
"huggingface": {"root"}, "merge": [[polygon, ...], ...]}. Prints one JSON line with what each
loader saw, for the TypeScript test to compare with the dataset it converted.
"""

import json
import sys

import numpy as np


def read_yolo(task, data_yaml):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(data_yaml)
    splits = {}
    for split in ("train", "val", "test"):
        if split not in data or not data[split]:
            continue
        dataset = YOLODataset(img_path=data[split], data=data, task=task, augment=False, imgsz=64, cache=False, prefix=f"{split}: ")
        splits[split] = [
            {
                "im_file": label["im_file"],
                "cls": label["cls"].reshape(-1).astype(int).tolist(),
                "bboxes": label["bboxes"].tolist(),
                "segments": [len(s) for s in label.get("segments") or []],
                "keypoints": list(label["keypoints"].shape) if label.get("keypoints") is not None else None,
            }
            for label in dataset.labels
        ]
    return {
        "names": {str(k): v for k, v in data["names"].items()},
        "nc": data["nc"],
        "kpt_shape": data.get("kpt_shape"),
        "flip_idx": data.get("flip_idx"),
        "splits": splits,
    }


def read_imagefolder(root, class_map):
    from timm.data import ImageDataset
    from torchvision.datasets import ImageFolder

    out = {}
    for split in ("train", "val"):
        folder = ImageFolder(f"{root}/{split}", allow_empty=True)
        timm_set = ImageDataset(f"{root}/{split}", class_map=class_map)
        out[split] = {
            "torchvision_classes": folder.classes,
            "torchvision_samples": [[path, target] for path, target in folder.samples],
            "timm_class_to_idx": timm_set.reader.class_to_idx,
            "timm_samples": [[path, int(target)] for path, target in timm_set.reader.samples],
        }
    return out


def read_huggingface(root):
    from PIL import Image

    with open(f"{root}/labels.json") as f:
        id2label = json.load(f)
    out = {"id2label": id2label}
    for split in ("train", "val"):
        rows = []
        with open(f"{root}/{split}.jsonl") as f:
            for line in f:
                row = json.loads(line)
                with Image.open(row["image"]) as image:
                    row["size"] = list(image.size)
                rows.append(row)
        out[split] = rows
    return out


def merge(cases):
    from ultralytics.data.converter import merge_multi_segment

    return [np.concatenate(merge_multi_segment(pieces), axis=0).reshape(-1).tolist() for pieces in cases]


def main():
    with open(sys.argv[1]) as f:
        request = json.load(f)
    result = {
        "yolo": [read_yolo(item["task"], item["data"]) for item in request.get("yolo", [])],
        "merge": merge(request.get("merge", [])),
    }
    if "imagefolder" in request:
        result["imagefolder"] = read_imagefolder(request["imagefolder"]["root"], request["imagefolder"]["class_map"])
    if "huggingface" in request:
        result["huggingface"] = read_huggingface(request["huggingface"]["root"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
