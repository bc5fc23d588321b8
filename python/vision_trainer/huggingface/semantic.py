"""Semantic segmentation with transformers (SegFormer, or any AutoModelForSemanticSegmentation
architecture through HF_CONFIG_OVERRIDES' "model_type", e.g. UperNet or DPT): the data and the
model, for train.py's run.

The dataset is writeHuggingFaceManifest's semantic layout: {"image": path, "mask": path} per
line, the mask an indexed PNG of dataset class ids. Masks become class indices here
(common/semantic_metrics.MaskCodec), with pixels that are no class id ignored by the loss
(IGNORE_INDEX, the models' own `semantic_loss_ignore_index`).

Images and masks are resized to IMAGE_SIZE x IMAGE_SIZE (the image bilinearly, the mask by
nearest neighbour, so no pixel gets a class that was not there); training adds a horizontal flip
of both. Validation scores the model's logits upsampled to that size against the resized mask;
test runs score at each image's original size (classifier_infer.py's semantic backend).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from ..common.semantic_metrics import IGNORE_INDEX, MaskCodec, read_mask

# The published SegFormer checkpoints' architectures, built from their configurations (no download):
# SegformerConfig's defaults are MiT-b0; b1 and b2 widen and deepen it.
SEGFORMER_B1 = {"hidden_sizes": [64, 128, 320, 512], "decoder_hidden_size": 256, "depths": [2, 2, 2, 2]}
SEGFORMER_B2 = {"hidden_sizes": [64, 128, 320, 512], "decoder_hidden_size": 768, "depths": [3, 4, 6, 3]}
SCRATCH_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "segformer-b0": ("segformer", {}),
    "segformer-b0-finetuned-ade-512-512": ("segformer", {}),
    "segformer-b1": ("segformer", SEGFORMER_B1),
    "segformer-b1-finetuned-ade-512-512": ("segformer", SEGFORMER_B1),
    "segformer-b2": ("segformer", SEGFORMER_B2),
    "segformer-b2-finetuned-ade-512-512": ("segformer", SEGFORMER_B2),
}


class SemanticManifestDataset(torch.utils.data.Dataset):
    def __init__(self, jsonl: Path, codec: MaskCodec, image_size: int, mean, std, *, train: bool):
        self.rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        self.codec = codec
        self.size = int(image_size)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.train = train
        # What the run settings print (transformers_settings reads `transform`).
        self.transform = f"resize {self.size}x{self.size} (image bilinear, mask nearest){', random horizontal flip' if train else ''}, normalise {mean} {std}"

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        pixels = pixel_tensor(row["image"], self.size, self.mean, self.std)
        labels = torch.from_numpy(mask_indices(row["mask"], self.codec, self.size)).long()
        if self.train and random.random() < 0.5:
            pixels, labels = pixels.flip(-1), labels.flip(-1)
        return {"pixel_values": pixels, "labels": labels}


def pixel_tensor(path: str, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
    return (torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float() / 255.0 - mean) / std


def mask_indices(path: str, codec: MaskCodec, size: int | None) -> np.ndarray:
    """The mask as class indices (IGNORE_INDEX unlabelled), resized to size x size by nearest neighbour."""
    indices = codec.to_indices(read_mask(path))
    if size is None or indices.shape == (size, size):
        return indices
    return np.asarray(Image.fromarray(indices, mode="L").resize((size, size), Image.NEAREST))


def build_model(config, folder: Path | None, class_names: list[str]):
    """AutoModelForSemanticSegmentation from a save_pretrained folder (head resized to the
    dataset's classes) or from `config`; pixels no class id are ignored by its loss."""
    from transformers import AutoModelForSemanticSegmentation

    num_labels = len(class_names)
    id2label = dict(enumerate(class_names))
    label2id = {name: i for i, name in id2label.items()}
    if folder is not None:
        try:
            model = AutoModelForSemanticSegmentation.from_pretrained(
                folder, num_labels=num_labels, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True, trust_remote_code=False
            )
        except (ValueError, OSError, KeyError) as exc:
            raise ValueError(f"PRETRAINED_WEIGHT_URL does not hold a segmentation model transformers can load: {type(exc).__name__}: {str(exc)[:400]}") from exc
    else:
        config.num_labels, config.id2label, config.label2id = num_labels, id2label, label2id
        try:
            model = AutoModelForSemanticSegmentation.from_config(config)
        except ValueError as exc:
            raise ValueError(
                f"{config.model_type} models are not semantic segmentation models (AutoModelForSemanticSegmentation has no class for them): {exc}"
            ) from exc
    model.config.semantic_loss_ignore_index = IGNORE_INDEX
    return model


def class_map(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, C, h, w] logits -> [B, H, W] class indices at `size` (upsampled as the models' own loss does)."""
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    return logits.argmax(dim=1)
