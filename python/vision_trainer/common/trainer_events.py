"""The trainer-event protocol (protocol.py, mirroring src/frameworks/protocol.ts) for every
trainer (ultralytics, timm, transformers): one place builds the start/batch/epoch/checkpoint/end
dicts and remembers what TypeScript answered.

Per epoch the order is the one ultralytics uses: batches, validation, `checkpoint`, then `epoch`.
A "stop" answer to any event sets `stop_requested`; the trainer ends after the current batch,
saves a checkpoint and sends `end`.

In a distributed run (common/distributed.py) every rank has a TrainerEvents: global rank 0's
sends through the worker's relay, the others send nothing, and `batch` and `agree` are a vote
that every rank takes part in, so `stop_requested` turns true on every rank at the same batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..support import guarded_js_call
from .class_ids import ClassIds

# Where events go when they cannot reach JavaScript (distributed workers): called with the
# event's kind and dict, it answers like the JS function would ("stop" or None).
Relay = Callable[[str, dict], Any]
# A distributed run's stop vote: called by every rank with its own wish, answers for all of them.
Vote = Callable[[bool], bool]


class TrainerEvents:
    def __init__(
        self,
        emit: Callable | None,
        *,
        primary_metric: str,
        epochs: int,
        class_ids: ClassIds,
        best_metric: float | None = None,
        best_epoch: int | None = None,
        relay: Relay | None = None,
        tensorboard_dir: str | None = None,
        vote: Vote | None = None,
        reports: bool = True,
    ):
        self.emit = emit
        self.class_ids = class_ids
        self.relay = relay
        self.vote = vote
        # Whether this process's events reach the job (single process, or global rank 0).
        self.reports = reports
        self.primary = primary_metric
        self.epochs = int(epochs)
        self.stop_requested = False
        # Carried over from a resumed checkpoint, so "best" keeps meaning best of the whole job.
        self.best_metric = best_metric
        self.best_epoch = best_epoch
        self.saved_epoch: int | None = None
        self.board = _Board(tensorboard_dir) if tensorboard_dir else None

    def _send(self, kind: str, payload: dict[str, Any]) -> None:
        event = {"kind": kind, **payload}
        answer = self.relay(kind, event) if self.relay is not None else guarded_js_call(self.emit, event)
        if answer == "stop":
            self.stop_requested = True

    def start(
        self, *, start_epoch: int, batches_per_epoch: int, device: str, save_dir: str, best_path: str | None = None, settings: dict[str, Any] | None = None
    ) -> None:
        """`best_path`: a resumed run's best weights so far (the checkpoint it resumed from, when
        that was the best), which TypeScript keeps as the best until an epoch beats it.
        `settings`: what the run resolved (common/run_settings.py), logged by the job."""
        best = {"epoch": int(self.best_epoch), "value": self.best_metric, "path": str(best_path)} if best_path and self.best_epoch is not None else None
        event = {
            "epochs": self.epochs,
            "start_epoch": int(start_epoch),
            "batches_per_epoch": int(batches_per_epoch),
            "device": str(device),
            "save_dir": str(save_dir),
            "best": best,
        }
        self._send("start", {**event, "settings": settings} if settings is not None else event)

    def batch(self, *, epoch: int, batch: int, batches: int, losses: dict[str, float | None]) -> None:
        """Every rank calls it after every batch: in a distributed run it is also the stop vote."""
        self._send("batch", {"epoch": int(epoch), "epochs": self.epochs, "batch": int(batch), "batches": int(batches), "losses": losses})
        if self.board is not None:
            self.board.batch(losses)
        self.agree()

    def agree(self) -> None:
        """Makes `stop_requested` the same on every rank (a collective: every rank calls it at the
        same points); a no-op in a single process."""
        if self.vote is not None:
            self.stop_requested = self.vote(self.stop_requested)

    def improves(self, value: float | None) -> bool:
        """Whether a primary-metric value beats the best so far (higher is better)."""
        return value is not None and (self.best_metric is None or value > self.best_metric)

    def record_best(self, epoch: int, value: float | None = None) -> None:
        self.best_epoch = int(epoch)
        if value is not None:
            self.best_metric = float(value)

    def checkpoint(self, *, epoch: int, last_path: str, best_path: str | None, is_best: bool, last_replaced: bool = False) -> None:
        """`last_replaced`: last_path is only ever replaced (a new file renamed over it, as
        checkpoints.save_atomically does), never written into, so the job may link it rather
        than copy it."""
        self.saved_epoch = int(epoch)
        # `stopping`: what a stop vote decided on every rank, so node 0 knows when another node's
        # stop cut this epoch short (its own stops it knows anyway).
        self._send(
            "checkpoint",
            {
                "epoch": int(epoch),
                "last_path": str(last_path),
                "best_path": best_path,
                "is_best": bool(is_best),
                "stopping": self.stop_requested,
                "last_replaced": bool(last_replaced),
            },
        )

    def epoch(
        self,
        *,
        epoch: int,
        losses: dict[str, float | None],
        learning_rate: float | None,
        validation: dict[str, Any] | None,
        is_best: bool,
        epoch_time_seconds: float | None,
        metrics: dict[str, Any] | None = None,
        fitness: float | None = None,
    ) -> None:
        """`metrics` defaults to the validation's; `fitness` to the primary metric's value (ultralytics
        passes its own weighted fitness)."""
        if metrics is None:
            metrics = dict(validation["metrics"]) if validation else {}
        self._send(
            "epoch",
            {
                "epoch": int(epoch),
                "epochs": self.epochs,
                "losses": losses,
                "learning_rate": learning_rate,
                "metrics": metrics,
                "validation": validation,
                "fitness": fitness if fitness is not None else metrics.get(self.primary),
                "is_best": bool(is_best),
                "epoch_time_seconds": epoch_time_seconds,
            },
        )
        if self.board is not None:
            self.board.epoch(int(epoch), losses=losses, metrics=metrics, learning_rate=learning_rate)

    def validation(
        self, details: dict[str, Any], *, num_images: int, seconds: float | None, image_results_file: str | None = None, model_size_mb: float | None = None
    ) -> dict[str, Any]:
        """The `validation` member of an epoch event from the trainer's metrics: `details` holds
        "metrics", "per_class_metrics" (class_id = the framework's index) and "confusion_matrix"
        (classification, index order) or "pr_curves" (detection). Class ids leave as the
        dataset's, tables in ascending id order."""
        metrics = dict(details["metrics"])
        if model_size_mb is not None:
            metrics["model_size_mb"] = model_size_mb
        out = {
            "primary_metric_name": self.primary,
            "primary_metric_value": metrics.get(self.primary),
            "metrics": metrics,
            "per_class_metrics": self.class_ids.rows(details["per_class_metrics"]),
            "num_images_validated": int(num_images),
            "validation_time_seconds": None if seconds is None else float(seconds),
            "image_results_file": image_results_file,
        }
        if details.get("confusion_matrix") is not None:
            out["confusion_matrix"] = self.class_ids.matrix(details["confusion_matrix"])
            out["confusion_matrix_class_ids"] = self.class_ids.ordered_ids
        if details.get("pr_curves") is not None:
            out["pr_curves"] = details["pr_curves"]
        return out

    def end(self, *, best_path: str | None, last_path: str | None) -> None:
        if self.board is not None:
            self.board.close()
        self._send("end", {"best_epoch": self.best_epoch, "last_epoch": self.saved_epoch, "best_path": best_path, "last_path": last_path})


class _Board:
    """TensorBoard scalars of the trainer events. A run that stops without `end` has what was
    flushed at its last epoch; the job uploads the folder whatever happened."""

    def __init__(self, folder: str):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=folder)
        self.step = 0

    @staticmethod
    def _scalars(values: dict[str, Any] | None):
        for name, value in (values or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                yield name, float(value)

    def batch(self, losses: dict[str, Any]) -> None:
        self.step += 1
        for name, value in self._scalars(losses):
            self.writer.add_scalar(f"batch/{name}", value, self.step)

    def epoch(self, epoch: int, *, losses: dict[str, Any], metrics: dict[str, Any], learning_rate: float | None) -> None:
        for name, value in self._scalars(losses):
            self.writer.add_scalar(f"train/{name}", value, epoch)
        for name, value in self._scalars(metrics):
            self.writer.add_scalar(f"val/{name}", value, epoch)
        for name, value in self._scalars({"lr": learning_rate}):
            self.writer.add_scalar(name, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
