"""Semantic segmentation's masks and metrics (common/semantic_metrics.py), on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from vision_trainer.common.class_ids import ClassIds
from vision_trainer.common.semantic_metrics import IGNORE_INDEX, MaskCodec, confusion, image_summary, metrics_from_confusion, read_mask


def test_codec_maps_dataset_ids_to_indices_and_ignores_other_values():
    codec = MaskCodec([0, 11, 5])
    mask = np.array([[0, 11, 5], [255, 7, 300]])
    assert codec.to_indices(mask).tolist() == [[0, 1, 2], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    assert codec.to_ids(np.array([[2, 1, 0]])).tolist() == [[5, 11, 0]]


def test_metrics_are_mmsegmentations_over_labelled_pixels():
    target = np.array([[0, 0, 1, 1], [2, 2, IGNORE_INDEX, IGNORE_INDEX]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    matrix = confusion(pred, target, 3)
    assert matrix.sum() == 6  # the two ignored pixels count nowhere
    out = metrics_from_confusion(matrix, ["a", "b", "c"])
    rows = out["per_class_metrics"]
    # a: tp 1, fp 1, fn 1 -> 1/3; b: tp 2, fp 1 -> 2/3; c: tp 1, fn 1 -> 1/2
    assert [r["iou"] for r in rows] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert out["metrics"]["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert out["metrics"]["pixel_accuracy"] == pytest.approx(4 / 6)
    assert [r["support"] for r in rows] == [2, 2, 2]


def test_a_class_absent_from_truth_and_prediction_has_no_iou_and_does_not_count():
    out = metrics_from_confusion(confusion(np.zeros((2, 2)), np.zeros((2, 2)), 2), ["a", "b"])
    assert out["per_class_metrics"][1]["iou"] is None
    assert out["metrics"]["mIoU"] == 1.0


def test_image_summary_speaks_dataset_ids_in_ascending_order():
    ids = ClassIds([7, 3], ["cat", "dog"])
    summary = image_summary(np.array([[0, 0, 1, 1]]), np.array([[0, 0, 0, 1]]), ids)
    assert [c["class_id"] for c in summary["predictions"]["classes"]] == [3, 7]
    assert summary["ground_truth"]["classes"] == [
        {"class_id": 3, "class_name": "dog", "pixel_fraction": 0.25},
        {"class_id": 7, "class_name": "cat", "pixel_fraction": 0.75},
    ]
    assert summary["metrics"]["pixel_accuracy"] == 0.75


def test_read_mask_takes_palette_values_not_colours_and_refuses_rgb(tmp_path):
    indexed = Image.fromarray(np.array([[0, 11], [5, 255]], dtype=np.uint8), mode="P")
    indexed.putpalette([255, 0, 0] * 256)
    indexed.save(tmp_path / "m.png")
    assert read_mask(str(tmp_path / "m.png")).tolist() == [[0, 11], [5, 255]]
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="indexed"):
        read_mask(str(tmp_path / "rgb.png"))


def test_upernet_on_swin_and_dpt_build_from_their_configurations_and_train_a_step():
    """HF_CONFIG_OVERRIDES with a "model_type" builds any AutoModelForSemanticSegmentation: UperNet
    on a ConvNeXt backbone trains through the CLI (test/integration/semantic-segmentation.test.ts);
    UperNet on a Swin backbone and DPT here, as the trainer builds them (scratch_config, build_model),
    one step on the ignore-index loss at the job's 32 x 32."""
    import torch
    from vision_trainer.huggingface.semantic import build_model, class_map
    from vision_trainer.huggingface.train import scratch_config

    stages = ["stage1", "stage2", "stage3", "stage4"]
    swin = {"model_type": "swin", "embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 2, "patch_size": 2, "out_features": stages}
    overrides = {
        "upernet-swin": {
            "model_type": "upernet",
            "backbone_config": swin,
            "hidden_size": 16,
            "auxiliary_in_channels": 32,
            "auxiliary_channels": 8,
            "pool_scales": [1, 2],
        },
        "dpt": {
            "model_type": "dpt",
            "hidden_size": 16,
            "num_hidden_layers": 4,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "patch_size": 8,
            "backbone_out_indices": [0, 1, 2, 3],
            "neck_hidden_sizes": [8, 16, 16, 16],
            "fusion_hidden_size": 16,
            "reassemble_factors": [4, 2, 1, 0.5],
        },
    }
    labels = torch.randint(0, 3, (2, 32, 32))
    labels[:, :4] = IGNORE_INDEX
    for name, override in overrides.items():
        model = build_model(scratch_config(f"{name}-tiny", override, 32), None, ["background", "square", "ellipse"]).train()
        out = model(pixel_values=torch.randn(2, 3, 32, 32), labels=labels)
        out.loss.backward()
        assert torch.isfinite(out.loss), name
        assert class_map(out.logits.detach(), (32, 32)).shape == (2, 32, 32), name
