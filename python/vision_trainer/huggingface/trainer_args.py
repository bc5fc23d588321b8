"""TRAINER_ARGS for transformers: the fields of its TrainingArguments dataclass, read from the
installed version (dataclasses.fields), and its own validation (the dataclass' __post_init__),
run once per key so that a problem names its key, then once with all of them together. The keys
the contract owns or refuses were checked by TypeScript with the configuration."""

from __future__ import annotations

import dataclasses
import tempfile
from typing import Any

from ..common.trainer_args import resolved_value, unknown_key_message
from ..protocol import TrainerArgsAnswer, TrainerArgsParams
from ..support import entry


def _arguments(folder: str, settings: dict[str, Any]):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=folder, report_to="none", **settings)


@entry
def check(params: TrainerArgsParams) -> TrainerArgsAnswer:
    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    valid = sorted(fields)
    problems, known = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for key, value in params["trainer_args"].items():
            if key not in fields:
                problems.append({"key": key, "message": unknown_key_message(key, valid, "transformers' TrainingArguments")})
                continue
            try:
                _arguments(folder, {key: value})
            except (TypeError, ValueError) as exc:
                problems.append({"key": key, "message": f"{value!r} is not allowed: {exc}"})
                continue
            known[key] = value
        resolved = {}
        if known and not problems:
            try:
                args = _arguments(folder, known)
                resolved = {key: resolved_value(getattr(args, key)) for key in known}
            except (TypeError, ValueError) as exc:
                problems.append({"key": ", ".join(known), "message": f"together are not allowed: {exc}"})
    return {"resolved": resolved, "problems": problems}
