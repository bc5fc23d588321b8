"""Metrics in the platform's shape: classifier validation, test-run classification, and the
names ultralytics' metric keys become."""

import torch
from vision_trainer.common.classification_metrics import classification_metrics
from vision_trainer.common.infer_metrics import ClassificationEvaluator
from vision_trainer.common.yolo_metrics import standard_metrics


def test_classification_metrics_rows_are_true_classes():
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0]])
    targets = torch.tensor([0, 0, 1, 1])
    out = classification_metrics(logits, targets, ["cat", "dog", "fox"], loss=0.5)
    assert out["metrics"]["accuracy"] == 0.75
    assert out["metrics"]["loss"] == 0.5
    assert out["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 0]]
    cat, dog, fox = out["per_class_metrics"]
    assert cat == {"class_id": 0, "class_name": "cat", "precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    assert dog["precision"] == 1.0 and dog["recall"] == 0.5
    # Never predicted and absent: undefined, not 0; macro averages skip absent classes.
    assert fox["precision"] is None and fox["recall"] is None and fox["f1"] is None
    assert out["metrics"]["recall"] == 0.75
    assert "top5_accuracy" not in out["metrics"]


def test_top5_with_five_classes_or_more():
    logits = torch.eye(6)[[5, 4]] + torch.arange(6) * 0.01
    out = classification_metrics(logits, torch.tensor([5, 3]), [str(i) for i in range(6)])
    assert out["metrics"]["accuracy"] == 0.5
    assert out["metrics"]["top5_accuracy"] == 1.0


def test_test_run_classification_evaluator():
    evaluator = ClassificationEvaluator({0: "a", 1: "b"})
    assert evaluator.add(0, [0, 1]) == {"correct": True, "top5_correct": True}
    assert evaluator.add(1, [0, 1]) == {"correct": False, "top5_correct": True}
    summary = evaluator.finish()
    assert summary["overall_metrics"]["accuracy"] == 0.5
    assert summary["images_evaluated"] == 2
    assert summary["confusion_matrix_labels"] == ["a", "b"]


def test_ultralytics_metric_names_become_the_platforms():
    raw = {
        "metrics/precision(B)": 0.5,
        "metrics/mAP50-95(B)": 0.3,
        "metrics/mAP50-95(M)": 0.2,
        "val/box_loss": 1.0,
        "val/seg_loss": 0.5,
        "metrics/accuracy_top1": 0.9,
    }
    assert standard_metrics(raw, "segment") == {
        "box_precision": 0.5,
        "box_mAP50-95": 0.3,
        "mAP50-95": 0.2,
        "val_box_loss": 1.0,
        "val_seg_loss": 0.5,
        "accuracy": 0.9,
        "loss": 1.5,
    }
