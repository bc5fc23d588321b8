"""Image classification and CLIP zero-shot fine-tuning with HuggingFace transformers, driven
from TypeScript.

Training runs in `transformers.Trainer`; `_EventForwarder`, a `TrainerCallback`, turns its hooks
into the shared trainer events (common/trainer_events.py). The Trainer evaluates after
`on_epoch_end`, so an epoch's `checkpoint` and `epoch` events go out from `on_evaluate`, once its
validation exists. Checkpoints are ours (`common/checkpoints.py`); the Trainer's own saving is off.

On several processes (common/distributed.py) the Trainer runs its own distributed training
(accelerate: DDP, each process a shard of every global batch, predictions gathered for the
metrics without duplicates); BATCH_SIZE is the global batch, so per_device_train_batch_size is
BATCH_SIZE / processes. Global rank 0 writes the checkpoints and sends the events.

Tasks:
- image_classification: any `AutoModelForImageClassification` architecture; the labels are
  the dataset's classes.
- zero_shot_classification: a CLIP-style model (image and text towers with projections) is
  fine-tuned so that each image's embedding is closest to the embedding of the prompt
  "a photo of a {its class}" among all class prompts (cross-entropy over the prompts, both
  towers trained); validation is zero-shot accuracy over the same prompts.

Weights: `weights` is a `save_pretrained` folder (the adapter extracts PRETRAINED_WEIGHT_URL's
zip). Without one, the architecture is built from its configuration (no download):
`SCRATCH_CONFIGS` holds the design's models; `config_overrides` (HF_CONFIG_OVERRIDES) is
deep-merged into that configuration, and with a "model_type" key selects any other
architecture (e.g. {"model_type": "deit", "hidden_size": 192, ...}). The image size is
always IMAGE_SIZE. A CLIP built from config gets a byte-level tokenizer made in code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.nn import functional as F
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from ..common import distributed
from ..common.checkpoints import (
    RunCheckpoints,
    best_after_resume,
    clip_image_embeddings,
    clip_text_embeddings,
    hf_model_from_checkpoint,
    load_for_resume,
    run_state,
)
from ..common.class_ids import ClassIds
from ..common.classification_metrics import classification_metrics
from ..common.run_settings import transformers_settings
from ..common.semantic_metrics import MaskCodec, metrics_from_confusion
from ..common.torch_runtime import TRAIN_CROP_SCALE, amp_dtype, attach_log_file, resolve_device, seed_run
from ..common.trainer_events import TrainerEvents
from ..common.validation_images import ClassifierValidation, SemanticValidation, ValidationImages, model_size_mb
from ..cpu_budget import data_loader_workers
from ..protocol import ModelCheck, ModelCheckParams, TrainAnswer, TrainParams
from ..safe_load import UnsafeArtifactError
from ..support import entry, shield_from_terminal_interrupt
from . import semantic

log = logging.getLogger("vision_trainer")

PROMPT_TEMPLATE = "a photo of a {}"
SEED = 42
LR_FINE_TUNE = 5e-5
LR_FROM_SCRATCH = 3e-4
WEIGHT_DECAY = 0.05
WARMUP_RATIO = 0.1
# What RunCheckpoints writes after every validated epoch (the Trainer's own saving is off).
CHECKPOINT_SAVING = "last.pt (weights, optimizer) every epoch, best.pt when it improves"

# The design's models, built from their published configurations (ViTConfig's and CLIPConfig's
# defaults are vit-base-patch16-224 and clip-vit-base-patch32). Names may carry their hub
# organisation (google/vit-base-patch16-224).
SCRATCH_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "vit-base-patch16-224": ("vit", {}),
    "dino-vits16": ("vit", {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536, "patch_size": 16}),
    "clip-vit-base-patch32": ("clip", {}),
    **semantic.SCRATCH_CONFIGS,
}

IMAGENET_DEFAULT = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
IMAGENET_STANDARD = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
OPENAI_CLIP = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
# The published checkpoints' image processors; other architectures get ImageNet's statistics.
NORMALISATION = {"vit-base-patch16-224": IMAGENET_STANDARD, "dino-vits16": IMAGENET_DEFAULT, "clip": OPENAI_CLIP}


# --------------------------------------------------------------------------------------------
# Configurations and weights
# --------------------------------------------------------------------------------------------


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def scratch_config(model_name: str, overrides: dict[str, Any] | None, image_size: int):
    """The configuration a model is built from when no weights are given."""
    from transformers import CONFIG_MAPPING

    overrides = dict(overrides or {})
    model_type = overrides.pop("model_type", None)
    bare = model_name.split("/")[-1]
    if model_type is None:
        if bare not in SCRATCH_CONFIGS:
            raise ValueError(
                f"MODEL_NAME={model_name} cannot be built without weights: this version builds {', '.join(SCRATCH_CONFIGS)} from their configurations. "
                'Give PRETRAINED_WEIGHT_URL (a zip of a save_pretrained folder), or HF_CONFIG_OVERRIDES with a "model_type" (e.g. {"model_type": "deit"})'
            )
        model_type, published = SCRATCH_CONFIGS[bare]
        base = CONFIG_MAPPING[model_type](**published)
    else:
        if model_type not in CONFIG_MAPPING:
            raise ValueError(f'HF_CONFIG_OVERRIDES names model_type "{model_type}", which transformers does not know')
        base = CONFIG_MAPPING[model_type]()
    config = type(base).from_dict(_deep_merge(base.to_dict(), overrides))
    vision = getattr(config, "vision_config", None) or config
    if hasattr(vision, "image_size"):
        vision.image_size = image_size
    return config


@entry
def check_model(params: ModelCheckParams) -> ModelCheck:
    """The preflight: without weights, MODEL_NAME (and HF_CONFIG_OVERRIDES) must build a configuration;
    with weights, their config.json decides, read once they are downloaded."""
    import transformers

    name = params["model_name"]
    description = f"transformers {transformers.__version__} {name}"
    if params["has_weights"]:
        return {"description": f"{description} (architecture from the weights)", "problem": None, "variable": "MODEL_NAME"}
    overrides = params["config_overrides"]
    try:
        config = scratch_config(name, overrides, params["imgsz"])
    except (ValueError, TypeError, KeyError) as exc:
        variable = "HF_CONFIG_OVERRIDES" if overrides and (overrides.get("model_type") or "HF_CONFIG_OVERRIDES" in str(exc)) else "MODEL_NAME"
        return {"description": description, "problem": str(exc).replace(f"MODEL_NAME={name} ", ""), "variable": variable}
    return {"description": f"{description} ({config.model_type}, built from its configuration)", "problem": None, "variable": "MODEL_NAME"}


def weights_folder(path: str) -> Path:
    """The save_pretrained folder inside the extracted zip: its root or its one subfolder."""
    root = Path(path)
    candidates = [root] + [d for d in sorted(root.iterdir()) if d.is_dir()] if root.is_dir() else []
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    found = ", ".join(sorted(p.name for p in root.iterdir())[:10]) if root.is_dir() else "nothing"
    raise ValueError(f"PRETRAINED_WEIGHT_URL is not a zip of a save_pretrained folder: it has no config.json (found: {found or 'an empty archive'})")


def _normalisation(model_name: str, model_type: str, folder: Path | None) -> tuple[list[float], list[float]]:
    if folder is not None and (folder / "preprocessor_config.json").is_file():
        processor = json.loads((folder / "preprocessor_config.json").read_text())
        if processor.get("image_mean") and processor.get("image_std"):
            return list(processor["image_mean"]), list(processor["image_std"])
    bare = model_name.split("/")[-1]
    if bare in NORMALISATION:
        return NORMALISATION[bare]
    return OPENAI_CLIP if model_type in ("clip", "clip_vision_model") else IMAGENET_DEFAULT


def offline_clip_tokenizer():
    """A byte-level CLIP tokenizer built in code (no vocabulary download): every byte is a token,
    no merges. Enough to tell class prompts apart; real weights bring their own tokenizer."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for ch in alphabet:
            vocab[ch + suffix] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


class ManifestDataset(torch.utils.data.Dataset):
    """One split of writeHuggingFaceManifest's output: {"image": path, "label": i} per line."""

    def __init__(self, jsonl: Path, transform):
        self.rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        with Image.open(row["image"]) as image:
            pixels = self.transform(image.convert("RGB"))
        return {"pixel_values": pixels, "labels": int(row["label"])}


def _transforms(image_size: int, mean, std, interpolation: str):
    from torchvision import transforms as T

    mode = T.InterpolationMode.BICUBIC if interpolation == "bicubic" else T.InterpolationMode.BILINEAR
    normalise = [T.ToTensor(), T.Normalize(mean, std)]
    # As transformers' run_image_classification example: random-resized crop and flip to train,
    # a plain resize (the image processors' "squash") to validate. The crop keeps at least half
    # the image (see TRAIN_CROP_SCALE).
    train = T.Compose([T.RandomResizedCrop(image_size, scale=TRAIN_CROP_SCALE, interpolation=mode), T.RandomHorizontalFlip(), *normalise])
    val = T.Compose([T.Resize((image_size, image_size), interpolation=mode), *normalise])
    return train, val


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


class _RunningMean:
    def __init__(self):
        self.total, self.count = 0.0, 0

    def add(self, value: float, n: int) -> None:
        self.total, self.count = self.total + value * n, self.count + n

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


class _HfRun:
    """Model, data and Trainer for one job, built from its params."""

    def __init__(self, params: TrainParams, worker: distributed.WorkerContext | None = None):
        import transformers

        self.params = params
        self.worker = worker
        self.task = params["task_type"]
        self.model_name = params["model_name"]
        self.class_names = [str(c) for c in params["class_names"]]
        self.class_ids = ClassIds(params["class_ids"], self.class_names)
        # images.json is written by the process that reports (the only one on a distributed run).
        self.validation_images = ValidationImages(params, self.class_ids) if worker is None or worker.reports else None
        # The epoch under validation's per-image capture (images.json, AP, speed); see compute_metrics.
        self.capture: ClassifierValidation | None = None
        self.image_size = int(params["imgsz"])
        self.epochs = int(params["epochs"])
        self.device = worker.device if worker else resolve_device(params.get("device"))
        if worker:
            # accelerate takes over the process group the Trainer finds initialised.
            distributed.init_process_group(self.device)
        self.world = worker.ranks.world_size if worker else 1
        self.reports = worker.reports if worker else True
        if self.task not in ("image_classification", "zero_shot_classification", "semantic_segmentation"):
            raise ValueError(f"the transformers trainer does not train {self.task}")
        self.checkpoints = RunCheckpoints(distributed.weights_dir(params["project"], worker))
        self.start_epoch = 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.resume_state: dict[str, Any] | None = None
        # Zero-shot: the tokenized class prompts and the tokenizer (JSON) they came from.
        self.prompts: dict[str, torch.Tensor] | None = None
        self.tokenizer_json: str | None = None

        if params.get("resume_from"):
            self._resume(params["resume_from"])
        else:
            self._build(params)
        self.architecture = type(self.model).__name__
        self.model_type = str(getattr(self.model.config, "model_type", ""))

        root = Path(params["data"])
        if self.task == "semantic_segmentation":
            codec = MaskCodec(self.class_ids.ids)
            self.train_set = semantic.SemanticManifestDataset(root / "train.jsonl", codec, self.image_size, self.mean, self.std, train=True)
            self.val_set = semantic.SemanticManifestDataset(root / "val.jsonl", codec, self.image_size, self.mean, self.std, train=False)
        else:
            train_tf, val_tf = _transforms(self.image_size, self.mean, self.std, self.interpolation)
            self.train_set = ManifestDataset(root / "train.jsonl", train_tf)
            self.val_set = ManifestDataset(root / "val.jsonl", val_tf)
        self.versions = {"torch": torch.__version__, "transformers": transformers.__version__}
        self.last_validation: dict[str, Any] | None = None

    def _build(self, params: dict[str, Any]) -> None:
        from transformers import AutoModel, AutoModelForImageClassification, AutoTokenizer

        folder = weights_folder(params["weights"]) if params.get("weights") else None
        num_labels = len(self.class_names)
        id2label = dict(enumerate(self.class_names))
        label2id = {name: i for i, name in id2label.items()}
        tokenizer = None
        if self.task == "semantic_segmentation":
            config = None if folder is not None else scratch_config(self.model_name, params.get("config_overrides"), self.image_size)
            self.model = semantic.build_model(config, folder, self.class_names)
        elif self.task == "image_classification":
            if folder is not None:
                try:
                    # trust_remote_code=False: a config.json naming its own model code is refused, not run.
                    self.model = AutoModelForImageClassification.from_pretrained(
                        folder, num_labels=num_labels, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True, trust_remote_code=False
                    )
                except UnsafeArtifactError:
                    raise
                except (ValueError, OSError, KeyError) as exc:
                    raise ValueError(
                        f"PRETRAINED_WEIGHT_URL does not hold an image classifier transformers can load: {type(exc).__name__}: {str(exc)[:400]}"
                    ) from exc
            else:
                config = scratch_config(self.model_name, params.get("config_overrides"), self.image_size)
                config.num_labels, config.id2label, config.label2id = num_labels, id2label, label2id
                try:
                    self.model = AutoModelForImageClassification.from_config(config)
                except ValueError as exc:
                    raise ValueError(
                        f"{config.model_type} models are not image classifiers (AutoModelForImageClassification has no class for them): {exc}"
                    ) from exc
        else:
            if folder is not None:
                try:
                    self.model = AutoModel.from_pretrained(folder, trust_remote_code=False)
                    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
                except UnsafeArtifactError:
                    raise
                except (ValueError, OSError, KeyError) as exc:
                    raise ValueError(
                        f"PRETRAINED_WEIGHT_URL does not hold a CLIP model and tokenizer transformers can load: {type(exc).__name__}: {str(exc)[:400]}"
                    ) from exc
            else:
                config = scratch_config(self.model_name, params.get("config_overrides"), self.image_size)
                tokenizer = offline_clip_tokenizer()
                text = getattr(config, "text_config", None)
                if text is not None:
                    # The code-made tokenizer numbers its tokens itself; the text tower must agree.
                    text.vocab_size = max(text.vocab_size, len(tokenizer))
                    text.bos_token_id, text.eos_token_id, text.pad_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
                self.model = AutoModel.from_config(config)
            if not all(hasattr(self.model, a) for a in ("get_image_features", "get_text_features", "logit_scale")):
                raise ValueError(f"zero_shot_classification needs a CLIP-style model with image and text towers; {type(self.model).__name__} is not one")
            max_length = getattr(getattr(self.model.config, "text_config", None), "max_position_embeddings", 77)
            encoded = tokenizer(
                [PROMPT_TEMPLATE.format(c) for c in self.class_names], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            self.prompts = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
            self.tokenizer_json = tokenizer.backend_tokenizer.to_str()

        config = self.model.config
        vision = getattr(config, "vision_config", None) or config
        model_type = str(getattr(config, "model_type", ""))
        # Pretrained ViTs keep their position embeddings and interpolate them to IMAGE_SIZE.
        self.interpolate_pos_encoding = bool(getattr(vision, "image_size", self.image_size) != self.image_size)
        self.mean, self.std = _normalisation(self.model_name, model_type, folder)
        self.interpolation = "bicubic" if model_type == "clip" else "bilinear"
        self.lr = float(params["lr"]) if params.get("lr") is not None else (LR_FINE_TUNE if folder is not None else LR_FROM_SCRATCH)

    def _resume(self, path: str) -> None:
        """Everything about the model comes from the checkpoint (its config, normalisation,
        prompts), so a resumed run continues exactly the model it stopped."""
        ckpt = load_for_resume(
            path,
            framework="huggingface",
            model_name=self.model_name,
            class_names=self.class_names,
            class_ids=self.class_ids.ids,
            task_type=self.task,
            image_size=self.image_size,
        )
        self.model = hf_model_from_checkpoint(ckpt)
        self.start_epoch = int(ckpt["epoch"])
        if self.start_epoch >= self.epochs:
            raise ValueError(f"RESUME_CHECKPOINT_PATH already has {self.start_epoch} epochs done, EPOCHS={self.epochs}: nothing is left to train")
        self.resume_state = ckpt["training_state"]
        self.mean, self.std, self.interpolation = list(ckpt["mean"]), list(ckpt["std"]), ckpt["interpolation"]
        self.interpolate_pos_encoding = bool(ckpt.get("interpolate_pos_encoding", False))
        if self.task == "zero_shot_classification":
            self.prompts = {"input_ids": torch.tensor(ckpt["prompt_input_ids"]), "attention_mask": torch.tensor(ckpt["prompt_attention_mask"])}
            self.tokenizer_json = ckpt.get("hf_tokenizer_json")
        # The optimizer state restores the learning rate the schedule had reached.
        self.lr = float(self.params["lr"]) if self.params.get("lr") is not None else float(self.resume_state["optimizer"]["param_groups"][0]["initial_lr"])
        self.best_metric, self.best_epoch = best_after_resume(
            ckpt,
            path,
            self.params.get("best_from"),
            self.checkpoints,
            framework="huggingface",
            model_name=self.model_name,
            class_names=self.class_names,
            class_ids=self.class_ids.ids,
            task_type=self.task,
            image_size=self.image_size,
        )
        log.info("resuming %s from epoch %d (best %s at epoch %s)", self.model_name, self.start_epoch, self.best_metric, self.best_epoch)

    # ---- what the Trainer calls ----

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        labels = None if self.task == "semantic_segmentation" else torch.tensor([r["labels"] for r in rows])
        batch: dict[str, Any] = {"pixel_values": torch.stack([r["pixel_values"] for r in rows]), "labels": labels}
        if self.task == "semantic_segmentation":
            batch["labels"] = torch.stack([r["labels"] for r in rows])
        if self.interpolate_pos_encoding and self.task == "image_classification":
            batch["interpolate_pos_encoding"] = True
        return batch

    def zero_shot_logits(self, model, pixel_values: torch.Tensor) -> torch.Tensor:
        device = pixel_values.device
        image = clip_image_embeddings(model, pixel_values, interpolate_pos_encoding=self.interpolate_pos_encoding)
        text = clip_text_embeddings(model, self.prompts["input_ids"].to(device), self.prompts["attention_mask"].to(device))
        return model.logit_scale.exp() * image @ text.T

    def compute_metrics(self, eval_pred) -> dict[str, float]:
        """The Trainer hands over the whole split's logits in dataset order (evaluation never
        shuffles): row i is val.jsonl's image i."""
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        if self.task == "semantic_segmentation":
            return self._semantic_metrics(logits, eval_pred.label_ids)
        capture = self.capture or ClassifierValidation(None, 0)
        self.capture = None
        try:
            capture.add([row["image"] for row in self.val_set.rows], logits, eval_pred.label_ids)
            self.last_validation = classification_metrics(torch.as_tensor(logits), torch.as_tensor(eval_pred.label_ids), self.class_names)
            self.last_validation["image_results_file"] = capture.finish(self.last_validation, len(self.class_names))
        except BaseException:
            capture.discard()
            raise
        return {k: v for k, v in self.last_validation["metrics"].items() if v is not None}

    def new_capture(self, epoch: int):
        if self.task == "semantic_segmentation":
            return SemanticValidation(self.validation_images, epoch, len(self.class_names))
        return ClassifierValidation(self.validation_images, epoch)

    def _semantic_metrics(self, predicted, labels) -> dict[str, float]:
        """`predicted`: the class maps preprocess_logits_for_metrics made, [N, S, S]."""
        capture = self.capture or SemanticValidation(None, 0, len(self.class_names))
        self.capture = None
        try:
            capture.add([row["image"] for row in self.val_set.rows], predicted, labels)
            self.last_validation = metrics_from_confusion(capture.matrix, self.class_names)
            self.last_validation["image_results_file"] = capture.finish(self.last_validation, len(self.class_names))
        except BaseException:
            capture.discard()
            raise
        return {k: v for k, v in self.last_validation["metrics"].items() if v is not None}

    # ---- checkpoints ----

    def metadata(self, *, epoch: int, epoch_complete: bool, metrics: dict[str, Any]) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "framework": "huggingface",
            "model_name": self.model_name,
            "architecture": self.architecture,
            "task_type": self.task,
            "class_names": self.class_names,
            "class_ids": self.class_ids.ids,
            "image_size": self.image_size,
            "input_channels": 3,
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
            "resize_mode": "squash",
            "crop_pct": 1.0,
            "interpolate_pos_encoding": self.interpolate_pos_encoding,
            "hf_config": self.model.config.to_json_string(use_diff=False),
            **run_state(self.params, epoch=epoch, epoch_complete=epoch_complete, metrics=metrics, best_metric=self.best_metric, best_epoch=self.best_epoch),
            "versions": self.versions,
        }
        if self.prompts is not None:
            meta.update(
                prompt_template=PROMPT_TEMPLATE,
                prompt_input_ids=self.prompts["input_ids"].tolist(),
                prompt_attention_mask=self.prompts["attention_mask"].tolist(),
                hf_tokenizer_json=self.tokenizer_json,
            )
        return meta

    def save(self, *, epoch: int, epoch_complete: bool, metrics: dict[str, Any], is_best: bool, optimizer) -> None:
        if not self.reports:  # the model is the same on every rank: global rank 0 writes it
            return
        state = {"optimizer": optimizer.state_dict()}
        self.checkpoints.save(
            self.metadata(epoch=epoch, epoch_complete=epoch_complete, metrics=metrics), self.model.state_dict(), is_best=is_best, training_state=state
        )

    # ---- training ----

    def training_arguments(self):
        """The Trainer's settings: one evaluation per epoch, no saving or logging of its own (the
        events and our checkpoints do that), mixed precision where the device has it. TRAINER_ARGS
        (resolved by trainer_args.py; the keys the contract owns are refused there) override the
        defaults here."""
        from transformers import TrainingArguments

        dtype = amp_dtype(self.device)
        seed = self.params.get("seed")
        per_device = int(self.params["batch"]) // self.world
        settings: dict[str, Any] = {
            "weight_decay": WEIGHT_DECAY,
            "lr_scheduler_type": "cosine",
            "warmup_steps": WARMUP_RATIO,
            "bf16": dtype == torch.bfloat16,
            "fp16": dtype == torch.float16,
            **(self.params.get("trainer_args") or {}),
        }
        return TrainingArguments(
            output_dir=str(Path(self.params["project"]) / "hf"),
            num_train_epochs=self.epochs - self.start_epoch,
            per_device_train_batch_size=per_device,
            per_device_eval_batch_size=per_device,
            learning_rate=self.lr,
            eval_strategy="epoch",
            save_strategy="no",
            logging_strategy="no",  # the events carry the losses; no per-step prints
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            label_names=["labels"],  # CLIPModel.forward has no `labels`: without this the Trainer would not know them
            dataloader_num_workers=data_loader_workers(self.params.get("workers") or 0),
            use_cpu=self.device.type == "cpu",
            ddp_backend=("nccl" if self.device.type == "cuda" else "gloo") if self.worker else None,
            seed=SEED if seed is None else int(seed),
            # Not transformers' full_determinism: it makes an op without a deterministic CUDA kernel
            # raise; seed_run (called before the Trainer exists) makes it warn, as for the other trainers.
            full_determinism=False,
            **settings,
        )

    def single_image_last_batch(self) -> bool:
        """Segmentation heads with batch norm over pooled features (UperNet's pyramid pooling at
        1 x 1) cannot train on a batch of one image: a last training batch of one is dropped (a
        different image each epoch, the order being shuffled). Validation keeps every image."""
        per_device = int(self.params["batch"]) // self.world
        if self.task != "semantic_segmentation" or per_device < 2:
            return False
        images = len(self.train_set) // self.world
        return images > per_device and images % per_device == 1

    def fit(self, emit) -> dict[str, Any]:
        from transformers import Trainer, get_scheduler

        run = self
        epoch_loss = _RunningMean()

        class ReportingTrainer(Trainer):
            """Records every step's loss and learning rate for the batch and epoch events (the
            Trainer itself only logs every N steps)."""

            last_lr: float | None = None

            def get_train_dataloader(self):
                if not run.single_image_last_batch() or self.args.dataloader_drop_last:
                    return super().get_train_dataloader()
                # transformers' flag drops evaluation's last batch too: set for the training loader only.
                self.args.dataloader_drop_last = True
                try:
                    return super().get_train_dataloader()
                finally:
                    self.args.dataloader_drop_last = False

            def training_step(self, model, inputs, num_items_in_batch=None):
                self.last_lr = float(self.optimizer.param_groups[0]["lr"])
                loss = super().training_step(model, inputs, num_items_in_batch)
                epoch_loss.add(float(loss), len(inputs["labels"]))
                return loss

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                # Evaluation's forward passes are timed for inference_speed_fps.
                timer = run.capture.timed() if run.capture is not None and not model.training else contextlib.nullcontext()
                with timer:
                    if run.task != "zero_shot_classification":
                        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
                    logits = run.zero_shot_logits(model, inputs["pixel_values"])
                loss = F.cross_entropy(logits, inputs["labels"])
                return (loss, {"logits": logits}) if return_outputs else loss

            def evaluate(self, *args, **kwargs):
                run.capture = run.new_capture(forwarder.epoch)
                try:
                    return super().evaluate(*args, **kwargs)
                finally:
                    if run.capture is not None:  # compute_metrics did not take it
                        run.capture.discard()
                        run.capture = None

        args = self.training_arguments()
        trainer = ReportingTrainer(
            model=self.model,
            args=args,
            train_dataset=self.train_set,
            eval_dataset=self.val_set,
            data_collator=self.collate,
            compute_metrics=self.compute_metrics,
            # A segmentation model's logits are small maps: only the class map (at the labels'
            # size) is kept across the val split, not C floats per pixel.
            preprocess_logits_for_metrics=(lambda logits, labels: semantic.class_map(logits, tuple(labels.shape[-2:])))
            if self.task == "semantic_segmentation"
            else None,
        )
        # The schedule spans the whole job (all EPOCHS) and is a function of the steps done, so a
        # resumed run is positioned on the same curve at the start of its first epoch (after a
        # mid-epoch stop that epoch runs again) rather than restoring a scheduler state.
        steps_per_epoch = len(trainer.get_train_dataloader())
        total_steps = steps_per_epoch * self.epochs
        trainer.create_optimizer()
        steps_done = self.start_epoch * steps_per_epoch
        if self.resume_state is not None:
            trainer.optimizer.load_state_dict(self.resume_state["optimizer"])
        scheduler_kwargs = dict(args.lr_scheduler_kwargs or {}) if isinstance(args.lr_scheduler_kwargs, dict) else {}
        if steps_done:
            scheduler_kwargs["last_epoch"] = steps_done - 1
        trainer.lr_scheduler = get_scheduler(
            args.lr_scheduler_type,
            optimizer=trainer.optimizer,
            num_warmup_steps=args.get_warmup_steps(total_steps),
            num_training_steps=total_steps,
            scheduler_specific_kwargs=scheduler_kwargs or None,
        )

        trainer.remove_callback(PrinterCallback)  # the events report; no metric dicts on stdout
        events = distributed.trainer_events(
            emit,
            self.worker,
            primary_metric=self.params["primary_metric"],
            epochs=self.epochs,
            class_ids=self.class_ids,
            best_metric=self.best_metric,
            best_epoch=self.best_epoch,
            tensorboard_dir=self.params.get("tensorboard_dir"),
        )
        forwarder = _EventForwarder(self, events, epoch_loss, trainer, steps_per_epoch)
        trainer.add_callback(forwarder)
        trainer.train()
        return {
            "best_epoch": events.best_epoch,
            "best_path": self.checkpoints.best_path,
            "last_path": self.checkpoints.last_path,
            "stopped_early": forwarder.epoch < self.epochs or forwarder.stopped_mid_epoch,
        }


class _EventForwarder(TrainerCallback):
    """Trainer hooks -> trainer events (see the module docstring for the order)."""

    def __init__(self, run: _HfRun, events: TrainerEvents, epoch_loss: _RunningMean, trainer, steps_per_epoch: int):
        self.run = run
        self.events = events
        self.epoch_loss = epoch_loss
        self.trainer = trainer
        self.steps_per_epoch = steps_per_epoch
        self.epoch = run.start_epoch
        self.batch = 0
        self.epoch_started = 0.0
        self.stopped_mid_epoch = False

    def on_train_begin(self, args, state, control, **kwargs):
        # The device the Trainer placed the model on (it picks the first visible GPU itself).
        settings = transformers_settings(
            training_args=args,
            model=self.run.model,
            train_dataloader=kwargs["train_dataloader"],
            eval_dataloader=self.trainer.get_eval_dataloader(),
            train_transform=str(self.run.train_set.transform),
            val_transform=str(self.run.val_set.transform),
            saving=CHECKPOINT_SAVING,
        )
        self.events.start(
            start_epoch=self.run.start_epoch,
            batches_per_epoch=self.steps_per_epoch,
            device=str(args.device),
            save_dir=str(self.run.checkpoints.dir.parent),
            best_path=self.run.checkpoints.best_path,
            settings=settings,
        )
        if self.events.stop_requested:
            control.should_training_stop = True

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch += 1
        self.batch = 0
        self.epoch_loss.reset()
        self.epoch_started = time.perf_counter()

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.batch += 1
        self.events.batch(epoch=self.epoch, batch=self.batch, batches=self.steps_per_epoch, losses={"loss": self.epoch_loss.mean})
        if self.events.stop_requested:
            control.should_training_stop = True
            if self.batch < self.steps_per_epoch:
                # Keep the progress, but call only the finished epochs done: a resume runs this
                # epoch again (as timm_train and ultralytics do).
                self.stopped_mid_epoch = True
                self.run.save(epoch=self.epoch - 1, epoch_complete=False, metrics={}, is_best=False, optimizer=optimizer)
                self.events.checkpoint(
                    epoch=self.epoch, last_path=str(self.run.checkpoints.last), best_path=self.run.checkpoints.best_path, is_best=False, last_replaced=True
                )
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stopped_mid_epoch:
            control.should_evaluate = False  # a partial epoch is not validated or reported
        return control

    def on_evaluate(self, args, state, control, metrics=None, optimizer=None, **kwargs):
        run, events = self.run, self.events
        details = run.last_validation
        if self.stopped_mid_epoch or details is None:
            return control
        metrics = metrics or {}
        if metrics.get("eval_loss") is not None:
            details["metrics"]["loss"] = float(metrics["eval_loss"])
        value = details["metrics"].get(run.params["primary_metric"])
        epoch_loss = self.epoch_loss.mean
        if run.worker:  # every rank is here (the Trainer evaluates on all of them): the epoch's loss over all ranks
            total, count = distributed.sum_across_ranks([self.epoch_loss.total, float(self.epoch_loss.count)], run.device)
            epoch_loss = total / count if count else None
        is_best = events.improves(value)
        if is_best:
            events.record_best(self.epoch, value)
            run.best_metric, run.best_epoch = events.best_metric, events.best_epoch
        run.save(epoch=self.epoch, epoch_complete=True, metrics=details["metrics"], is_best=is_best, optimizer=optimizer)
        events.checkpoint(epoch=self.epoch, last_path=str(run.checkpoints.last), best_path=run.checkpoints.best_path, is_best=is_best, last_replaced=True)
        events.epoch(
            epoch=self.epoch,
            losses={"loss": epoch_loss},
            learning_rate=self.trainer.last_lr,
            validation=events.validation(
                details,
                num_images=len(run.val_set),
                seconds=float(metrics.get("eval_runtime") or 0.0),
                image_results_file=details.get("image_results_file"),
                model_size_mb=model_size_mb(run.model),
            ),
            is_best=is_best,
            epoch_time_seconds=time.perf_counter() - self.epoch_started,
        )
        if run.reports:
            log.info("epoch %d/%d: loss %s, val %s %s%s", self.epoch, run.epochs, epoch_loss, run.params["primary_metric"], value, " (best)" if is_best else "")
        run.last_validation = None
        events.agree()  # a "stop" answered to rank 0's epoch events reaches every rank here
        if events.stop_requested:
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.events.end(best_path=self.run.checkpoints.best_path, last_path=self.run.checkpoints.last_path)


@entry
def train(params: TrainParams, emit: Callable) -> TrainAnswer:
    """Fine-tunes params["model_name"] for image_classification or zero_shot_classification on
    the manifest folder params["data"] (train.jsonl, val.jsonl); weights is a save_pretrained
    folder, config_overrides is HF_CONFIG_OVERRIDES."""
    shield_from_terminal_interrupt()
    attach_log_file(params.get("log_file"), ("vision_trainer", "transformers"))
    if params["distributed"]:
        return distributed.launch("vision_trainer.huggingface.train:train_worker", params)
    seed_run(params.get("seed"), default=SEED)
    return _HfRun(params).fit(emit)


def train_worker(params: TrainParams, worker: distributed.WorkerContext) -> TrainAnswer:
    """One process of a distributed run (started by distributed.launch)."""
    attach_log_file(params.get("log_file") if worker.reports else None, ("vision_trainer", "transformers"))
    seed_run(params.get("seed"), default=SEED)
    return _HfRun(params, worker).fit(None)
