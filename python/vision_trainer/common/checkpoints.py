"""The checkpoint format of the timm and transformers trainers, and how to rebuild a model from it.

One file per checkpoint (`last.pt` every epoch, `best.pt` by the primary metric), written with
`torch.save` and readable with `torch.load(weights_only=True)`: only tensors, numbers, strings,
lists and dicts, never pickled classes. It carries everything inference and export need without
the dataset, and for resume the optimizer and best-so-far state.

Metadata keys (all plain JSON values; `load_checkpoint` returns them with the tensors):

    format            "vision-trainer-checkpoint"
    format_version    1
    framework         "timm" | "huggingface"
    model_name        the job's MODEL_NAME (e.g. "resnet18", "vit-base-patch16-224")
    architecture      timm: the timm model name; huggingface: the transformers class name
                      ("ViTForImageClassification", "CLIPModel", ...)
    task_type         "image_classification" | "zero_shot_classification" | "semantic_segmentation"
    class_names       class names in logit index order
    class_ids         the dataset's class id of each logit index (common/class_ids.py); absent
                      from checkpoints written before it was stored: indices are the ids then
    num_classes       len(class_names)
    image_size        the square input side, in pixels
    input_channels    3
    mean, std         normalisation per channel (applied after scaling pixels to 0..1)
    interpolation     "bilinear" | "bicubic" (resize filter)
    interpolate_pos_encoding
                      huggingface only: the model was pretrained at another size and
                      interpolates its position embeddings to image_size (passed to forward)
    resize_mode       "shorter_side_center_crop": resize the shorter side to
                      image_size / crop_pct, then centre-crop image_size x image_size (timm);
                      "squash": resize straight to image_size x image_size (transformers)
    crop_pct          see resize_mode (1.0 for "squash")
    epoch             epochs completed (1-based: epoch N's checkpoint says N)
    epoch_complete    False for the checkpoint of a run stopped mid-epoch: its weights carry
                      part of epoch `epoch + 1`, which a resume runs again
    metrics           that epoch's validation metrics ({"accuracy": ..., ...})
    primary_metric    "accuracy"
    best_metric       best primary metric value up to and including this epoch (a resumed
                      run carries the best of the earlier attempts: see best_after_resume)
    best_epoch        the epoch that reached it, by the trainer's score when it wrote this
                      file; in best.pt (a copy of the chosen epoch's checkpoint), the epoch the
                      job chose: the backend's is_best answers arrive later and may choose
                      another epoch than the score did (src/jobs/train/best.ts), so `mark_best`
                      rewrites best_epoch and best_metric of best.pt before it is uploaded
    best_decided_by   best.pt only: "backend" (its is_best answer) or "score"
    job_id            the training job that wrote it
    versions          {"torch": ..., "timm" | "transformers": ...}
    model_kwargs      timm only: extra `timm.create_model` arguments (e.g. {"img_size": 32})
    hf_config         huggingface only: the model config as a JSON string
    prompt_template   zero-shot only: e.g. "a photo of a {}"
    prompt_input_ids, prompt_attention_mask
                      zero-shot only: the class prompts, tokenized (one row per class), so the
                      model can be rebuilt without a tokenizer
    hf_tokenizer_json zero-shot only: the tokenizer (tokenizers JSON) for new prompts

Tensor / training-state keys:

    state_dict        model weights
    training_state    resume only: {"optimizer": state dict, "scaler"?: AMP loss-scaler state}.
                      The learning-rate schedule is a function of EPOCHS and the epochs done,
                      so a resume rebuilds and positions it instead of restoring it

`build_model_from_checkpoint(path)` gives `(model, metadata)`: a torch module in eval mode that
maps a normalised float batch [B, 3, image_size, image_size] to logits [B, num_classes] for
every framework and task (transformers models are wrapped so they return the logits tensor; the
wrapped model is `model.hf_model`); a semantic segmentation model's logits are per pixel,
[B, num_classes, H, W] at the input's size (SemanticLogits), and argmax over dim 1 is the class map.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..protocol import MarkBestAnswer, MarkBestParams, PathParams, RecordedBest
from ..safe_load import UnsafeArtifactError, names_ultralytics_model, pickle_globals
from ..support import entry, plain

CHECKPOINT_FORMAT = "vision-trainer-checkpoint"
FORMAT_VERSION = 1

TENSOR_KEYS = ("state_dict", "training_state")
REQUIRED_METADATA = ("framework", "model_name", "architecture", "task_type", "class_names", "image_size", "mean", "std")


class CheckpointError(ValueError):
    """A file that is not a usable vision-trainer checkpoint (the message says why)."""


def save_checkpoint(
    path: str | os.PathLike, metadata: dict[str, Any], state_dict: dict[str, torch.Tensor], *, training_state: dict[str, Any] | None = None
) -> str:
    """Writes one checkpoint atomically (a reader never sees half a file) and returns its path."""
    missing = [k for k in REQUIRED_METADATA if metadata.get(k) is None]
    if missing:
        raise CheckpointError(f"checkpoint metadata lacks {', '.join(missing)}")
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        # Plain JSON values only: torch.load(weights_only=True) refuses anything else, even str
        # subclasses such as torch.__version__.
        **json.loads(json.dumps(plain(metadata))),
        "num_classes": len(metadata["class_names"]),
        "input_channels": int(metadata.get("input_channels", 3)),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    if training_state is not None:
        payload["training_state"] = training_state
    return save_atomically(payload, path)


def save_atomically(payload: Any, path: str | os.PathLike) -> str:
    """torch.save into a temporary file beside `path`, then renamed over it: a reader never sees
    half a file, and a failure leaves the old file as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would follow the file to its upload
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(target)


@entry
def mark_best(params: MarkBestParams) -> MarkBestAnswer:
    """Stamps the checkpoint that becomes best.pt with the epoch the job chose (the backend's
    is_best, else the score): `best_epoch`, `best_metric` and `best_decided_by` then say what the
    training's `done` says. The trainer wrote them earlier, by its score alone."""
    ckpt = load_checkpoint(params["path"])
    previous = ckpt.get("best_epoch")
    ckpt["best_epoch"] = int(params["epoch"])
    ckpt["best_metric"] = params["value"]
    ckpt["best_decided_by"] = params["decided_by"]
    save_atomically(ckpt, params["path"])
    return {"previous_best_epoch": None if previous is None else int(previous)}


@entry
def recorded_best(params: PathParams) -> RecordedBest:
    """The best epoch and primary metric a checkpoint records: in an epoch's checkpoint, the
    trainer's view of the whole run up to that epoch (earlier attempts included). A retried job
    whose state.json names no best (killed before it was written) takes its best from here."""
    meta = read_metadata(params["path"])
    epoch = meta.get("best_epoch")
    value = meta.get("best_metric")
    return {"epoch": None if epoch is None else int(epoch), "value": None if value is None else float(value)}


def run_state(params, *, epoch: int, epoch_complete: bool, metrics: dict[str, Any], best_metric: float | None, best_epoch: int | None) -> dict[str, Any]:
    """The metadata every trainer's checkpoint records about the run at `epoch` (see the keys above)."""
    return {
        "epoch": epoch,
        "epoch_complete": epoch_complete,
        "metrics": metrics,
        "primary_metric": params["primary_metric"],
        "best_metric": best_metric,
        "best_epoch": best_epoch,
        "job_id": params.get("job_id"),
    }


class RunCheckpoints:
    """A run's two checkpoint files: `last.pt` rewritten every epoch, `best.pt` a copy of the
    last one whenever the primary metric improved."""

    def __init__(self, weights_dir: str | os.PathLike):
        self.dir = Path(weights_dir)
        self.last = self.dir / "last.pt"
        self.best = self.dir / "best.pt"

    def save(self, metadata: dict[str, Any], state_dict: dict[str, torch.Tensor], *, is_best: bool, training_state: dict[str, Any] | None = None) -> None:
        save_checkpoint(self.last, metadata, state_dict, training_state=training_state)
        if is_best:
            # A hard link, not a copy (checkpoints are large): save_checkpoint writes every
            # last.pt to a new file and renames it, so best.pt keeps this version.
            tmp = self.best.with_name(f".{self.best.name}.link")
            tmp.unlink(missing_ok=True)
            try:
                os.link(self.last, tmp)
            except OSError:
                shutil.copyfile(self.last, tmp)
            os.replace(tmp, self.best)

    def adopt_best(self, path: str | os.PathLike) -> None:
        """A resumed run starts with the checkpoint it resumed from as its best, when that was the best."""
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, self.best)

    @property
    def last_path(self) -> str | None:
        return str(self.last) if self.last.exists() else None

    @property
    def best_path(self) -> str | None:
        return str(self.best) if self.best.exists() else None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The whole checkpoint (metadata, weights, training state). Raises CheckpointError naming
    the problem when the file is not one of ours."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if names_ultralytics_model(pickle_globals(p)):
        raise CheckpointError(f"{p.name} is an ultralytics checkpoint, not a vision-trainer checkpoint of a timm/transformers model")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except UnsafeArtifactError:
        raise
    except Exception as exc:
        # Ours hold plain values only; torch names the first pickled class it refused.
        pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        why = f"it holds pickled Python objects ({pickled.group(1)})" if pickled else f"torch.load failed: {type(exc).__name__}: {str(exc)[:300]}"
        raise CheckpointError(f"{p.name} is not a vision-trainer checkpoint: {why}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        keys = ", ".join(sorted(map(str, ckpt))[:8]) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{p.name} is not a vision-trainer checkpoint of a timm/transformers model (found: {keys})")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{p.name} has checkpoint format version {ckpt['format_version']}; this version reads up to {FORMAT_VERSION}")
    return ckpt


def metadata_of(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint without its tensors and training state."""
    return {k: v for k, v in ckpt.items() if k not in TENSOR_KEYS}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    return metadata_of(load_checkpoint(path))


def load_for_resume(
    path: str | os.PathLike, *, framework: str, model_name: str, class_names: list[str], class_ids: list[int], task_type: str, image_size: int
) -> dict[str, Any]:
    """The checkpoint RESUME_CHECKPOINT_PATH names, refused (ValueError, saying why) when it is
    not ours, belongs to another framework, model, task, class list or image size, or has no
    optimizer state."""
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise ValueError(f"RESUME_CHECKPOINT_PATH is not a checkpoint this job can resume: {exc}") from exc
    problems = []
    if ckpt.get("framework") != framework:
        problems.append(f"framework {ckpt.get('framework')!r} (this job: {framework!r})")
    if ckpt.get("model_name") != model_name:
        problems.append(f"model {ckpt.get('model_name')!r} (this job: {model_name!r})")
    if ckpt.get("task_type") != task_type:
        problems.append(f"task {ckpt.get('task_type')!r} (this job: {task_type!r})")
    if list(ckpt.get("class_names") or []) != list(class_names):
        problems.append(f"classes {ckpt.get('class_names')} (this job's dataset: {list(class_names)})")
    elif ckpt.get("class_ids") is not None and list(ckpt["class_ids"]) != list(class_ids):
        problems.append(f"class ids {ckpt['class_ids']} (this job's dataset: {list(class_ids)})")
    if ckpt.get("image_size") != image_size:
        problems.append(f"IMAGE_SIZE={ckpt.get('image_size')} (this job: {image_size})")
    if problems:
        raise ValueError(
            "RESUME_CHECKPOINT_PATH belongs to another training setup: it has "
            + "; ".join(problems)
            + ". Resume with the same MODEL_NAME, TASK_TYPE, IMAGE_SIZE and dataset classes, or start without RESUME_CHECKPOINT_PATH."
        )
    if not ckpt.get("training_state"):
        raise ValueError("RESUME_CHECKPOINT_PATH has no optimizer state (it is an inference-only checkpoint); resume from an epoch-N.pt checkpoint")
    return ckpt


def best_after_resume(
    ckpt: dict[str, Any],
    resume_path: str,
    best_from: dict[str, Any] | None,
    checkpoints: RunCheckpoints,
    *,
    framework: str,
    model_name: str,
    class_names: list[str],
    class_ids: list[int],
    task_type: str,
    image_size: int,
) -> tuple[float | None, int | None]:
    """The best-so-far a resumed run starts with (primary metric, epoch), its weights put in place
    as best.pt: the best checkpoint of the earlier attempts when TypeScript found one in storage
    (`best_from`, checked like the resume checkpoint), else the resume checkpoint when its epoch was
    the best. Otherwise best.pt starts over with this run's epochs, so it always holds the weights
    of the epoch reported as best."""
    if best_from:
        load_for_resume(
            best_from["path"],
            framework=framework,
            model_name=model_name,
            class_names=class_names,
            class_ids=class_ids,
            task_type=task_type,
            image_size=image_size,
        )
        checkpoints.adopt_best(best_from["path"])
        return best_from["value"], int(best_from["epoch"])
    if ckpt.get("epoch_complete", True) and ckpt.get("best_epoch") == int(ckpt["epoch"]):
        checkpoints.adopt_best(resume_path)
        return ckpt.get("best_metric"), ckpt.get("best_epoch")
    return None, None


def build_model_from_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode mapping [B, 3, H, W] to logits [B, num_classes], metadata)."""
    ckpt = load_checkpoint(path)
    meta = metadata_of(ckpt)
    if meta["framework"] == "timm":
        model = _build_timm(ckpt)
    elif meta["framework"] == "huggingface":
        model = _build_huggingface(ckpt)
    else:
        raise CheckpointError(f"checkpoint framework {meta['framework']!r} is not timm or huggingface")
    return model.to(device).eval(), meta


def _load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"the checkpoint's weights do not fit {what}: missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")


def _build_timm(ckpt: dict[str, Any]) -> nn.Module:
    import timm

    model = timm.create_model(
        ckpt["architecture"],
        pretrained=False,
        num_classes=int(ckpt["num_classes"]),
        in_chans=int(ckpt.get("input_channels", 3)),
        **(ckpt.get("model_kwargs") or {}),
    )
    _load_strict(model, ckpt["state_dict"], f"timm {ckpt['architecture']}")
    return model


def hf_model_class(architecture: str):
    import transformers

    cls = getattr(transformers, architecture, None)
    if cls is None or not hasattr(cls, "config_class"):
        raise CheckpointError(f"transformers {transformers.__version__} has no model class {architecture!r}")
    return cls


def _build_huggingface(ckpt: dict[str, Any]) -> nn.Module:
    hf_model = hf_model_from_checkpoint(ckpt)
    hf_model.eval()
    interpolate = bool(ckpt.get("interpolate_pos_encoding", False))
    if ckpt["task_type"] == "semantic_segmentation":
        return SemanticLogits(hf_model)
    if ckpt["task_type"] == "zero_shot_classification":
        return ZeroShotLogits(
            hf_model, torch.tensor(ckpt["prompt_input_ids"]), torch.tensor(ckpt["prompt_attention_mask"]), interpolate_pos_encoding=interpolate
        )
    return ImageClassifierLogits(hf_model, interpolate_pos_encoding=interpolate)


def hf_model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The transformers model itself (train mode, as constructed), shaped by the checkpoint's config."""
    cls = hf_model_class(ckpt["architecture"])
    hf_model = cls(cls.config_class.from_dict(json.loads(ckpt["hf_config"])))
    _load_strict(hf_model, ckpt["state_dict"], ckpt["architecture"])
    return hf_model


class ImageClassifierLogits(nn.Module):
    """A transformers image classifier as `pixel_values -> logits` (like a timm model)."""

    def __init__(self, hf_model: nn.Module, *, interpolate_pos_encoding: bool = False):
        super().__init__()
        self.hf_model = hf_model
        self.interpolate_pos_encoding = interpolate_pos_encoding

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        extra = {"interpolate_pos_encoding": True} if self.interpolate_pos_encoding else {}
        return self.hf_model(pixel_values=pixel_values, **extra).logits


class SemanticLogits(nn.Module):
    """A transformers segmentation model as `pixel_values -> [B, C, H, W]` logits at the input's
    size (SegFormer's come at a quarter of it: upsampled bilinearly, as its own loss does)."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf_model = hf_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        logits = self.hf_model(pixel_values=pixel_values).logits
        return nn.functional.interpolate(logits, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)


def _pooled(features) -> torch.Tensor:
    # transformers 5 returns the projected embedding as pooler_output of a model output; older
    # versions returned the tensor itself.
    return features if isinstance(features, torch.Tensor) else features.pooler_output


def clip_image_embeddings(model: nn.Module, pixel_values: torch.Tensor, *, interpolate_pos_encoding: bool = False) -> torch.Tensor:
    extra = {"interpolate_pos_encoding": True} if interpolate_pos_encoding else {}
    features = _pooled(model.get_image_features(pixel_values=pixel_values, **extra))
    return features / features.norm(dim=-1, keepdim=True)


def clip_text_embeddings(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    features = _pooled(model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))
    return features / features.norm(dim=-1, keepdim=True)


class ZeroShotLogits(nn.Module):
    """CLIP as a classifier over the class prompts: the prompt embeddings are computed once, so
    the module (and an export of it) needs the image tower only."""

    def __init__(self, clip_model: nn.Module, prompt_input_ids: torch.Tensor, prompt_attention_mask: torch.Tensor, *, interpolate_pos_encoding: bool = False):
        super().__init__()
        self.hf_model = clip_model
        self.interpolate_pos_encoding = interpolate_pos_encoding
        with torch.no_grad():
            text = clip_text_embeddings(clip_model, prompt_input_ids, prompt_attention_mask)
        self.register_buffer("class_embeddings", text, persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        image = clip_image_embeddings(self.hf_model, pixel_values, interpolate_pos_encoding=self.interpolate_pos_encoding)
        return self.hf_model.logit_scale.exp() * image @ self.class_embeddings.T
