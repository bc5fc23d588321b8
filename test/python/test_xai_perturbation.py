"""LIME and SHAP heatmaps (common/xai_perturbation.py) on a model whose answer is known."""

from __future__ import annotations

import numpy as np
import torch
from vision_trainer.common.xai import CamInput, summarize
from vision_trainer.common.xai_perturbation import PerturbationExplainer, superpixels


class LeftHalf(torch.nn.Module):
    """Class 1's score is the mean of the left half of the image; class 0's the right half's."""

    def forward(self, x):
        w = x.shape[-1] // 2
        return torch.stack([x[..., w:].mean(dim=(1, 2, 3)), x[..., :w].mean(dim=(1, 2, 3))], dim=1)


def test_superpixels_fall_back_to_a_grid_when_slic_cannot_split_the_image():
    flat = np.full((32, 32, 3), 128, dtype=np.uint8)
    labels = superpixels(flat)
    assert labels.shape == (32, 32)
    assert labels.max() + 1 >= 4


def test_lime_and_shap_put_the_evidence_where_the_class_score_comes_from():
    rgb = np.full((32, 32, 3), 200, dtype=np.uint8)
    rgb[:, 16:] = 40  # two colours: SLIC splits along the middle
    tensor = torch.ones(1, 3, 32, 32)
    cam_input = CamInput(tensor, rgb, lambda heat: heat)
    for method in ("lime", "shap"):
        heat = PerturbationExplainer(LeftHalf(), method, 64).heatmap(cam_input, 1)
        assert heat.shape == (32, 32)
        assert heat[:, :16].mean() > heat[:, 16:].mean(), method
        stats = summarize(heat)
        assert set(stats) >= {"max_activation", "mean_activation", "top_regions"}


def _tiny_rollout(hf_model) -> np.ndarray:
    from vision_trainer.common.xai_perturbation import AttentionRollout

    rgb = np.zeros((48, 40, 3), dtype=np.uint8)
    tensor = torch.randn(1, 3, 32, 32)
    import cv2

    cam_input = CamInput(tensor, rgb, lambda heat: cv2.resize(heat, (40, 48)))
    return AttentionRollout(hf_model.eval()).heatmap(cam_input, 0)


def test_attention_rollout_covers_dino_v2_with_registers_and_clip_vision_towers():
    """ViT (and DINO v1, a ViT) is tested through the CLI; DINOv2 with registers (register tokens
    between the class token and the patches) and CLIP (the vision tower of a CLIPModel) here, on
    tiny random configurations."""
    from transformers import CLIPConfig, CLIPModel, Dinov2WithRegistersConfig, Dinov2WithRegistersForImageClassification

    tiny = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32, "patch_size": 8, "image_size": 32}
    models = {
        "dinov2-registers": Dinov2WithRegistersForImageClassification(Dinov2WithRegistersConfig(**tiny, num_register_tokens=4, num_labels=3)),
        "clip": CLIPModel(
            CLIPConfig(
                vision_config=tiny, text_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}, projection_dim=8
            )
        ),
    }
    for name, model in models.items():
        heat = _tiny_rollout(model)
        assert heat.shape == (48, 40), name
        assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0, name
