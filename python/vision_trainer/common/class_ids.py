"""The dataset's class ids of a model's classes: the one translation from the framework's class
index (a model output's position) to the id the dataset gave the class.

Frameworks number classes 0..n-1 in their own order (an ImageFolder tree by folder name, YOLO
labels by id order), while a backend knows classes by the dataset's ids, which need not be
contiguous or in name order. TypeScript decides the index of every class when it writes the
framework's dataset layout and sends the ids as TrainParams["class_ids"]; the trainers store
them in every checkpoint (`class_ids` in ours, `vision_trainer_class_ids` on an ultralytics
model), and whatever reads a checkpoint (inference, export) takes them from there. Everything
this runtime reports (validation rows, confusion matrices, predictions, ground truth, per-image
results) goes through `ClassIds` on its way out, so no output carries a framework index.

A checkpoint written before class ids were stored (or an ultralytics checkpoint from elsewhere)
has none: its indices are taken as its ids, and `stored` is False so callers can say so.

Tables (per-class rows, confusion matrices) are ordered by ascending class id, the order a
backend reading a dataset's classes would expect; `ordered_ids` states it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The attribute an ultralytics model carries its class ids in (pickled with the model).
ULTRALYTICS_ATTRIBUTE = "vision_trainer_class_ids"


class ClassIds:
    def __init__(self, ids: Sequence[int] | None, names: Sequence[str]):
        self.names = [str(n) for n in names]
        self.stored = ids is not None
        self.ids = [int(i) for i in ids] if ids is not None else list(range(len(self.names)))
        if len(self.ids) != len(self.names):
            raise ValueError(f"{len(self.ids)} class ids for {len(self.names)} classes")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"class ids repeat: {self.ids}")
        # Framework indices in ascending id order: the row order of every table.
        self.order = sorted(range(len(self.ids)), key=lambda i: self.ids[i])
        self._index = {cid: i for i, cid in enumerate(self.ids)}

    @classmethod
    def of_checkpoint(cls, metadata: dict[str, Any], names: Sequence[str]) -> ClassIds:
        return cls(metadata.get("class_ids"), names)

    @classmethod
    def of_ultralytics(cls, model, names: Sequence[str]) -> ClassIds:
        return cls(getattr(model, ULTRALYTICS_ATTRIBUTE, None), names)

    def __len__(self) -> int:
        return len(self.ids)

    def of(self, index: int) -> int:
        return self.ids[int(index)]

    def index_of(self, class_id: int) -> int:
        return self._index[int(class_id)]

    def name(self, index: int) -> str:
        return self.names[int(index)]

    @property
    def ordered_ids(self) -> list[int]:
        return [self.ids[i] for i in self.order]

    def rows(self, per_class: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per-class rows keyed by framework index (`class_id`) -> keyed by dataset id, in id order."""
        out = [{**row, "class_id": self.of(row["class_id"])} for row in per_class]
        return sorted(out, key=lambda row: row["class_id"])

    def matrix(self, matrix: list[list[Any]] | None) -> list[list[Any]] | None:
        """A confusion matrix in framework index order -> in id order. Rows and columns beyond
        the classes (a detection matrix's background) stay last."""
        if matrix is None:
            return None
        order = self.order + list(range(len(self.ids), len(matrix)))
        return [[matrix[r][c] for c in order] for r in order]

    def predictions(self, reported: dict[str, Any]) -> dict[str, Any]:
        """One image's predictions (results.json shape) with dataset ids."""
        if "boxes" in reported:
            return {**reported, "boxes": [{**b, "class_id": self.of(b["class_id"])} for b in reported["boxes"]]}
        out = {**reported, "class_id": self.of(reported["class_id"])}
        if "top5" in reported:
            out["top5"] = [{**t, "class_id": self.of(t["class_id"])} for t in reported["top5"]]
        return out

    def evaluation(self, evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
        """Per-image match lists (infer_metrics.match_objects) with dataset ids and class names."""
        if evaluation is None:
            return None
        out: dict[str, Any] = {}
        for key, value in evaluation.items():
            if not isinstance(value, list):
                out[key] = value
                continue
            rows = []
            for row in value:
                row = dict(row)
                for field in ("class_id", "predicted_class_id", "true_class_id"):
                    if field in row:
                        index = int(row[field])
                        row[field.replace("_id", "_name")] = self.name(index)
                        row[field] = self.of(index)
                rows.append(row)
            out[key] = rows
        return out
