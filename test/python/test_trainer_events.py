"""The trainer-event protocol every trainer speaks: the dicts it builds, best-so-far tracking,
"stop" answers, and a distributed worker's relay and stop vote."""

from vision_trainer.common.class_ids import ClassIds
from vision_trainer.common.trainer_events import TrainerEvents

# Non-contiguous ids whose order differs from the framework's: index 0 is "red" (id 7), 1 "blue" (id 3).
IDS = ClassIds([7, 3], ["red", "blue"])


def recorder(answers=None):
    sent = []

    def emit(event):
        sent.append(event)
        return (answers or {}).get(event["kind"])

    return sent, emit


def test_an_epoch_in_the_order_ultralytics_uses():
    sent, emit = recorder()
    events = TrainerEvents(emit, primary_metric="accuracy", epochs=2, class_ids=IDS)
    events.start(start_epoch=0, batches_per_epoch=3, device="cpu", save_dir="/tmp/run")
    events.batch(epoch=1, batch=1, batches=3, losses={"loss": 0.5})
    rows = [{"class_id": 0, "class_name": "red", "support": 3}, {"class_id": 1, "class_name": "blue", "support": 1}]
    details = {"metrics": {"accuracy": 0.75, "loss": 0.4}, "per_class_metrics": rows, "confusion_matrix": [[2, 1], [0, 1]]}
    assert events.improves(0.75)
    events.record_best(1, 0.75)
    events.checkpoint(epoch=1, last_path="/tmp/last.pt", best_path="/tmp/best.pt", is_best=True, last_replaced=True)
    validation = events.validation(details, num_images=4, seconds=0.5, image_results_file="/tmp/images.json", model_size_mb=1.5)
    events.epoch(epoch=1, losses={"loss": 0.5}, learning_rate=0.001, validation=validation, is_best=True, epoch_time_seconds=2.0)
    events.end(best_path="/tmp/best.pt", last_path="/tmp/last.pt")
    assert [e["kind"] for e in sent] == ["start", "batch", "checkpoint", "epoch", "end"]
    assert sent[0] == {"kind": "start", "epochs": 2, "start_epoch": 0, "batches_per_epoch": 3, "device": "cpu", "save_dir": "/tmp/run", "best": None}
    assert sent[2] == {
        "kind": "checkpoint",
        "epoch": 1,
        "last_path": "/tmp/last.pt",
        "best_path": "/tmp/best.pt",
        "is_best": True,
        "stopping": False,
        "last_replaced": True,
    }
    epoch = sent[3]
    assert epoch["metrics"] == {"accuracy": 0.75, "loss": 0.4, "model_size_mb": 1.5}
    # The dataset's ids, tables in ascending id order: blue (3) first, then red (7).
    assert [(r["class_id"], r["class_name"]) for r in epoch["validation"]["per_class_metrics"]] == [(3, "blue"), (7, "red")]
    assert epoch["validation"]["confusion_matrix"] == [[1, 0], [1, 2]]
    assert epoch["validation"]["confusion_matrix_class_ids"] == [3, 7]
    assert epoch["validation"]["image_results_file"] == "/tmp/images.json"
    assert epoch["fitness"] == 0.75
    assert epoch["validation"]["primary_metric_name"] == "accuracy"
    assert epoch["validation"]["primary_metric_value"] == 0.75
    assert sent[4] == {"kind": "end", "best_epoch": 1, "last_epoch": 1, "best_path": "/tmp/best.pt", "last_path": "/tmp/last.pt"}
    assert not events.stop_requested


def test_best_so_far_carries_over_from_a_resumed_run():
    sent, emit = recorder()
    events = TrainerEvents(emit, primary_metric="accuracy", epochs=5, class_ids=IDS, best_metric=0.8, best_epoch=3)
    assert not events.improves(0.7)
    assert not events.improves(None)
    assert events.improves(0.81)
    events.start(start_epoch=3, batches_per_epoch=1, device="cpu", save_dir="/x", best_path="/x/best.pt")
    assert sent[0]["best"] == {"epoch": 3, "value": 0.8, "path": "/x/best.pt"}


def test_a_stop_answer_to_any_event_is_remembered():
    _, emit = recorder({"batch": "stop"})
    events = TrainerEvents(emit, primary_metric="mAP50-95", epochs=1, class_ids=IDS)
    events.start(start_epoch=0, batches_per_epoch=1, device="cpu", save_dir="/x")
    assert not events.stop_requested
    events.batch(epoch=1, batch=1, batches=1, losses={})
    assert events.stop_requested


def test_explicit_metrics_and_fitness_win():
    sent, emit = recorder()
    events = TrainerEvents(emit, primary_metric="mAP50-95", epochs=1, class_ids=IDS)
    events.epoch(epoch=1, losses={}, learning_rate=None, validation=None, is_best=False, epoch_time_seconds=None, metrics={"mAP50-95": 0.2}, fitness=0.3)
    assert sent[0]["metrics"] == {"mAP50-95": 0.2}
    assert sent[0]["fitness"] == 0.3


def test_a_distributed_worker_relays_its_events_and_votes_after_every_batch():
    relayed, votes = [], []

    def relay(kind, event):
        relayed.append(event)
        return "stop" if kind == "epoch" else None

    def vote(mine):
        votes.append(mine)
        return len(votes) == 2  # another rank asks to stop at the second batch

    events = TrainerEvents(None, primary_metric="mAP50-95", epochs=2, class_ids=IDS, relay=relay, vote=vote)
    events.batch(epoch=1, batch=1, batches=3, losses={"box_loss": 0.5})
    assert not events.stop_requested
    events.batch(epoch=1, batch=2, batches=3, losses={})
    assert events.stop_requested, "every rank stops after the batch where any rank asked"
    assert votes == [False, False]
    assert [e["kind"] for e in relayed] == ["batch", "batch"]


def test_a_stop_answered_to_rank_0_reaches_the_vote():
    votes = []
    events = TrainerEvents(
        None,
        primary_metric="accuracy",
        epochs=1,
        class_ids=IDS,
        relay=lambda kind, event: "stop" if kind == "epoch" else None,
        vote=lambda mine: votes.append(mine) or mine,
    )
    events.epoch(epoch=1, losses={}, learning_rate=None, validation=None, is_best=False, epoch_time_seconds=None)
    events.agree()
    assert votes == [True]
    assert events.stop_requested
