"""INFERENCE_PRECISION=bf16's check (precision_check.compare): the first batch's reported
predictions against float32's, top-1 classes for classifiers, twin boxes for detectors."""

from vision_trainer.common.precision_check import compare


def _cls(top: list[tuple[int, float]]) -> dict:
    return {"class_id": top[0][0], "confidence": top[0][1], "top5": [{"class_id": c, "confidence": p} for c, p in top]}


def test_classifiers_agree_on_the_top1_class_and_report_the_largest_confidence_difference():
    reference = [_cls([(0, 0.70), (1, 0.20)]), _cls([(2, 0.51), (1, 0.49)])]
    got = [_cls([(0, 0.69), (1, 0.21)]), _cls([(1, 0.50), (2, 0.50)])]
    check = compare(reference, got)
    assert check["compared"] == "top-1 class" and check["images"] == 2
    assert check["agreement"] == 0.5
    assert abs(check["max_score_difference"] - 0.01) < 1e-9


def _box(bbox: list[float], class_id: int, confidence: float) -> dict:
    return {"bbox": bbox, "class_id": class_id, "confidence": confidence}


def test_detectors_agree_box_by_box_out_of_the_larger_count():
    reference = [{"boxes": [_box([0, 0, 10, 10], 1, 0.9), _box([20, 20, 30, 30], 2, 0.5)]}, {"boxes": []}]
    got = [
        # The first box moved a little (IoU 0.9+), the second got another class, one box is new.
        {"boxes": [_box([0, 0, 10, 10.5], 1, 0.88), _box([20, 20, 30, 30], 3, 0.5), _box([40, 40, 50, 50], 1, 0.3)]},
        {"boxes": []},
    ]
    check = compare(reference, got)
    assert check["compared"].startswith("boxes above CONFIDENCE_THRESHOLD")
    assert check["agreement"] == 1 / 3
    assert abs(check["max_score_difference"] - 0.02) < 1e-9
    # Nothing found on either side: nothing differs.
    assert compare([{"boxes": []}], [{"boxes": []}])["agreement"] == 1.0
    assert compare([{"boxes": []}], [{"boxes": []}])["max_score_difference"] is None
