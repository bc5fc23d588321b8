"""SAM 2's pure parts: mask IoU on masks with a known answer, the evaluator's tables, the outlines
results.json carries, and what a weights file is recognised as; then the bigger builds (b, l and
SAM 2.1), which cost no CLI run: their structure, and one release-format file of sam2.1_b read
back through the weights_only loading and answering a box prompt. The CLI tests run sam2_t and
sam2.1_t (test/integration/infer-cli.test.ts)."""

import numpy as np
import pytest
import torch
from vision_trainer.ultralytics.sam import (
    MODEL_NAMES,
    PromptedMaskEvaluator,
    Sam2Backend,
    Sam2WeightsError,
    build,
    mask_iou,
    outlines,
    read_state,
    variant_of,
)


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
    assert variant_of(read_state(str(nested))) == "sam2_t"
    assert variant_of(read_state(str(flat))) == "sam2_s"
    assert read_state(str(other)) is None
    (tmp_path / "text.pt").write_text("not a checkpoint")
    assert read_state(str(tmp_path / "text.pt")) is None


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_sam_layout_with_a_payload_is_not_loaded(tmp_path):
    # The release's layout plus one pickled callable: refused by the guarded load (so not SAM weights
    # to the framework sniff; the job's loaders then refuse it naming the global), and nothing runs.
    from vision_trainer.safe_load import UnsafeArtifactError

    marker, path = tmp_path / "payload-ran", tmp_path / "sam2_t.pt"
    torch.save({"model": fake_state(12), "extra": Payload(marker)}, path)
    assert read_state(str(path)) is None
    with pytest.raises(UnsafeArtifactError, match=r"posix\.system"):
        torch.load(path)
    assert not marker.exists()


def test_every_size_and_sam2_1_are_told_apart_by_their_keys():
    sam2_1 = {"no_obj_embed_spatial": torch.zeros(1, 64), "obj_ptr_tpos_proj.weight": torch.zeros(64, 256)}
    assert [variant_of(fake_state(n)) for n in (12, 16, 24, 48)] == ["sam2_t", "sam2_s", "sam2_b", "sam2_l"]
    assert [variant_of({**fake_state(n), **sam2_1}) for n in (12, 16, 24, 48)] == ["sam2.1_t", "sam2.1_s", "sam2.1_b", "sam2.1_l"]
    assert MODEL_NAMES == ("sam2_t", "sam2_s", "sam2_b", "sam2_l", "sam2.1_t", "sam2.1_s", "sam2.1_b", "sam2.1_l")


def test_other_encoders_are_refused_naming_what_is_built():
    with pytest.raises(Sam2WeightsError, match=r"32 Hiera blocks; this runtime builds sam2_t, .*sam2\.1_l"):
        variant_of(fake_state(32))
    with pytest.raises(Sam2WeightsError, match="sam2_h is not a SAM 2 model"):
        build("sam2_h")


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# SAM 2.1 adds the object-pointer position projection (Linear 256 -> 64) and a 64-wide no-object embedding.
SAM2_1_EXTRA = 256 * 64 + 64 + 64


def test_sam2_l_and_sam2_1_l_structure():
    # The published sizes (Hiera-L: 224.4M parameters), as the pinned ultralytics builds them; built once, the
    # 2.1 layout is the same model plus the 2.1 keys (checked on the b build below).
    model = build("sam2_l")
    assert parameters(model) == 224_430_130
    state = model.state_dict()
    assert len({k.split(".")[3] for k in state if k.startswith("image_encoder.trunk.blocks.")}) == 48
    assert variant_of(state) == "sam2_l"
    assert not any(k in state for k in ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight"))


def test_sam2_1_b_release_file_round_trip_and_prompted_masks(tmp_path):
    """A sam2.1_b weights file as the release holds it ({"model": state dict}; float16 to halve the
    file here) is recognised from its keys, loaded strictly through the guarded weights_only
    torch.load, and the backend answers a box prompt with a mask."""
    import cv2
    from vision_trainer.safe_load import pickle_globals

    torch.manual_seed(0)
    source = build("sam2.1_b")
    assert parameters(source) == 80_833_666 + SAM2_1_EXTRA  # Hiera-B+: 80.8M
    assert getattr(torch.load, "vision_trainer_guarded", False)  # every load below is forced weights_only
    path = tmp_path / "weights.pt"  # the name says nothing: the keys decide
    torch.save({"model": {k: v.half() if v.is_floating_point() else v for k, v in source.state_dict().items()}}, path)
    assert all(not name.startswith("ultralytics.") for name in pickle_globals(path))  # tensors and containers only
    state = read_state(str(path))
    assert variant_of(state) == "sam2.1_b"
    rebuilt = build("sam2.1_b", state)
    for key in ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "image_encoder.trunk.blocks.23.attn.qkv.weight"):
        assert torch.equal(rebuilt.state_dict()[key], source.state_dict()[key].half().float())
    with pytest.raises(RuntimeError, match="Missing key"):
        build("sam2_b", {k: v for k, v in state.items() if k != "sam_mask_decoder.iou_token.weight"})

    image = np.full((48, 64, 3), 40, np.uint8)
    cv2.rectangle(image, (10, 8), (40, 30), (220, 220, 220), -1)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    params = {"inference_backend": "auto", "evaluate": True, "dataset_classes": {"ids": [7], "names": ["square"]}, "image_size": 64, "device": "cpu"}
    backend = Sam2Backend(str(path), state, params)
    assert backend.info()["model_name"] == "sam2.1_b"
    (result,) = backend.predict_items([{"path": str(tmp_path / "a.png"), "ground_truth": {"boxes": [[10, 8, 40, 30]], "classes": [0]}}], 0.25)
    assert result.masks.shape == (1, 48, 64) and 0 <= float(result.mask_scores[0]) <= 1
