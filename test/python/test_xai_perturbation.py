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
