"""Fixtures and checks for the timm/transformers training tests (train-timm*.test.ts,
train-hf*.test.ts), one subcommand each; every subcommand prints one JSON line.

  timm-weights OUT MODEL NUM_CLASSES     a timm state dict (.safetensors or .pth by OUT's suffix),
                                         as a pretrained-weights download would hold
  hf-pretrained OUT_DIR TASK NUM_LABELS IMAGE_SIZE
                                         a tiny save_pretrained folder (ViT classifier, or CLIP with
                                         its tokenizer), as PRETRAINED_WEIGHT_URL's zip would hold
  reevaluate CHECKPOINT IMAGES_JSON      rebuilds the model from the checkpoint alone
                                         (build_model_from_checkpoint + its metadata's preprocessing)
                                         and scores [[image path, label], ...]: the confusion matrix
  yolo-reevaluate CHECKPOINT IMAGES_JSON an ultralytics best.pt loaded as the job loads one (YOLO()
                                         behind the package's restricted unpickler) and scored on
                                         [[image path, class name], ...]: the confusion matrix in
                                         the checkpoint's class order, and its class names
  roundtrip OUT_DIR                      saves timm/ViT/CLIP models with save_checkpoint and rebuilds
                                         them: the largest logit difference per model
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

from vision_trainer.common.checkpoints import build_model_from_checkpoint, clip_image_embeddings, clip_text_embeddings, save_checkpoint
from vision_trainer.huggingface.train import offline_clip_tokenizer, scratch_config
from vision_trainer.timm.train import create_timm_model

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "patch_size": 8}
TINY_CLIP = {
    "projection_dim": 16,
    "text_config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64},
    "vision_config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "patch_size": 8},
}


def timm_weights(out: str, model_name: str, num_classes: str) -> dict:
    model, _ = create_timm_model(model_name, int(num_classes), 224)
    state = model.state_dict()
    if out.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, out)
    else:
        torch.save({"state_dict": state, "epoch": 90}, out)  # the shape of a timm train.py checkpoint
    return {"path": out, "tensors": len(state)}


def _tiny_clip(image_size: int):
    from transformers import CLIPModel

    tokenizer = offline_clip_tokenizer()
    config = scratch_config("clip-vit-base-patch32", TINY_CLIP, image_size)
    config.text_config.vocab_size = len(tokenizer)
    config.text_config.bos_token_id, config.text_config.eos_token_id, config.text_config.pad_token_id = (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    return CLIPModel(config), tokenizer


def hf_pretrained(out_dir: str, task: str, num_labels: str, image_size: str) -> dict:
    from transformers import AutoModelForImageClassification, ViTImageProcessor

    size = int(image_size)
    if task == "zero_shot_classification":
        model, tokenizer = _tiny_clip(size)
        tokenizer.save_pretrained(out_dir)
    else:
        config = scratch_config("vit-base-patch16-224", TINY_VIT, size)
        config.num_labels = int(num_labels)
        config.id2label = {i: f"pretrained-{i}" for i in range(int(num_labels))}
        config.label2id = {v: k for k, v in config.id2label.items()}
        model = AutoModelForImageClassification.from_config(config)
    model.save_pretrained(out_dir)
    ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(out_dir)
    return {"path": out_dir, "files": sorted(p.name for p in Path(out_dir).iterdir())}


def _preprocess(meta: dict):
    """The val transform the checkpoint's metadata describes, built from that metadata only."""
    if meta["resize_mode"] == "shorter_side_center_crop":
        from timm.data import create_transform

        return create_transform(
            (3, meta["image_size"], meta["image_size"]),
            is_training=False,
            interpolation=meta["interpolation"],
            mean=tuple(meta["mean"]),
            std=tuple(meta["std"]),
            crop_pct=meta["crop_pct"],
        )
    from torchvision import transforms as T

    mode = T.InterpolationMode.BICUBIC if meta["interpolation"] == "bicubic" else T.InterpolationMode.BILINEAR
    return T.Compose([T.Resize((meta["image_size"], meta["image_size"]), interpolation=mode), T.ToTensor(), T.Normalize(meta["mean"], meta["std"])])


def reevaluate(checkpoint: str, images_json: str) -> dict:
    from PIL import Image

    model, meta = build_model_from_checkpoint(checkpoint)
    transform = _preprocess(meta)
    images = json.loads(Path(images_json).read_text())
    n = meta["num_classes"]
    matrix = [[0] * n for _ in range(n)]
    with torch.no_grad():
        for path, label in images:
            with Image.open(path) as image:
                x = transform(image.convert("RGB")).unsqueeze(0)
            predicted = int(model(x).argmax(dim=1))
            matrix[label][predicted] += 1
    return {
        "confusion_matrix": matrix,
        "metadata": {k: v for k, v in meta.items() if k not in ("hf_config", "hf_tokenizer_json", "prompt_input_ids", "prompt_attention_mask")},
    }


def _metadata(framework: str, architecture: str, task: str, names: list, size: int, **extra) -> dict:
    return {
        "framework": framework,
        "model_name": architecture,
        "architecture": architecture,
        "task_type": task,
        "class_names": names,
        "image_size": size,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bilinear",
        "resize_mode": "squash",
        "crop_pct": 1.0,
        "epoch": 1,
        **extra,
    }


@torch.no_grad()
def _rebuilt_diff(path: str, x: torch.Tensor, before: torch.Tensor) -> float:
    rebuilt, _ = build_model_from_checkpoint(path)
    return float((rebuilt(x) - before).abs().max())


def roundtrip(out_dir: str) -> dict:
    from transformers import AutoModelForImageClassification

    torch.manual_seed(0)
    names = ["cat", "dog", "fish", "bird", "frog"]
    size = 32
    x = torch.randn(4, 3, size, size)
    out = Path(out_dir)
    diffs = {}

    model, kwargs = create_timm_model("resnet18", len(names), size)
    model.eval()
    with torch.no_grad():
        before = model(x)
    path = save_checkpoint(out / "timm.pt", _metadata("timm", "resnet18", "image_classification", names, size, model_kwargs=kwargs), model.state_dict())
    diffs["timm resnet18"] = _rebuilt_diff(path, x, before)

    config = scratch_config("vit-base-patch16-224", TINY_VIT, size)
    config.num_labels = len(names)
    vit = AutoModelForImageClassification.from_config(config).eval()
    with torch.no_grad():
        before = vit(pixel_values=x).logits
    path = save_checkpoint(
        out / "vit.pt",
        _metadata("huggingface", type(vit).__name__, "image_classification", names, size, hf_config=vit.config.to_json_string()),
        vit.state_dict(),
    )
    diffs["transformers ViT"] = _rebuilt_diff(path, x, before)

    clip, tokenizer = _tiny_clip(size)
    clip.eval()
    prompts = tokenizer([f"a photo of a {n}" for n in names], padding=True, return_tensors="pt")
    with torch.no_grad():
        text = clip_text_embeddings(clip, prompts["input_ids"], prompts["attention_mask"])
        before = clip.logit_scale.exp() * clip_image_embeddings(clip, x) @ text.T
    path = save_checkpoint(
        out / "clip.pt",
        _metadata(
            "huggingface",
            type(clip).__name__,
            "zero_shot_classification",
            names,
            size,
            hf_config=clip.config.to_json_string(),
            prompt_input_ids=prompts["input_ids"].tolist(),
            prompt_attention_mask=prompts["attention_mask"].tolist(),
        ),
        clip.state_dict(),
    )
    diffs["transformers CLIP zero-shot"] = _rebuilt_diff(path, x, before)
    return {"max_abs_diff": diffs, "logit_scale": float(before.abs().max())}


def yolo_reevaluate(checkpoint: str, images_json: str) -> dict:
    from ultralytics import YOLO

    # Importing vision_trainer (above) put safe_load's restricted unpickler in front of torch.load.
    model = YOLO(checkpoint)
    names = [model.names[i] for i in range(len(model.names))]
    matrix = [[0] * len(names) for _ in names]
    for path, name in json.loads(Path(images_json).read_text()):
        [result] = model.predict(path, verbose=False, device="cpu")
        matrix[names.index(name)][int(result.probs.top1)] += 1
    return {"confusion_matrix": matrix, "class_names": names, "task": model.task}


COMMANDS = {"timm-weights": timm_weights, "hf-pretrained": hf_pretrained, "reevaluate": reevaluate, "yolo-reevaluate": yolo_reevaluate, "roundtrip": roundtrip}

if __name__ == "__main__":
    result = COMMANDS[sys.argv[1]](*sys.argv[2:])
    # vision_trainer.support sends sys.stdout to stderr (the job's logs own stdout): answer on the real one.
    sys.__stdout__.write(json.dumps(result) + "\n")
