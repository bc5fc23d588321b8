"""The timm/transformers checkpoint format: written atomically, read without unpickling, refused
with a reason when it is not ours, would run code, or belongs to another setup."""

import json

import pytest
import torch
from vision_trainer.common.checkpoints import (
    CheckpointError,
    RunCheckpoints,
    load_checkpoint,
    load_for_resume,
    mark_best,
    read_metadata,
    recorded_best,
    save_checkpoint,
)
from vision_trainer.safe_load import UnsafeArtifactError

META = {
    "framework": "timm",
    "model_name": "resnet18",
    "architecture": "resnet18",
    "task_type": "image_classification",
    "class_names": ["a", "b"],
    "image_size": 32,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "versions": {"torch": torch.__version__},
}


def test_round_trip_keeps_plain_metadata(tmp_path):
    path = save_checkpoint(tmp_path / "w" / "last.pt", {**META, "metrics": {"accuracy": float("nan")}}, {"w": torch.ones(2)})
    meta = read_metadata(path)
    assert meta["format"] == "vision-trainer-checkpoint"
    assert meta["num_classes"] == 2
    assert meta["metrics"] == {"accuracy": None}
    assert meta["versions"] == {"torch": str(torch.__version__)}
    assert "state_dict" not in meta
    assert [p.name for p in (tmp_path / "w").iterdir()] == ["last.pt"], "no temporary file is left behind"


def test_missing_metadata_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="lacks class_names"):
        save_checkpoint(tmp_path / "x.pt", {k: v for k, v in META.items() if k != "class_names"}, {})


def test_foreign_files_are_named_not_unpickled(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"model": torch.nn.Linear(1, 1)}, other)
    with pytest.raises(UnsafeArtifactError, match=r"torch\.nn\.modules\.linear\.Linear"):
        read_metadata(other)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.ones(1)}, plain)
    with pytest.raises(CheckpointError, match=r"not a vision-trainer checkpoint .*found: weights"):
        read_metadata(plain)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_metadata(tmp_path / "none.pt")


def test_mark_best_stamps_the_chosen_epoch_and_keeps_the_weights(tmp_path):
    # Epoch 2's checkpoint, written when the score still named epoch 1 the best; the backend then chose epoch 2.
    path = save_checkpoint(
        tmp_path / "best.pt",
        {**META, "epoch": 2, "best_epoch": 1, "best_metric": 0.8, "metrics": {"accuracy": 0.7}},
        {"w": torch.arange(3.0)},
        training_state={"optimizer": {"state": {}, "param_groups": []}},
    )
    answer = json.loads(mark_best({"path": path, "epoch": 2, "value": 0.7, "score": 0.7, "decided_by": "backend"}))
    assert answer == {"ok": {"previous_best_epoch": 1}}
    ckpt = load_checkpoint(path)
    assert (ckpt["best_epoch"], ckpt["best_metric"], ckpt["best_decided_by"]) == (2, 0.7, "backend")
    assert ckpt["epoch"] == 2 and ckpt["metrics"] == {"accuracy": 0.7}
    assert torch.equal(ckpt["state_dict"]["w"], torch.arange(3.0))
    assert ckpt["training_state"] == {"optimizer": {"state": {}, "param_groups": []}}
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"], "no temporary file is left behind"


def test_recorded_best_reads_the_epoch_a_checkpoint_names(tmp_path):
    # A retried job whose state.json names no best asks the latest checkpoint (resume.ts recoverBest).
    path = save_checkpoint(
        tmp_path / "epoch-3.pt", {**META, "epoch": 3, "best_epoch": 2, "best_metric": 0.75, "metrics": {"accuracy": 0.5}}, {"w": torch.ones(1)}
    )
    assert json.loads(recorded_best({"path": path})) == {"ok": {"epoch": 2, "value": 0.75}}
    bare = save_checkpoint(tmp_path / "epoch-1.pt", {**META, "epoch": 1, "metrics": {}}, {"w": torch.ones(1)})
    assert json.loads(recorded_best({"path": bare})) == {"ok": {"epoch": None, "value": None}}


def test_best_is_the_last_checkpoint_of_the_best_epoch(tmp_path):
    run = RunCheckpoints(tmp_path / "weights")
    run.save({**META, "epoch": 1}, {"w": torch.zeros(1)}, is_best=True)
    run.save({**META, "epoch": 2}, {"w": torch.ones(1)}, is_best=False)
    assert read_metadata(run.best_path)["epoch"] == 1
    assert read_metadata(run.last_path)["epoch"] == 2


def test_last_is_replaced_never_written_into(tmp_path):
    """What the trainers' `last_replaced=True` checkpoint events promise the job, which then
    hard-links last.pt instead of copying it: a link taken after one save keeps that save."""
    run = RunCheckpoints(tmp_path / "weights")
    run.save({**META, "epoch": 1}, {"w": torch.zeros(1)}, is_best=False)
    snapshot = tmp_path / "snapshot.pt"
    snapshot.hardlink_to(run.last)
    run.save({**META, "epoch": 2}, {"w": torch.ones(1)}, is_best=True)
    assert read_metadata(snapshot)["epoch"] == 1
    assert read_metadata(run.last_path)["epoch"] == 2


def test_resume_refuses_another_setup_and_inference_only_files(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", META, {"w": torch.ones(1)}, training_state={"optimizer": {"state": {}, "param_groups": []}})
    setup = {
        "framework": "timm",
        "model_name": "resnet18",
        "class_names": ["a", "b"],
        "class_ids": [4, 9],
        "task_type": "image_classification",
        "image_size": 32,
    }
    assert load_for_resume(path, **setup)["training_state"]
    with pytest.raises(ValueError, match=r"classes \['a', 'b'\].*IMAGE_SIZE=32 \(this job: 64\)"):
        load_for_resume(path, **{**setup, "class_names": ["a", "c"], "image_size": 64})
    # Class ids are compared when the checkpoint has them (one written before they were stored has none).
    with_ids = save_checkpoint(
        tmp_path / "ids.pt", {**META, "class_ids": [4, 9]}, {"w": torch.ones(1)}, training_state={"optimizer": {"state": {}, "param_groups": []}}
    )
    assert load_for_resume(with_ids, **setup)["class_ids"] == [4, 9]
    with pytest.raises(ValueError, match=r"class ids \[4, 9\] \(this job's dataset: \[4, 5\]\)"):
        load_for_resume(with_ids, **{**setup, "class_ids": [4, 5]})
    bare = save_checkpoint(tmp_path / "best.pt", META, {"w": torch.ones(1)})
    with pytest.raises(ValueError, match="no optimizer state"):
        load_for_resume(bare, **setup)
