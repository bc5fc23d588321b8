"""Bridge-safe conversions and the error envelope shared by every entry point."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any


def plain(value: Any) -> Any:
    """A JSON-safe copy: numpy/torch scalars to floats, NaN/Inf to None, tuples to lists."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        try:
            return plain(value.detach().cpu().tolist() if hasattr(value, "detach") else value.tolist())
        except Exception:  # noqa: BLE001 - not convertible this way: the next rule tries
            pass
    if hasattr(value, "item"):
        try:
            return plain(value.item())
        except Exception:  # noqa: BLE001 - not convertible this way: the text form follows
            pass
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def is_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "outofmemoryerror" in text or "out of memory" in text or "cublas_status_alloc_failed" in text


def error_envelope(exc: BaseException) -> dict:
    """What an entry point returns instead of raising: pythonia's own error objects lose the
    Python type and message (the JS Error arrives with an empty message). An exception that
    stands for one raised in another process (a distributed training worker) carries that
    exception's envelope, which is passed on as it is."""
    carried = getattr(exc, "envelope", None)
    if isinstance(carried, dict):
        return {"__error__": carried}
    return {
        "__error__": {
            "type": type(exc).__name__,
            "module": type(exc).__module__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-20000:],
            "out_of_memory": is_out_of_memory(exc),
        }
    }


def entry(fn: Callable) -> Callable:
    """Decorates a function called from TypeScript. It answers with one JSON string,
    {"ok": result} or {"__error__": {...}}: a string crosses the bridge in one message, leaves no
    proxy object behind on either side, and `allow_nan=False` guarantees Node can parse it."""

    def wrapper(*args, **kwargs):
        try:
            return json.dumps({"ok": plain(fn(*args, **kwargs))}, allow_nan=False)
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit must not kill the bridge silently
            return json.dumps(plain(error_envelope(exc)), allow_nan=False)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def shield_from_terminal_interrupt() -> None:
    """Ctrl-C in a terminal reaches the whole process group. Node owns shutdown: it asks training
    to stop at the next batch and saves a checkpoint, so Python must not die mid-batch on SIGINT."""
    if threading_is_main():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def die_with_parent() -> None:
    """If Node is killed outright (SIGKILL, OOM killer), take Python down too instead of training
    on as an orphan until the next callback finds the pipe closed."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - best effort: Node also kills the child on exit
        pass


die_with_parent()

# The job's own log lines (JSON in a container) own stdout; what the frameworks print (progress
# bars, model summaries) goes to stderr, so a log pipeline can parse stdout line by line.
sys.stdout = sys.stderr


@entry
def describe_environment() -> dict:
    """Versions and devices, logged at start-up and used by the bridge's health check."""
    info: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["cuda_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as exc:  # noqa: BLE001 - torch missing is reported, not fatal, for jobs that do not need it
        info["torch_error"] = str(exc)
    return info


@entry
def ping() -> str:
    return "pong"


def failpoint(name: str) -> bool:
    """Fault injection for the test suite: VISION_TRAINER_FAILPOINTS=nan_loss,... makes the named
    failure happen on the real code path (a diverging loss is not reproducible on demand)."""
    return name in {p.strip() for p in os.environ.get("VISION_TRAINER_FAILPOINTS", "").split(",") if p.strip()}


class OffMainThread(RuntimeError):
    pass


def guarded_js_call(fn, payload: Any) -> Any:
    """Every call into JavaScript goes through here: pythonia hangs when a non-main thread calls JS
    (JSPyBridge issue #172), so such a call is refused with an error instead of a hang."""
    if not threading_is_main():
        raise OffMainThread("JavaScript callbacks may only be called from Python's main thread")
    return fn(plain(payload))
