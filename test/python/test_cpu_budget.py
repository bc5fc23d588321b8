"""The CPU budget: which number wins, cgroup quotas read from fake cgroup trees (v2 and v1, a
limit set on a parent folder), and the real pools of a fresh interpreter that imports the package
and then torch."""

import json
import os
import subprocess
import sys
from pathlib import Path

from vision_trainer import cpu_budget
from vision_trainer.cpu_budget import cgroup_quota, detect

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"


def v2_tree(tmp_path: Path, limits: dict[str, str]) -> Path:
    """A cgroup v2 mount with `cpu.max` files: {"": root's, "kubepods/pod1": the pod's, ...}."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    for folder, text in limits.items():
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "cpu.max").write_text(text + "\n")
    return tmp_path


def test_v2_quota_of_the_process_cgroup(tmp_path):
    root = v2_tree(tmp_path, {"": "max 100000", "kubepods/pod1": "150000 100000"})
    assert cgroup_quota("0::/kubepods/pod1\n", root) == 1.5
    budget = detect(environ={}, proc_cgroup="0::/kubepods/pod1\n", root=root, affinity=16)
    assert (budget.threads, budget.quota, budget.affinity) == (1, 1.5, 16)
    assert budget.source.startswith("cgroup CPU quota")


def test_v2_limit_on_a_parent_folder_counts(tmp_path):
    # Kubernetes sets the pod's limit; the container's own folder below it says "max".
    root = v2_tree(tmp_path, {"kubepods": "max 100000", "kubepods/pod1": "300000 100000", "kubepods/pod1/ctr": "max 100000"})
    assert detect(environ={}, proc_cgroup="0::/kubepods/pod1/ctr\n", root=root, affinity=64).threads == 3


def test_no_quota_uses_the_affinity_mask(tmp_path):
    root = v2_tree(tmp_path, {"": "max 100000"})
    budget = detect(environ={}, proc_cgroup="0::/\n", root=root, affinity=6)
    assert (budget.threads, budget.quota) == (6, None)
    # A quota above the CPUs the process may run on does not raise the count.
    root2 = v2_tree(tmp_path / "b", {"": "800000 100000"})
    assert detect(environ={}, proc_cgroup="0::/\n", root=root2, affinity=2).threads == 2


def test_fractional_quota_below_one_cpu_gives_one_thread(tmp_path):
    root = v2_tree(tmp_path, {"": "50000 100000"})
    assert detect(environ={}, proc_cgroup="0::/\n", root=root, affinity=8).threads == 1


def test_v1_cfs_quota(tmp_path):
    cpu = tmp_path / "cpu,cpuacct"
    (cpu / "docker" / "abc").mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (cpu / "docker" / "abc" / "cpu.cfs_quota_us").write_text("200000\n")
    (cpu / "docker" / "abc" / "cpu.cfs_period_us").write_text("100000\n")
    proc = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"
    assert cgroup_quota(proc, tmp_path) == 2.0
    assert detect(environ={}, proc_cgroup=proc, root=tmp_path, affinity=32).threads == 2


def test_variables_override_the_quota_in_order(tmp_path):
    root = v2_tree(tmp_path, {"": "100000 100000"})
    args = {"proc_cgroup": "0::/\n", "root": root, "affinity": 8}
    assert detect(environ={"OMP_NUM_THREADS": "3"}, **args).threads == 3
    chosen = detect(environ={"OMP_NUM_THREADS": "3", "VISION_TRAINER_CPU_THREADS": "5"}, **args)
    assert (chosen.threads, chosen.source) == (5, "CPU_THREADS")
    # Not a positive integer: ignored, the next source decides.
    assert detect(environ={"OMP_NUM_THREADS": "lots", "VISION_TRAINER_CPU_THREADS": "0"}, **args).threads == 1


def test_data_loader_workers_capped_by_the_budget(monkeypatch):
    monkeypatch.setattr(cpu_budget, "_budget", cpu_budget.CpuBudget(2, "test", None, 2))
    assert [cpu_budget.data_loader_workers(n) for n in (0, 1, 2, 8)] == [0, 1, 2, 2]


def test_a_fresh_interpreter_sizes_torch_and_openmp_from_the_budget():
    script = (
        "import json, os, vision_trainer, torch\n"
        "print(json.dumps({'intra': torch.get_num_threads(), 'interop': torch.get_num_interop_threads(),"
        " 'omp': os.environ.get('OMP_NUM_THREADS'), 'mkl': os.environ.get('MKL_NUM_THREADS')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "OPENBLAS_"))}
    env.update({"PYTHONPATH": str(PYTHON_DIR), "VISION_TRAINER_CPU_THREADS": "1"})
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"intra": 1, "interop": 1, "omp": "1", "mkl": "1"}
