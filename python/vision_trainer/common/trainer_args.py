"""What the TRAINER_ARGS preflights of ultralytics and transformers share: the message for an
unknown key (the valid keys, closest first) and a JSON-safe copy of a resolved value."""

from __future__ import annotations

import difflib
import enum
from typing import Any

from ..support import plain


def unknown_key_message(key: str, valid: list[str], owner: str) -> str:
    ordered = difflib.get_close_matches(key, valid, n=len(valid), cutoff=0.0)
    ordered += sorted(set(valid) - set(ordered))
    return f"is not a setting of {owner}; valid keys (closest first): {', '.join(ordered)}"


def resolved_value(value: Any) -> Any:
    """Enums as their values (transformers' SchedulerType.COSINE is "cosine"), then JSON-safe."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        return [resolved_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): resolved_value(v) for k, v in value.items()}
    return plain(value)
