"""No pickle from outside executes: every torch.load in this process is a weights_only load.

Checkpoints, pretrained weights and resume files come from outside the job. A PyTorch file is a
pickle, and a pickle can name any Python callable (`posix.system`, `builtins.exec`) for the
unpickler to call. So:

- `torch.load` itself is replaced, as soon as torch is imported, by `guarded_load`: whoever calls
  it (our code, ultralytics, timm, transformers) and whatever `weights_only` they pass, the file is
  loaded with `weights_only=True`, torch's restricted unpickler, which rebuilds tensors and plain
  containers only, plus the classes registered with `torch.serialization.add_safe_globals`.
- ultralytics checkpoints pickle their model classes; ultralytics ships an allow-list loader for
  them (`ULTRALYTICS_SAFE_LOAD=1`, set by the bridge; `_SafeLoad` in ultralytics/nn/tasks.py),
  which registers only the ultralytics/torch module classes a file names. `guarded_load` applies
  it to ultralytics' own internal loads as well (best.pt after training, for example).
- Before a byte of a file is unpickled, its pickle opcodes are read (`pickle_globals`, which
  executes nothing) and a file naming anything outside the allow-list is refused with
  `UnsafeArtifactError`, naming the globals.

Safetensors and transformers folders hold no pickle; TorchScript archives are loaded with
`torch.jit.load`, which runs TorchScript, not Python pickles.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.util
import io
import os
import pickletools
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

ADVICE = (
    "Checkpoints are loaded with torch.load(weights_only=True): tensors, numbers, strings, lists and dicts, "
    "plus ultralytics' own model classes, nothing else. Use a checkpoint this platform wrote or an official "
    "ultralytics release; a file from elsewhere must be converted where it is trusted, e.g. "
    "torch.save(model.state_dict(), path) or safetensors.torch.save_file(state_dict, path)."
)

# Globals in a pickle that are not plain names (STACK_GLOBAL with computed operands, INST, OBJ):
# the restricted unpickler refuses these opcodes outright.
UNNAMED = "<a global named by computed values>"


class UnsafeArtifactError(ValueError):
    """A file whose pickle needs Python globals outside the allow-list: refused before any of it runs."""

    def __init__(self, path: str | os.PathLike, names: list[str]):
        self.path = str(path)
        self.globals = sorted(names)
        shown = ", ".join(self.globals[:8]) + (f" and {len(self.globals) - 8} more" if len(self.globals) > 8 else "")
        super().__init__(f"{Path(path).name} was refused: loading it would call Python code outside the allow-list ({shown}). {ADVICE}")


class NotAPickle(ValueError):
    """The bytes are not a pickle (or not one this scanner can read to the end)."""


_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")


def _python3_name(module: str, name: str) -> str:
    """Protocol-2 pickles name Python 2 modules (`__builtin__.set`); unpicklers, torch's restricted
    one included, read them as their Python 3 names (`builtins.set`)."""
    from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _scan(data: io.BufferedIOBase) -> set[str]:
    """The globals one pickle names, from its opcodes; nothing is executed or constructed. A pickle
    that breaks off still reports the globals named before the break (NotAPickle when none)."""
    found: set[str] = set()
    strings: list[Any] = []  # recent string pushes and memo reads: STACK_GLOBAL's operands
    memo: dict[int, Any] = {}
    try:
        for op, arg, _pos in pickletools.genops(data):
            name = op.name
            if name in ("GLOBAL", "INST"):
                found.add(_python3_name(*str(arg).split(" ", 1)))
            elif name == "STACK_GLOBAL":
                module, attr = (strings[-2], strings[-1]) if len(strings) >= 2 else (None, None)
                found.add(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str) else UNNAMED)
            elif name in ("OBJ", "NEWOBJ_EX"):
                found.add(UNNAMED)
            if name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"):
                strings.append(arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = strings[-1] if strings else None
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = strings[-1] if strings else None
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                strings.append(memo.get(int(arg)))
            elif name not in ("PROTO", "FRAME"):
                strings.append(None)
    except Exception as exc:  # truncated or not a pickle at all
        # Bytes that are no pickle can still decode as a few opcodes: only names that look like
        # Python's module.attribute count as what a broken-off pickle asked for.
        if not found or not all(_DOTTED.match(name) for name in found):
            raise NotAPickle(f"not a readable pickle ({type(exc).__name__}: {exc})") from exc
    return found


def _torch_zip_pickles(path: str) -> list[bytes] | None:
    """The pickles of a torch.save zip archive (data.pkl), or [] for a TorchScript archive; None when
    the file is not a zip."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        # Names as torch reads them: relative to the archive's one top folder.
        records = {name.split("/", 1)[-1]: name for name in archive.namelist()}
        if "constants.pkl" in records:
            return []  # TorchScript (torch's own test): torch.jit.load runs it, not the pickle unpickler
        return [archive.read(name) for record, name in records.items() if record == "data.pkl" or record.endswith("/data.pkl")]


def pickle_globals(path: str | os.PathLike) -> set[str] | None:
    """Every global a PyTorch file's pickles name, read without unpickling. None when the file holds
    no pickle (safetensors, TorchScript, text, images)."""
    path = os.fspath(path)
    pickles = _torch_zip_pickles(path)
    if pickles is not None:
        found: set[str] = set()
        for data in pickles:
            found |= _scan(io.BytesIO(data))
        return found if pickles else None
    with open(path, "rb") as f:
        # A legacy torch.save file is several pickles in a row (magic number, version, system
        # info, the object, storage keys) followed by raw tensor bytes; a plain pickle is one.
        found: set[str] = set()
        for index in range(5):
            if not f.peek(1):
                break
            try:
                found |= _scan(f)
            except NotAPickle:
                if index == 0:
                    return None  # safetensors, text, an image: no pickle to refuse
                break
        return found


# What ultralytics' allow-list loader admits besides plain values: its own classes, torch module
# classes, and the data types its checkpoints pickle.
_ULTRALYTICS_FAMILIES = ("ultralytics.", "torch.nn.modules.", "torchvision.transforms.", "numpy.", "numpy.core.", "pathlib.", "builtins.getattr", "clip.")


def names_ultralytics_model(names: set[str] | None) -> bool:
    """Whether a file's globals are those of an ultralytics checkpoint (its model classes and
    nothing ultralytics' own loader would refuse)."""
    if not names or not any(name.startswith("ultralytics.") for name in names):
        return False
    return all(name.startswith(_ULTRALYTICS_FAMILIES) for name in names - allowed_globals())


def allowed_globals() -> set[str]:
    """What torch's restricted unpickler accepts now: its defaults plus every registered global."""
    from torch import _weights_only_unpickler as restricted

    return set(restricted._get_allowed_globals()) | set(restricted._get_user_allowed_globals())


def unsafe_globals(path: str | os.PathLike) -> list[str]:
    """Globals the file names beyond the allow-list; [] for a file without a pickle (torch.load
    then reports the format problem)."""
    return sorted((pickle_globals(path) or set()) - allowed_globals())


def refuse_unsafe(path: str | os.PathLike) -> None:
    unsafe = unsafe_globals(path)
    if unsafe:
        raise UnsafeArtifactError(path, unsafe)


@contextlib.contextmanager
def _ultralytics_allow_list(path: str):
    """Registers the ultralytics classes `path` names (ultralytics' own allow-list rules) when
    ultralytics is in use and is not already doing so for this load."""
    tasks = sys.modules.get("ultralytics.nn.tasks")
    safe_load = getattr(tasks, "_SafeLoad", None)
    if safe_load is None or not safe_load.SUPPORTED or getattr(safe_load._local, "active", False):
        yield
        return
    with safe_load.loading(path):
        yield


def guarded_load(original, f, *args, **kwargs):
    kwargs["weights_only"] = True
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        if os.path.isfile(path):
            with _ultralytics_allow_list(path):
                refuse_unsafe(path)
                return original(f, *args, **kwargs)
    return original(f, *args, **kwargs)


def install(torch_module) -> None:
    """Replaces torch.load (and torch.serialization.load) with the guarded version, once."""
    import torch.serialization as serialization

    original = serialization.load
    if getattr(original, "vision_trainer_guarded", False):
        return

    @functools.wraps(original)
    def load(f, *args, **kwargs):
        return guarded_load(original, f, *args, **kwargs)

    load.vision_trainer_guarded = True
    serialization.load = load
    torch_module.load = load


class _InstallWhenTorchLoads(importlib.abc.MetaPathFinder):
    """Installs the guard the moment torch finishes importing, so a job that never imports torch
    (a bridge ping) does not pay for importing it."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_guard(module):
            exec_module(module)
            install(module)

        loader.exec_module = exec_then_guard
        return spec


def install_on_import() -> None:
    if "torch" in sys.modules:
        install(sys.modules["torch"])
    elif not any(isinstance(f, _InstallWhenTorchLoads) for f in sys.meta_path):
        sys.meta_path.insert(0, _InstallWhenTorchLoads())
