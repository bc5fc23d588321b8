"""How many CPUs this process may really use, and thread pools sized to it.

torch, OpenMP and MKL size their pools from the host's cores. In a pod limited by a CPU quota
(cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`) they still see every core of the node and run more
threads than the quota pays for: the kernel throttles them in turns, and OpenMP's threads, which
wait for each other at every parallel region, spend the quota spinning (on a shared 2-core
machine two torch threads ran up to 10x slower than one). So the budget is, in order:

1. VISION_TRAINER_CPU_THREADS (the job's CPU_THREADS variable),
2. OMP_NUM_THREADS, the variable every OpenMP program honours,
3. the CPU quota of the process's cgroup and every cgroup above it (rounded down, at least 1),
   and the CPUs its affinity mask allows (`sched_getaffinity`: cpusets, `taskset`).

`apply()` runs when the package is imported, before any framework: it sets OMP_NUM_THREADS and
MKL_NUM_THREADS (and OpenBLAS') when they are unset, and sizes torch's intra-op and inter-op pools
the moment torch is imported. Data-loader workers are capped by `data_loader_workers()`.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

OVERRIDE = "VISION_TRAINER_CPU_THREADS"
# Libraries that read their pool size from the environment when they start.
POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class CpuBudget:
    threads: int
    """Threads for torch's pools and OpenMP: what the process may use at once."""
    source: str
    """Where the number came from, for the log."""
    quota: float | None
    """CPUs the cgroup quota allows (None: no quota)."""
    affinity: int
    """CPUs the affinity mask allows."""

    def describe(self) -> dict:
        return {"threads": self.threads, "source": self.source, "cgroup_quota_cpus": self.quota, "affinity_cpus": self.affinity}


def _positive_int(value: str | None) -> int | None:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def _v2_quota(text: str) -> float | None:
    """cpu.max: "max 100000" (no limit) or "QUOTA PERIOD"."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = _positive_int(parts[0]), _positive_int(parts[1])
    return quota / period if quota and period else None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text().strip())
        period = int((folder / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _ancestors(root: Path, relative: str) -> list[Path]:
    """The process's cgroup folder under `root` and every folder above it, up to `root`."""
    parts = [p for p in relative.strip("/").split("/") if p]
    return [root.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_quota(proc_cgroup: str, root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The smallest CPU quota (in CPUs) on the path from the process's cgroup to the root, from
    the text of /proc/self/cgroup; None when no level sets one. In a container the cgroup
    namespace usually shows the process at "/", whose files are the container's own limits."""
    quotas: list[float] = []
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2 (unified)
            base = root / "unified" if (root / "unified" / "cgroup.controllers").exists() and not (root / "cgroup.controllers").exists() else root
            for folder in _ancestors(base, path):
                try:
                    q = _v2_quota((folder / "cpu.max").read_text())
                except OSError:
                    continue
                if q is not None:
                    quotas.append(q)
        elif "cpu" in controllers.split(","):  # cgroup v1: mounted as cpu, or cpu,cpuacct
            mounts = [root / name for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu")]
            base = next((m for m in mounts if (m / "cpu.cfs_quota_us").exists()), None)
            if base is None:
                continue
            for folder in _ancestors(base, path):
                q = _v1_quota(folder)
                if q is not None:
                    quotas.append(q)
    return min(quotas) if quotas else None


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def detect(
    environ: dict[str, str] | None = None, proc_cgroup: str | None = None, root: Path = Path("/sys/fs/cgroup"), affinity: int | None = None
) -> CpuBudget:
    environ = dict(os.environ) if environ is None else environ
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            proc_cgroup = ""
    cpus = _affinity() if affinity is None else affinity
    quota = cgroup_quota(proc_cgroup, root)
    explicit = _positive_int(environ.get(OVERRIDE))
    if explicit:
        return CpuBudget(explicit, "CPU_THREADS", quota, cpus)
    omp = _positive_int(environ.get("OMP_NUM_THREADS"))
    if omp:
        return CpuBudget(omp, "OMP_NUM_THREADS", quota, cpus)
    if quota is not None and math.floor(quota) < cpus:
        return CpuBudget(max(1, math.floor(quota)), f"cgroup CPU quota ({quota:g} CPUs)", quota, cpus)
    return CpuBudget(max(1, cpus), f"CPU affinity ({cpus} CPUs)", quota, cpus)


_budget: CpuBudget | None = None


def budget() -> CpuBudget:
    global _budget
    if _budget is None:
        _budget = detect()
    return _budget


def data_loader_workers(requested: int) -> int:
    """NUM_WORKERS, at most one worker process per CPU of the budget (0 stays 0: load in the
    main process). More workers than CPUs only take turns, each with its own copy of the data."""
    return max(0, min(int(requested), budget().threads))


def _configure_torch(torch) -> None:
    threads = budget().threads
    torch.set_num_threads(threads)
    # After parallel work has run the inter-op pool can no longer be resized: it keeps its size.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)


class _SizeTorchWhenItLoads(importlib.abc.MetaPathFinder):
    """Sizes torch's pools the moment torch finishes importing (a job that never imports torch,
    a bridge ping, does not pay for importing it)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_size(module):
            exec_module(module)
            _configure_torch(module)

        spec.loader.exec_module = exec_then_size
        return spec


def apply() -> CpuBudget:
    """Sizes every pool from the budget; called once, when the package is imported."""
    b = budget()
    for name in POOL_VARIABLES:
        if b.source == "CPU_THREADS" or not os.environ.get(name):
            os.environ[name] = str(b.threads)
    # Python's stderr reaches the job's output: it says what was chosen and why.
    print(
        f"vision-trainer: {b.threads} CPU thread(s) from {b.source}: torch intra-op and inter-op pools, OpenMP/MKL, at most {b.threads} data-loader worker(s)",
        file=sys.stderr,
        flush=True,
    )
    if "torch" in sys.modules:
        _configure_torch(sys.modules["torch"])
    elif not any(isinstance(f, _SizeTorchWhenItLoads) for f in sys.meta_path):
        sys.meta_path.insert(0, _SizeTorchWhenItLoads())
    return b
