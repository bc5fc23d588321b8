"""SAM 2's pure parts: mask IoU on masks with a known answer, the evaluator's tables, the outlines
results.json carries, and what a weights file is recognised as (without building the model)."""

import numpy as np
import pytest
import torch
from vision_trainer.ultralytics.sam import PromptedMaskEvaluator, Sam2WeightsError, mask_iou, outlines, read_state, variant_of


def square(x1: int, y1: int, x2: int, y2: int) -> list[list[float]]:
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def box_mask(x1: int, y1: int, x2: int, y2: int, w: int = 40, h: int = 30) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def test_mask_iou_known_values():
    a = box_mask(0, 0, 9, 9)  # 100 px
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, box_mask(5, 0, 14, 9)) == pytest.approx(50 / 150)
    assert mask_iou(a, box_mask(20, 20, 29, 29)) == 0.0
    assert mask_iou(np.zeros((4, 4)), np.zeros((4, 4))) is None


def test_evaluator_per_object_per_class_and_matrix():
    # Two classes; image 1: a perfect mask (class 0, score 0.9) and one covering 66 of the
    # object's 121 pixels (class 1, IoU 0.545); image 2: an empty mask for a class-0 object, the
    # one SAM scored highest (0.95): a miss ranked first.
    ev = PromptedMaskEvaluator({0: "cat", 1: "dog"})
    truth = {"classes": [0, 1], "segmentations": [square(0, 0, 10, 10), square(20, 0, 30, 10)]}
    predicted = np.stack([box_mask(0, 0, 10, 10), box_mask(20, 0, 25, 10)])
    one = ev.add("a", 40, 30, truth, {"masks": predicted, "scores": np.array([0.9, 0.8])})
    assert [o["iou"] for o in one["objects"]] == [pytest.approx(1.0), pytest.approx(66 / 121)]
    assert one["mask_iou"] == pytest.approx((1 + 66 / 121) / 2)
    empty = {"masks": np.zeros((1, 30, 40), bool), "scores": np.array([0.95])}
    two = ev.add("b", 40, 30, {"classes": [0], "segmentations": [square(5, 5, 15, 15)]}, empty)
    assert two == {"mask_iou": 0.0, "objects": [{"ground_truth": 0, "class_id": 0, "iou": 0.0}]}
    out = ev.finish()
    assert out["images_evaluated"] == 2
    cat, dog = out["per_class_metrics"]
    assert cat["support"] == 2 and cat["iou"] == pytest.approx(0.5) and cat["recall"] == 0.5
    # cat ranked by score: the miss (0.95) before the hit (0.9): precision 0 then 1/2 up to recall 1/2.
    assert cat["ap"] == pytest.approx(0.25, abs=0.01)
    assert dog["iou"] == pytest.approx(66 / 121) and dog["ap"] == pytest.approx(1.0, abs=0.01)
    assert dog["ap50_95"] == pytest.approx(0.1, abs=0.01)  # IoU 0.545 passes only the 0.5 threshold
    m = out["overall_metrics"]
    assert m["mask_iou"] == pytest.approx((1 + 66 / 121 + 0) / 3)
    assert m["mIoU"] == pytest.approx((0.5 + 66 / 121) / 2)
    assert m["precision"] == m["recall"] == m["mask_recall50"] == pytest.approx(2 / 3)
    assert m["mask_recall75"] == pytest.approx(1 / 3)
    assert m["mAP50"] == pytest.approx((0.25 + 1.0) / 2, abs=0.01)
    # Rows are true classes; a mask under IoU 0.5 counts in the last (background) column.
    assert out["confusion_matrix"] == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]
    assert out["confusion_matrix_labels"] == ["cat", "dog", "background"]


def test_objects_without_outline_are_not_scored():
    ev = PromptedMaskEvaluator({0: "cat"})
    got = ev.add("a", 20, 20, {"classes": [0], "segmentations": [[]]}, {"masks": np.ones((1, 20, 20), bool), "scores": np.array([0.5])})
    assert got == {"mask_iou": None, "objects": []}
    assert ev.finish()["overall_metrics"]["mask_iou"] is None


def test_outlines_are_flat_polygons():
    polys = outlines(box_mask(2, 3, 12, 9))
    assert len(polys) == 1 and len(polys[0]) >= 8 and len(polys[0]) % 2 == 0
    xs, ys = polys[0][0::2], polys[0][1::2]
    assert (min(xs), min(ys), max(xs), max(ys)) == (2, 3, 12, 9)
    assert outlines(np.zeros((5, 5), bool)) == []


def fake_state(blocks: int) -> dict:
    state = {f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(blocks)}
    state["sam_mask_decoder.iou_token.weight"] = torch.zeros(1)
    return state


def test_weights_are_recognised_by_their_keys(tmp_path):
    nested, flat, other = tmp_path / "sam2_t.pt", tmp_path / "flat.pt", tmp_path / "other.pt"
    torch.save({"model": fake_state(12)}, nested)
    torch.save(fake_state(16), flat)
    torch.save({"model": {"backbone.weight": torch.zeros(1)}}, other)
    assert variant_of(read_state(str(nested)))[0] == "sam2_t"
    assert variant_of(read_state(str(flat)))[0] == "sam2_s"
    assert read_state(str(other)) is None
    (tmp_path / "text.pt").write_text("not a checkpoint")
    assert read_state(str(tmp_path / "text.pt")) is None


def test_other_variants_are_refused_by_name():
    with pytest.raises(Sam2WeightsError, match="sam2_b"):
        variant_of(fake_state(24))
    with pytest.raises(Sam2WeightsError, match=r"SAM 2\.1"):
        variant_of({**fake_state(12), "no_obj_embed_spatial": torch.zeros(1)})
