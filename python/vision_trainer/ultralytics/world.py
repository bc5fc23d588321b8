"""YOLO-World (open-vocabulary detection) fine-tuned on the dataset's class names as text prompts.

ultralytics embeds the prompts with OpenAI's `clip` package, which it pip-installs from GitHub
when missing (`ultralytics.nn.text_model`, imported by `WorldModel.get_text_pe`). Here the text
encoder is a transformers CLIP model instead: a `save_pretrained` folder that Node downloaded from
TEXT_ENCODER_WEIGHT_URL and extracted, loaded from safetensors only. `use_text_encoder` replaces
`WorldModel.get_text_pe` for this process, so ultralytics' text_model module (and its install
attempt) is never imported. A trained checkpoint keeps its classes' embeddings (`txt_feats`), so
test runs, inference and export need no encoder.
"""

from __future__ import annotations

import re
from pathlib import Path

WORLD_NAME = re.compile(r"^yolo_world_v2_([nsmlx])$")
# ultralytics' YOLO-World heads take 512-wide prompt embeddings (OpenAI CLIP ViT-B/32's projection).
EMBED_DIM = 512
VARIABLE = "TEXT_ENCODER_WEIGHT_URL"


def is_world(model_name: str) -> bool:
    return WORLD_NAME.match(model_name) is not None


def config_name(model_name: str) -> str:
    """The ultralytics configuration a design name is built from: yolo_world_v2_s -> yolov8s-worldv2."""
    m = WORLD_NAME.match(model_name)
    return f"yolov8{m.group(1)}-worldv2" if m else model_name


def holds_world_model(model) -> bool:
    from ultralytics.nn.tasks import WorldModel

    return isinstance(model, WorldModel)


class ClipTextEncoder:
    """A transformers CLIP text tower with its projection and tokenizer, answering as ultralytics'
    text models do: `tokenize(texts)`, then `encode_text(tokens)` as L2-normalised embeddings."""

    def __init__(self, folder: str, device):
        from transformers import AutoTokenizer, CLIPTextModelWithProjection
        from transformers.utils import logging as hf_logging

        root = _config_root(Path(folder))
        verbosity = hf_logging.get_verbosity()
        # A whole CLIP folder (the usual download) has a vision tower too: its unused weights are expected, not news.
        hf_logging.set_verbosity_error()
        try:
            # use_safetensors: a pickled pytorch_model.bin is refused, not loaded.
            self.model = (
                CLIPTextModelWithProjection.from_pretrained(str(root), use_safetensors=True, local_files_only=True, trust_remote_code=False).to(device).eval()
            )
            self.tokenizer = AutoTokenizer.from_pretrained(str(root), local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(
                f"{VARIABLE} is not a zip of a transformers CLIP save_pretrained folder with safetensors weights and tokenizer files "
                f"({type(exc).__name__}: {str(exc)[:300]})"
            ) from exc
        finally:
            hf_logging.set_verbosity(verbosity)
        self.device = device
        self.dim = int(self.model.config.projection_dim)
        if self.dim != EMBED_DIM:
            raise ValueError(
                f"{VARIABLE} holds a CLIP text encoder of {self.dim}-wide embeddings; YOLO-World needs {EMBED_DIM} (e.g. openai/clip-vit-base-patch32)"
            )
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", 77))

    def tokenize(self, texts: list[str]):
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def encode_text(self, input_ids, attention_mask):
        import torch

        with torch.inference_mode():
            feats = self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds.float()
        return feats / feats.norm(p=2, dim=-1, keepdim=True)


def _config_root(folder: Path) -> Path:
    """config.json at the zip's root or one folder down (a zipped folder)."""
    if (folder / "config.json").is_file():
        return folder
    inner = [p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()] if folder.is_dir() else []
    if len(inner) == 1:
        return inner[0]
    raise ValueError(f"{VARIABLE}: no config.json at the zip's root or in its one folder")


_state: dict = {"folder": None, "encoder": None}


def use_text_encoder(folder: str | None) -> None:
    """Makes every WorldModel of this process embed prompts with the encoder in `folder` (None:
    prompts the model does not already hold fail with the variable to set)."""
    from ultralytics.nn.tasks import WorldModel

    if _state["folder"] != folder:
        _state.update(folder=folder, encoder=None)
    WorldModel.get_text_pe = _get_text_pe


def _encoder(device) -> ClipTextEncoder:
    if _state["folder"] is None:
        raise ValueError(f"YOLO-World embeds the class names with a CLIP text encoder: set {VARIABLE} (a zip of a transformers CLIP save_pretrained folder)")
    enc = _state["encoder"]
    if enc is None or enc.device != device:
        enc = _state["encoder"] = ClipTextEncoder(_state["folder"], device)
    return enc


def _get_text_pe(self, text, batch=80, cache_clip_model=False):
    """WorldModel.get_text_pe with our encoder, kept off the model (it would be pickled into every
    checkpoint otherwise); `cache_clip_model` is honoured by the module-level cache."""
    import torch

    device = next(self.model.parameters()).device
    encoder = _encoder(device)
    ids, mask = encoder.tokenize(list(text))
    feats = [encoder.encode_text(i, m) for i, m in zip(ids.split(batch), mask.split(batch), strict=True)]
    feats = feats[0] if len(feats) == 1 else torch.cat(feats, dim=0)
    return feats.reshape(-1, len(text), feats.shape[-1])
