"""TRAINER_ARGS for ultralytics, checked by ultralytics itself: the keys of its default
configuration (ultralytics/cfg/default.yaml, as DEFAULT_CFG_DICT) and its own type and range
checks (check_cfg), which also coerce the values the way training will see them. The keys the
contract owns or refuses were checked by TypeScript with the configuration."""

from __future__ import annotations

from ..common.trainer_args import resolved_value, unknown_key_message
from ..protocol import TrainerArgsAnswer, TrainerArgsParams
from ..support import entry


@entry
def check(params: TrainerArgsParams) -> TrainerArgsAnswer:
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    valid = sorted(DEFAULT_CFG_DICT)
    problems, resolved = [], {}
    for key, value in params["trainer_args"].items():
        if key not in DEFAULT_CFG_DICT:
            problems.append({"key": key, "message": unknown_key_message(key, valid, "ultralytics' train arguments")})
            continue
        one = {key: value}
        try:
            check_cfg(one, hard=True)
        except (TypeError, ValueError) as exc:
            problems.append({"key": key, "message": f"{value!r} is not allowed: {exc}"})
            continue
        resolved[key] = resolved_value(one[key])
    return {"resolved": resolved, "problems": problems}
