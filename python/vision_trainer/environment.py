"""What this interpreter offers a job, asked before any download (the jobs' preflight) and by
`vision-trainer doctor`: installed versions, whether the frameworks import, torch's devices, and
whether DEVICE can be used."""

from __future__ import annotations

import sys
import time
from importlib import import_module, metadata

from .protocol import EnvironmentParams, EnvironmentReport, Gpu, ImportCheck, TorchReport
from .support import entry


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _import(module: str) -> ImportCheck:
    started = time.perf_counter()
    try:
        import_module(module)
        error = None
    except Exception as exc:  # noqa: BLE001 - any import failure is what the check reports
        error = f"{type(exc).__name__}: {exc}"[:500]
    return {"module": module, "seconds": round(time.perf_counter() - started, 3), "error": error}


def _cuda_indices(device: str) -> list[int] | None:
    """The GPU indices DEVICE names (cuda, cuda:N, 0 or 0,1); None for auto, cpu and mps."""
    if device in ("", "auto", "cpu", "mps"):
        return None
    if device == "cuda":
        return [0]
    if device.startswith("cuda:"):
        return [int(device[5:])]
    return [int(part) for part in device.split(",")]


def device_problem(device: str, torch_report: TorchReport | None) -> str | None:
    if device in ("", "auto", "cpu"):
        return None
    if torch_report is None:
        return f"DEVICE={device} cannot be checked: torch does not import"
    if device == "mps":
        return None if torch_report["mps_available"] else "DEVICE=mps, but torch sees no Apple GPU (MPS) on this machine; use DEVICE=cpu or auto"
    wanted = _cuda_indices(device) or []
    gpus = torch_report["gpus"]
    if not gpus:
        build = f"CUDA {torch_report['cuda_build']} build" if torch_report["cuda_build"] else "CPU-only build"
        return f"DEVICE={device} needs a CUDA GPU, but torch {torch_report['version']} ({build}) sees none; use DEVICE=cpu or auto"
    missing = [i for i in wanted if i >= len(gpus)]
    if missing:
        return f"DEVICE={device} names GPU {', '.join(map(str, missing))}, but torch sees {len(gpus)} GPU(s) (indices 0-{len(gpus) - 1}; CUDA_VISIBLE_DEVICES decides which)"
    return None


def _torch() -> tuple[TorchReport | None, str | None]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - reported, the caller decides
        return None, f"{type(exc).__name__}: {exc}"[:500]
    gpus: list[Gpu] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "memory_gb": round(props.total_memory / 1024**3, 1)})
    mps = getattr(torch.backends, "mps", None)
    report: TorchReport = {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "gpus": gpus,
        "mps_available": bool(mps is not None and mps.is_available()),
        "threads": torch.get_num_threads(),
    }
    return report, None


@entry
def report(params: EnvironmentParams) -> EnvironmentReport:
    torch_report, torch_error = _torch()
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "packages": {name: _version(name) for name in params["packages"]},
        "imports": [_import(module) for module in params["imports"]],
        "torch": torch_report,
        "torch_error": torch_error,
        "device_problem": device_problem(params["device"], torch_report),
    }
