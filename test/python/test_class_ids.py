"""The one translation from a framework's class index to the dataset's class id, and the
per-image validation results written with it."""

import json
from pathlib import Path

import numpy as np
import pytest
from vision_trainer.common.class_ids import ClassIds
from vision_trainer.common.validation_images import ImagesJson, ValidationImages, one_vs_rest_ap

# An ImageFolder tree numbers classes by folder name: index 0 "blue" is id 7, index 1 "red" id 3.
IDS = ClassIds([7, 3], ["blue", "red"])


def test_indices_become_ids_and_tables_follow_id_order():
    assert (IDS.of(0), IDS.of(1), IDS.index_of(3)) == (7, 3, 1)
    assert IDS.ordered_ids == [3, 7]
    rows = IDS.rows([{"class_id": 0, "class_name": "blue", "ap": 0.5}, {"class_id": 1, "class_name": "red", "ap": 0.9}])
    assert [(r["class_id"], r["class_name"], r["ap"]) for r in rows] == [(3, "red", 0.9), (7, "blue", 0.5)]
    # Rows true, columns predicted, in index order (blue, red) -> id order (red, blue).
    assert IDS.matrix([[5, 1], [2, 4]]) == [[4, 2], [1, 5]]
    # A detection matrix's background row and column stay last.
    assert IDS.matrix([[5, 1, 0], [2, 4, 1], [3, 0, 0]]) == [[4, 2, 1], [1, 5, 0], [0, 3, 0]]


def test_predictions_and_matches_carry_ids_and_names():
    top5 = {
        "class_id": 1,
        "class_name": "red",
        "confidence": 0.7,
        "top5": [{"class_id": 1, "class_name": "red", "confidence": 0.7}, {"class_id": 0, "class_name": "blue", "confidence": 0.3}],
    }
    assert IDS.predictions(top5)["class_id"] == 3
    assert [t["class_id"] for t in IDS.predictions(top5)["top5"]] == [3, 7]
    boxes = IDS.predictions({"boxes": [{"bbox": [0, 0, 1, 1], "class_id": 0, "class_name": "blue", "confidence": 0.5}]})
    assert boxes["boxes"][0]["class_id"] == 7
    matches = IDS.evaluation(
        {
            "precision": 1.0,
            "matched": [],
            "wrong_class": [{"prediction": 0, "ground_truth": 0, "predicted_class_id": 0, "true_class_id": 1, "iou": 0.8}],
            "missed": [{"ground_truth": 1, "class_id": 1}],
            "false_positives": [],
        }
    )
    assert matches["precision"] == 1.0
    assert matches["wrong_class"][0] == {
        "prediction": 0,
        "ground_truth": 0,
        "predicted_class_id": 7,
        "predicted_class_name": "blue",
        "true_class_id": 3,
        "true_class_name": "red",
        "iou": 0.8,
    }
    assert matches["missed"][0] == {"ground_truth": 1, "class_id": 3, "class_name": "red"}


def test_a_checkpoint_without_ids_reports_its_indices():
    old = ClassIds.of_checkpoint({"class_names": ["a", "b"]}, ["a", "b"])
    assert (old.stored, old.ids) == (False, [0, 1])
    with pytest.raises(ValueError, match="repeat"):
        ClassIds([1, 1], ["a", "b"])
    with pytest.raises(ValueError, match="3 class ids for 2 classes"):
        ClassIds([1, 2, 3], ["a", "b"])


def test_one_vs_rest_ap_from_scores():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    targets = np.array([0, 0, 1, 1])
    ap = one_vs_rest_ap(scores, targets, 3)
    assert ap[0] == pytest.approx(1.0)
    assert ap[1] == pytest.approx(1.0)
    assert ap[2] is None  # no image of that class: undefined, not 0


def test_images_json_is_written_entry_by_entry_and_names_images_as_the_dataset_does(tmp_path):
    index = tmp_path / "val_images.jsonl"
    link = tmp_path / "val" / "red" / "x__photo.png"
    index.write_text(json.dumps({"path": str(link), "source": "/data/images/sub/photo.png", "image_id": "42", "file_name": "sub/photo.png"}) + "\n")
    out = ValidationImages({"job_id": "j1", "task_type": "image_classification", "project": str(tmp_path), "val_images": str(index)}, IDS)
    writer = out.open(3)
    writer.add(out.classification_entry(str(link), [0.2, 0.8], 1))
    writer.add(out.classification_entry("/elsewhere/unknown.png", [0.6, 0.4], 1))
    path = writer.close()
    doc = json.loads(Path(path).read_text())
    assert path.endswith("validation/epoch-3/images.json")
    assert (doc["job_id"], doc["epoch"], doc["num_images"], doc["class_ids"]) == ("j1", 3, 2, [7, 3])
    first, second = doc["results"]
    assert first["image_id"] == "42" and first["image_path"] == "sub/photo.png"
    assert first["predictions"]["class_id"] == 3 and first["ground_truth"] == {"class_id": 3, "class_name": "red"}
    assert first["metrics"] == {"correct": True, "top5_correct": True}
    assert second["image_path"] == "unknown.png" and second["metrics"]["correct"] is False


def test_a_discarded_images_json_leaves_nothing(tmp_path):
    writer = ImagesJson(tmp_path / "images.json", {"epoch": 1})
    writer.add({"image_path": "a.png"})
    writer.discard()
    assert list(tmp_path.iterdir()) == []
