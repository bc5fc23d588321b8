"""Fixtures for the YOLO-World test (world.test.ts), one subcommand each; each prints one JSON line.

text-encoder OUT_DIR    a tiny randomly initialised transformers CLIP (512-wide projection, as
                        YOLO-World's head takes) with the code-made byte-level tokenizer, saved
                        with save_pretrained: what TEXT_ENCODER_WEIGHT_URL's zip holds
release OUT             a YOLO-World v2 release file as ultralytics publishes yolov8s-worldv2.pt, at
                        the n scale, randomly initialised: a pickled WorldModel (80 COCO prompts'
                        embeddings, no text encoder) written by ultralytics' own save path
                        (Model.save, then strip_optimizer as at the end of a training run)
embed CHECKPOINT FOLDER the largest difference between the checkpoint's class embeddings
                        (txt_feats) and the encoder's embeddings of its class names
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

from vision_trainer.huggingface.train import offline_clip_tokenizer

TINY_TEXT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 32}


def text_encoder(out: str) -> dict:
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    tokenizer = offline_clip_tokenizer()
    text = {
        **TINY_TEXT,
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "patch_size": 16, "image_size": 32}
    # A whole CLIPModel, as openai/clip-vit-base-patch32's folder holds: the job loads its text tower.
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=512))
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {"folder": out, "files": sorted(p.name for p in Path(out).iterdir())}


def release(out: str) -> dict:
    import torch
    from ultralytics import YOLOWorld
    from ultralytics.utils import ROOT, YAML
    from ultralytics.utils.torch_utils import strip_optimizer
    from vision_trainer.safe_load import pickle_globals

    torch.manual_seed(0)
    model = YOLOWorld("yolov8n-worldv2.yaml")  # 80 classes, as the release
    model.model.names = YAML.load(ROOT / "cfg/datasets/coco.yaml")["names"]  # COCO's names, as the release
    feats = torch.randn(1, len(model.model.names), 512)
    model.model.txt_feats = feats / feats.norm(dim=-1, keepdim=True)
    model.save(out)
    strip_optimizer(out)
    return {"path": out, "classes": len(model.model.names), "globals": sorted(pickle_globals(out))}


def embed(checkpoint: str, folder: str) -> dict:
    import torch
    from ultralytics.nn.tasks import torch_safe_load
    from vision_trainer.ultralytics.world import ClipTextEncoder

    ckpt, _ = torch_safe_load(checkpoint)
    model = (ckpt.get("ema") or ckpt["model"]).float()
    names = [model.names[i] for i in sorted(model.names)]
    enc = ClipTextEncoder(folder, torch.device("cpu"))
    ids, mask = enc.tokenize(names)
    expected = enc.encode_text(ids, mask)
    stored = model.txt_feats.reshape(-1, expected.shape[-1]).float()
    return {"names": names, "shape": list(model.txt_feats.shape), "max_abs_diff": float((stored - expected).abs().max())}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    result = {"text-encoder": text_encoder, "release": release, "embed": embed}[command](*args)
    # vision_trainer.support sends sys.stdout to stderr (the job's logs own stdout): answer on the real one.
    sys.__stdout__.write(json.dumps(result) + "\n")
