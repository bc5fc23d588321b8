"""Training on several processes and machines (DDP), for every trainer.

One `vision-trainer train` runs per node (a machine, or a pod of a PyTorchJob/TrainJob). Its
Python interpreter, the one the TypeScript bridge talks to, is the node's *launcher*: it starts
the node's worker processes with torch's elastic launcher (`elastic_launch`, the Python API of
torchrun) and a static rendezvous at MASTER_ADDR:MASTER_PORT, so global rank = node rank x
processes per node + local rank, and global rank 0 is always on node 0. Each worker runs the
framework's own distributed training (timm: DDP + DistributedSampler as in timm's train.py;
transformers: Trainer through accelerate; ultralytics: its DDP training loop) and reports
through `TrainerEvents` like a single-process run:

- Global rank 0 sends every event over a Unix socket to its node's Node process, which answers
  as the bridge's `emit` would (None or "stop"). Workers cannot call the bridge's JavaScript
  functions: those live in the launcher, whose main thread is busy launching.
- Every other rank sends nothing.
- A stop must happen at the same batch on every rank (a rank that leaves early hangs the others
  in their next collective), so the ranks vote after every batch: each node's local rank 0 adds
  its Node process's stop file (written when that node is asked to stop), rank 0 adds the
  socket's "stop" answer, and one all-reduce decides for everyone.
- Only global rank 0 writes checkpoints (the model is the same on every rank).

The launchers of all nodes keep a heartbeat in the rendezvous store (`NodeMonitor`), from the
job's check-in (`check_in`: node 0 hosts the store as soon as its Python runs, before any node
downloads its dataset) to the end of training. When training fails, each node leaves a note
saying why; node 0 turns its own failure, the notes and the missing heartbeats into one error
that names the node at fault. A node whose heartbeat stops for `node_timeout_seconds` is
declared lost even if no collective noticed, before the launch as during training; a node that
never checks in is given up after `join_timeout_seconds`.
"""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import cpu_budget
from ..protocol import AnnounceFailureAnswer, AnnounceFailureParams, CheckInAnswer, CheckInParams, DistributedParams, TrainAnswer, TrainParams
from ..support import die_with_parent, entry, error_envelope, plain

log = logging.getLogger("vision_trainer")

HEARTBEAT_SECONDS = 1.0
# After a failure, a peer that has neither left a note nor beaten for this long is gone.
SILENCE_SECONDS = 4.0
STORE_PREFIX = "vision-trainer"
# How long a collective may wait for the slowest rank. Ranks wait for each other around rank 0's
# checkpoint writes and ultralytics' final validation; a vanished node is caught sooner by the
# heartbeats (NodeMonitor), so this only bounds a rank that hangs while its node is alive.
COLLECTIVE_TIMEOUT_SECONDS = 1800.0

# Errors raised by a collective because a peer went away; they say nothing about the cause.
_PEER_GONE = (
    "connection closed by peer",
    "connection reset",
    "broken pipe",
    "socket closed",
    "nccl communicator was aborted",
    "remote process exited",
    "dist network error",
    "distnetworkerror",
    "connection refused",
    "timed out",
    "timeout",
    "read error",
    "write error",
    "unhandled system error",
    "recv",
    "process group watchdog",
)


class DistributedSetupError(ValueError):
    """The node's devices cannot run the requested processes (TypeScript reports it as a
    configuration error, exit 2)."""


class NodeLostError(RuntimeError):
    """A node of the job stopped answering (killed, evicted, partitioned) or was stopped."""


class WorkerFailure(RuntimeError):
    """A worker's exception, re-raised in the launcher with the worker's own type, message and
    traceback (support.error_envelope sends `envelope` as it is)."""

    def __init__(self, envelope: dict[str, Any], prefix: str = ""):
        self.envelope = {**envelope, "message": prefix + envelope["message"]}
        super().__init__(f"{envelope['type']}: {self.envelope['message']}")


@dataclass(frozen=True)
class Ranks:
    """Where this worker sits in the job (from the variables the elastic agent sets)."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    node_rank: int
    nnodes: int

    @property
    def reports(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Ranks:
        return cls(
            rank=int(os.environ["RANK"]),
            local_rank=int(os.environ["LOCAL_RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_world_size=int(os.environ["LOCAL_WORLD_SIZE"]),
            node_rank=int(os.environ["GROUP_RANK"]),
            nnodes=int(os.environ["GROUP_WORLD_SIZE"]),
        )


def node_ranks(plan: DistributedParams, node: int) -> str:
    """The global ranks of a node's workers (nodes run the same number of processes)."""
    n = plan["nproc_per_node"]
    if not isinstance(n, int):
        return "its workers"
    return f"rank {node * n}" if n == 1 else f"ranks {node * n}-{node * n + n - 1}"


# ---------------------------------------------------------------------------------------------
# Devices


def local_devices(device: str, nproc: int | str) -> tuple[int, list[str] | None]:
    """(processes on this node, the CUDA_VISIBLE_DEVICES entries they use, or None on CPU).

    DEVICE=0,1,...: one process per listed GPU. DEVICE=cuda/auto with NPROC_PER_NODE=auto|gpu: one
    per visible GPU. DEVICE=cpu: NPROC_PER_NODE processes on the CPU (gloo). TypeScript has checked
    what it can without seeing the machine (src/jobs/distributed.ts); this checks the rest."""
    visible = _visible_gpus()
    spec = device.strip()
    if spec == "cpu" or (spec == "auto" and not visible):
        count = 1 if nproc in ("auto", "gpu") else int(nproc)
        if nproc == "gpu":
            raise DistributedSetupError("NPROC_PER_NODE=gpu asks for one process per GPU, but this node has none (torch sees no CUDA device)")
        return count, None
    if spec[0].isdigit():
        indices = [int(i) for i in spec.split(",")]
    elif nproc in ("auto", "gpu"):
        indices = list(range(len(visible)))
    else:
        indices = list(range(int(nproc)))
    if not visible:
        raise DistributedSetupError(f"DEVICE={device} asks for GPUs, but torch sees none on this node (set DEVICE=cpu, or give the pod GPUs)")
    missing = [i for i in indices if i >= len(visible)]
    if missing:
        raise DistributedSetupError(
            f"DEVICE={device} / NPROC_PER_NODE={nproc} needs GPU {', '.join(map(str, missing))}, but this node has {len(visible)} "
            f"(GPU 0-{len(visible) - 1}); use at most NPROC_PER_NODE={len(visible)} or list only those"
        )
    if not isinstance(nproc, str) and int(nproc) != len(indices):
        raise DistributedSetupError(f"NPROC_PER_NODE={nproc} does not match DEVICE={device} ({len(indices)} GPUs): one process runs per GPU")
    return len(indices), [visible[i] for i in indices]


def _visible_gpus() -> list[str]:
    """The CUDA_VISIBLE_DEVICES entries of the GPUs torch can use, in torch's index order."""
    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def worker_device(ranks: Ranks) -> torch.device:
    """The launcher has narrowed CUDA_VISIBLE_DEVICES to this node's GPUs, in local-rank order."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= ranks.local_world_size and os.environ.get("VISION_TRAINER_DIST_DEVICE") == "cuda":
        torch.cuda.set_device(ranks.local_rank)
        return torch.device("cuda", ranks.local_rank)
    return torch.device("cpu")


def init_process_group(device: torch.device, timeout_seconds: float = COLLECTIVE_TIMEOUT_SECONDS) -> None:
    """NCCL between GPUs, gloo on CPUs; addresses and ranks come from the elastic agent."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds), device_id=device if device.type == "cuda" else None)


# ---------------------------------------------------------------------------------------------
# What workers share: the event socket, the stop vote, sums across ranks


class SocketRelay:
    """Global rank 0's channel to its Node process: one JSON line per event, one JSON line back
    ({"answer": "stop" | null} or {"error": message}). Synchronous, like the bridge's emit."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.reader = self.sock.makefile("r", encoding="utf-8")

    def __call__(self, kind: str, event: dict) -> Any:
        self.sock.sendall((json.dumps(plain(event), allow_nan=False) + "\n").encode("utf-8"))
        line = self.reader.readline()
        if not line:
            raise ConnectionError(f"the job's Node process closed the event channel while a {kind} event was sent")
        reply = json.loads(line)
        if reply.get("error"):
            raise RuntimeError(f"the job refused a {kind} event: {reply['error']}")
        return reply.get("answer")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _drop(kind: str, event: dict) -> None:
    return None


class StopVote:
    """Called by every rank after every batch (and at epoch ends): whether any rank wants to stop.
    The result is the same on every rank; `by_node` is the lowest node that asked."""

    def __init__(self, ranks: Ranks, stop_file: str | None, device: torch.device):
        self.ranks = ranks
        self.stop_file = stop_file
        self.device = device
        self.by_node: int | None = None

    def __call__(self, local_stop: bool) -> bool:
        import torch.distributed as dist

        mine = local_stop or (self.ranks.local_rank == 0 and self.stop_file is not None and os.path.exists(self.stop_file))
        # The lowest node that asks wins (node 0's own reason first): the vote is nnodes - node.
        vote = torch.tensor([self.ranks.nnodes - self.ranks.node_rank if mine else 0], dtype=torch.int64, device=self.device)
        dist.all_reduce(vote, op=dist.ReduceOp.MAX)
        value = int(vote.item())
        if value > 0 and self.by_node is None:
            self.by_node = self.ranks.nnodes - value
        return value > 0


def sum_across_ranks(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over all ranks (every rank must call it)."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def gather_to_all(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


@dataclass
class WorkerContext:
    """What a framework's worker function gets: its ranks, device, the event channel and vote."""

    ranks: Ranks
    device: torch.device
    relay: Any
    vote: StopVote
    plan: DistributedParams

    @property
    def reports(self) -> bool:
        return self.ranks.reports


def trainer_events(emit: Any, worker: WorkerContext | None, **kwargs: Any) -> Any:
    """The trainer's TrainerEvents: the bridge's `emit` in a single process; in a worker, the
    relay (global rank 0) or nothing (the others), and the stop vote."""
    from .trainer_events import TrainerEvents

    if worker is None:
        return TrainerEvents(emit, **kwargs)
    if not worker.reports:
        kwargs["tensorboard_dir"] = None  # one writer of the job's event files: global rank 0
    return TrainerEvents(None, relay=worker.relay, vote=worker.vote, reports=worker.reports, **kwargs)


def weights_dir(project: str, worker: WorkerContext | None) -> Path:
    """The run's checkpoint folder: the job's for one process or global rank 0; a folder of its
    own for every other rank, which writes nothing there but what a resume puts in place (the
    ranks of one node share the job's folder, and one writer per file keeps it whole)."""
    base = Path(project) / "train"
    if worker is None or worker.reports:
        return base / "weights"
    return base / f"rank-{worker.ranks.rank}" / "weights"


_CURRENT: WorkerContext | None = None


# ---------------------------------------------------------------------------------------------
# The worker process


def _worker(target: str, params: TrainParams, errors_dir: str) -> TrainAnswer | None:
    """Runs in each worker process (module-level: the spawn start method pickles it by name).
    `target` is "module:function", the framework's worker entry taking (params, context)."""
    global _CURRENT
    die_with_parent()
    # Node owns shutdown: Ctrl-C reaches the whole process group, a worker must not die mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ranks = Ranks.from_env()
    plan = params["distributed"]
    assert plan is not None
    relay = None
    try:
        device = worker_device(ranks)
        relay = SocketRelay(plan["events_socket"]) if ranks.reports and plan["events_socket"] else _drop
        _CURRENT = WorkerContext(ranks=ranks, device=device, relay=relay, vote=StopVote(ranks, plan["stop_file"], device), plan=plan)
        module, fn = target.split(":")
        answer = getattr(importlib.import_module(module), fn)(params, _CURRENT)
        if isinstance(answer, dict):
            answer = {**answer, "stopped_by_node": _CURRENT.vote.by_node}
        return answer
    except BaseException as exc:
        envelope = error_envelope(exc)["__error__"]
        Path(errors_dir, f"rank-{ranks.rank}.json").write_text(json.dumps({**plain(envelope), "time": time.time(), "rank": ranks.rank}), encoding="utf-8")
        raise
    finally:
        if isinstance(relay, SocketRelay):
            relay.close()


# ---------------------------------------------------------------------------------------------
# The launcher (the bridged interpreter of each node)


def launch(target: str, params: TrainParams) -> TrainAnswer:
    """Runs `target` (the framework's worker entry) on every process of this node, joined with
    the other nodes; returns local rank 0's answer (global rank 0's on node 0)."""
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    plan = params["distributed"]
    assert plan is not None
    try:
        nproc, gpus = local_devices(params["device"], plan["nproc_per_node"])
    except DistributedSetupError as exc:
        # The other nodes learn it now, not at the end of their rendezvous timeout.
        announce_failure(plan, {**error_envelope(exc)["__error__"], "exit_code": 2}, float(plan["rendezvous_timeout_seconds"]))
        raise
    plan = {**plan, "nproc_per_node": nproc}
    worker_params: TrainParams = {**params, "distributed": plan}
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        os.environ["VISION_TRAINER_DIST_DEVICE"] = "cuda"
        worker_params["device"] = ",".join(str(i) for i in range(nproc))
    else:
        os.environ["VISION_TRAINER_DIST_DEVICE"] = "cpu"
        worker_params["device"] = "cpu"
    # The node's CPU budget (cpu_budget.py) is shared by its workers, which size their thread
    # pools from this variable when they import the package (torchrun gives each worker 1 thread).
    os.environ[cpu_budget.OVERRIDE] = str(max(1, cpu_budget.budget().threads // nproc))
    work = Path(params["project"]) / "distributed"
    errors_dir = work / "errors"
    errors_dir.mkdir(parents=True, exist_ok=True)
    for stale in errors_dir.glob("rank-*.json"):
        stale.unlink()

    config = LaunchConfig(
        min_nodes=plan["nnodes"],
        max_nodes=plan["nnodes"],
        nproc_per_node=nproc,
        run_id=plan["run_id"],
        rdzv_backend="static",
        rdzv_endpoint=f"{plan['master_addr']}:{plan['master_port']}",
        rdzv_configs={"rank": plan["node_rank"], "timeout": int(plan["rendezvous_timeout_seconds"])},
        # A failed worker fails the node: the platform retries the job, which resumes from its
        # last checkpoint on a fresh rendezvous (a restart in place would repeat the failure).
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
        # SIGINT stays with Node (Ctrl-C: stop after the batch); SIGTERM from Node ends the workers.
        signals_to_handle="SIGTERM,SIGHUP,SIGQUIT",
        logs_specs=DefaultLogsSpecs(log_dir=str(work / "torchelastic")),
    )
    # Python's stderr reaches the job's output (the "vision_trainer" logger has no handler there).
    print(
        f"vision-trainer: node {plan['node_rank']} of {plan['nnodes']}: {nproc} worker process(es) on "
        f"{'GPU ' + ','.join(gpus) if gpus else 'the CPU'}, rendezvous at {plan['master_addr']}:{plan['master_port']}",
        file=sys.stderr,
        flush=True,
    )
    monitor = _monitor_for(plan)
    monitor.gather()
    # The elastic agent installs its own SIGTERM/SIGHUP/SIGQUIT handlers and leaves them: after
    # the launch this interpreter must end on them as before (Node closes it with SIGTERM).
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    try:
        with _main_script_hidden():
            results = elastic_launch(config, _worker)(target, worker_params, str(errors_dir))
    except ChildFailedError as exc:
        own = _own_failure(errors_dir, exc)
        monitor.leave_note({"kind": "failed", **own})
        raise monitor.explain(own) from None
    except BaseException as exc:  # the rendezvous, a signal from Node, the monitor's abort
        if monitor.lost_node is not None:
            raise monitor.explain(None) from None
        if _is_signal(exc):
            # Node closed this interpreter (a forced stop) or died: this node is going away.
            monitor.leave_note({"kind": "stopped", "message": f"its job process ended ({exc})"})
            raise
        monitor.leave_note({"kind": "failed", **error_envelope(exc)["__error__"], "peer_gone": _is_peer_gone(str(exc))})
        raise _rendezvous_error(exc, plan, monitor) from exc
    finally:
        monitor.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    # The agent keys its workers' return values by global rank: this node's local rank 0 is the first.
    answer = results.get(plan["node_rank"] * nproc)
    if answer is None:
        raise RuntimeError(f"local rank 0 of node {plan['node_rank']} returned no answer (returned: ranks {sorted(results)})")
    return answer


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """The spawn start method re-runs the parent's main script in every child (as __mp_main__).
    This interpreter's main script is pythonia's bridge loop, which would try to talk to Node from
    each worker: without a `__file__` the children import only what the worker function needs."""
    main = sys.modules["__main__"]
    path = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


def _own_failure(errors_dir: Path, exc: Any) -> dict[str, Any]:
    """The first failure among this node's workers: the error file our worker wrapper wrote, or
    what the agent saw (a worker killed by a signal writes nothing)."""
    notes = []
    for f in errors_dir.glob("rank-*.json"):
        try:
            notes.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    # A worker's own exception explains more than the connection errors of the ranks that saw it go.
    notes.sort(key=lambda n: (_is_peer_gone(n.get("message", "")), n.get("time", 0)))
    if notes:
        n = notes[0]
        return {k: n[k] for k in ("type", "module", "message", "traceback", "out_of_memory", "rank")} | {"peer_gone": _is_peer_gone(n["message"])}
    rank, failure = exc.get_first_failure()
    return {
        "type": "ProcessExited",
        "module": __name__,
        "message": f"worker process exited with code {failure.exitcode}" + (f" ({failure.signal_name()})" if failure.exitcode < 0 else ""),
        "traceback": "",
        "out_of_memory": False,
        "rank": rank,
        "peer_gone": False,
    }


def _is_peer_gone(message: str) -> bool:
    text = message.lower()
    return any(p in text for p in _PEER_GONE)


def _is_signal(exc: BaseException) -> bool:
    return type(exc).__name__ == "SignalException" or isinstance(exc, KeyboardInterrupt)


def _rendezvous_error(exc: BaseException, plan: DistributedParams, monitor: NodeMonitor) -> BaseException:
    text = f"{type(exc).__name__}: {exc}"
    if plan["node_rank"] == 0 and ("waiting for clients" in text.lower() or "timed out" in text.lower()):
        joined = monitor.nodes_seen()
        missing = [n for n in range(plan["nnodes"]) if n not in joined]
        who = ", ".join(f"node {n}" for n in missing) or "some nodes"
        return NodeLostError(
            f"the rendezvous at {plan['master_addr']}:{plan['master_port']} timed out after {plan['rendezvous_timeout_seconds']:g} s: "
            f"{who} never joined (NNODES={plan['nnodes']}). Check that every node's pod started and can reach MASTER_ADDR, "
            "or raise RENDEZVOUS_TIMEOUT_SECONDS if dataset downloads take longer"
        )
    if "timed out" in text.lower() or "connection refused" in text.lower() or "connect" in text.lower():
        return NodeLostError(
            f"node {plan['node_rank']} could not join the rendezvous at {plan['master_addr']}:{plan['master_port']} "
            f"within {plan['rendezvous_timeout_seconds']:g} s ({text[:300]}); node 0 must be running and reachable there"
        )
    return exc


class NodeMonitor:
    """Each node's heartbeat and failure note in the rendezvous store, which node 0 hosts from its
    check-in on (`open`). Beats are counters, not timestamps: nodes' clocks may differ."""

    def __init__(self, plan: DistributedParams):
        self.plan = plan
        self.node = plan["node_rank"]
        self.peers = [n for n in range(plan["nnodes"]) if n != self.node]
        self.store: Any = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        # Set once a node other than node 0 has reached node 0's store, or has given up on it.
        self.connected = threading.Event()
        self.launching = True
        self.last_beats: dict[int, tuple[int, float]] = {}
        self.lost_node: int | None = None
        self.thread = threading.Thread(target=self._run, name="vision-trainer-heartbeat", daemon=True)
        self.stop_note_left = False
        self.checked_in_at: float | None = None

    def key(self, name: str) -> str:
        return f"{STORE_PREFIX}/{self.plan['run_id']}/{name}"

    def open(self) -> None:
        """The node's check-in: node 0 hosts the rendezvous store (torch's static rendezvous later
        shares its server: multi_tenant), every node beats in it from now on, through its dataset
        download, so a node that dies before it joins is noticed by its silence."""
        if not self.peers or self.checked_in_at is not None:
            return
        self.checked_in_at = time.monotonic()
        if self.node == 0:
            from torch.distributed import TCPStore

            self.store = TCPStore(
                self.plan["master_addr"],
                int(self.plan["master_port"]),
                is_master=True,
                wait_for_workers=False,
                multi_tenant=True,
                timeout=datetime.timedelta(seconds=10),
            )
            self.connected.set()
        self._say(
            f"hosts the rendezvous store on {self.plan['master_addr']}:{self.plan['master_port']}"
            if self.node == 0
            else f"checks in at node 0's rendezvous store on {self.plan['master_addr']}:{self.plan['master_port']}"
        )
        self.thread.start()

    def _say(self, what: str) -> None:
        # Python's stderr reaches the job's output (the "vision_trainer" logger has no handler there).
        print(f"vision-trainer: node {self.node} of {self.plan['nnodes']} {what}", file=sys.stderr, flush=True)

    def adopt(self, plan: DistributedParams) -> None:
        """The launch's full plan (its stop file, its resolved process count) for a monitor that
        checked in earlier."""
        self.plan = plan

    def stop(self) -> None:
        with self.lock:
            self.launching = False
        self.stopping.set()

    @property
    def join_timeout(self) -> float:
        return float(self.plan["join_timeout_seconds"])

    def _connect(self) -> bool:
        from torch.distributed import TCPStore

        deadline = (self.checked_in_at or time.monotonic()) + self.join_timeout
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                # The client retries a refused connection for its whole timeout: no longer than the deadline.
                timeout = datetime.timedelta(seconds=max(1.0, min(10.0, deadline - time.monotonic())))
                store = TCPStore(self.plan["master_addr"], int(self.plan["master_port"]), is_master=False, wait_for_workers=False, timeout=timeout)
                # The first beat is the check-in: node 0 tells a node that checked in and died
                # (silent for NODE_TIMEOUT_SECONDS) from one that never came (JOIN_TIMEOUT_SECONDS).
                store.add(self.key(f"beat/{self.node}"), 1)
                with self.lock:
                    self.store = store
                return True
            except Exception:  # noqa: BLE001 - node 0's store is not up yet: try again
                self.stopping.wait(HEARTBEAT_SECONDS)
        return False

    def gather(self) -> None:
        """Before the elastic launch, every node meets in the rendezvous store, in Python: each
        node marks its arrival, node 0 waits for every peer and the peers wait for node 0. Torch's
        own rendezvous waits inside C++ for the full RENDEZVOUS_TIMEOUT_SECONDS whatever happened
        to a node; this wait fails the job the moment a node says why it will never come (its
        note, `announce_failure`), or its heartbeat has stopped for NODE_TIMEOUT_SECONDS (killed
        without a word during its download), or it never checked in within JOIN_TIMEOUT_SECONDS,
        or node 0's store went away."""
        if not self.peers:
            return
        self.open()
        where = f"{self.plan['master_addr']}:{self.plan['master_port']}"
        if self.node != 0:
            while not self.connected.wait(0.25):
                self._check_stop()
            if self.store is None:
                raise NodeLostError(
                    f"node {self.node} could not reach node 0's rendezvous store at {where} within JOIN_TIMEOUT_SECONDS="
                    f"{self.join_timeout:g} s: node 0's pod did not start, failed before its store opened, or MASTER_ADDR/MASTER_PORT do not reach it"
                )
            self._store_call(lambda: self.store.set(self.key(f"arrived/{self.node}"), "1"))
            self._await([0])
        else:
            self._await(self.peers)
            self._store_call(lambda: self.store.set(self.key("arrived/0"), "1"))

    def _await(self, nodes: list[int]) -> None:
        deadline = time.monotonic() + float(self.plan["rendezvous_timeout_seconds"])
        waiting = list(nodes)
        while waiting:
            for node in list(waiting):
                note_key, arrived_key = self.key(f"note/{node}"), self.key(f"arrived/{node}")
                note = self._store_call(lambda k=note_key: json.loads(self.store.get(k)) if self.store.check([k]) else None)
                if note is not None:
                    raise _before_start(self.plan, node, note)
                if self._store_call(lambda k=arrived_key: self.store.check([k])):
                    waiting.remove(node)
                    continue
                absent = self._absence(node)
                if absent is not None:
                    raise NodeLostError(absent)
            if not waiting:
                break
            self._check_stop()
            if time.monotonic() > deadline:
                who = ", ".join(f"node {n}" for n in waiting)
                raise NodeLostError(
                    f"the rendezvous at {self.plan['master_addr']}:{self.plan['master_port']} timed out after "
                    f"{self.plan['rendezvous_timeout_seconds']:g} s: {who} never joined (NNODES={self.plan['nnodes']}). Check that every "
                    "node's pod started and can reach MASTER_ADDR, or raise RENDEZVOUS_TIMEOUT_SECONDS if dataset downloads take longer"
                )
            time.sleep(0.25)

    def _check_stop(self) -> None:
        if os.path.exists(self.plan["stop_file"]):
            raise NodeLostError(f"the job was asked to stop while node {self.node} waited for the other nodes to join")

    def _store_call(self, call: Any) -> Any:
        """A store operation before the launch; on a node other than node 0, a store that fails
        means node 0's process is gone (its job failed or was stopped: its completion says why)."""
        try:
            with self.lock:
                return call()
        except Exception as exc:  # noqa: BLE001 - the store's client does not reconnect: node 0 is gone
            raise NodeLostError(
                f"node 0's rendezvous store at {self.plan['master_addr']}:{self.plan['master_port']} went away before training started "
                f"({type(exc).__name__}: {str(exc)[:200]}): node 0's job failed or was stopped, and its completion says why"
            ) from None

    def _absence(self, node: int) -> str | None:
        """Why `node` will not come, from its heartbeat as this node's heartbeat thread saw it."""
        now = time.monotonic()
        seen = self.last_beats.get(node)
        where = f"node {node} ({node_ranks(self.plan, node)})"
        if seen is None or seen[0] <= 0:
            if now - (self.checked_in_at or now) > self.join_timeout:
                return (
                    f"{where} never checked in at the rendezvous store on {self.plan['master_addr']}:{self.plan['master_port']} within "
                    f"JOIN_TIMEOUT_SECONDS={self.join_timeout:g} s: its pod did not start, failed before its Python ran, or cannot reach "
                    "MASTER_ADDR. Retry the job once every node can start"
                )
            return None
        silent = now - seen[1]
        if silent > float(self.plan["node_timeout_seconds"]):
            return (
                f"{where} stopped answering before training started: it checked in, then sent no heartbeat for {silent:.0f} s "
                f"(NODE_TIMEOUT_SECONDS={float(self.plan['node_timeout_seconds']):g}): its process was killed or its machine left the "
                "cluster during its dataset download or preparation; retry the job"
            )
        return None

    def _run(self) -> None:
        if self.store is None:
            connected = self._connect()
            self.connected.set()
            if not connected:
                return
            self._say("checked in (its heartbeat runs until training ends)")
        while True:
            try:
                with self.lock:
                    self.store.add(self.key(f"beat/{self.node}"), 1)
                self._leave_stop_note()
                self._watch_peers()
            except Exception as exc:  # noqa: BLE001 - node 0's store went away; the training itself will fail or finish
                log.debug("heartbeat: %s", exc)
            if self.stopping.wait(HEARTBEAT_SECONDS):
                return

    def _leave_stop_note(self) -> None:
        stop_file = self.plan["stop_file"]
        if self.stop_note_left or not os.path.exists(stop_file):
            return
        try:
            reason = Path(stop_file).read_text(encoding="utf-8").strip()[:500]
        except OSError:
            reason = ""
        self.leave_note({"kind": "stopped", "message": reason or "asked to stop"})
        self.stop_note_left = True

    def _beat_of(self, node: int) -> int:
        key = self.key(f"beat/{node}")
        with self.lock:
            return int(self.store.get(key)) if self.store.check([key]) else 0

    def _watch_peers(self) -> None:
        """A peer silent for node_timeout_seconds is lost: the training is interrupted at once (a
        collective with a vanished machine may otherwise wait until its own timeout)."""
        now = time.monotonic()
        for peer in self.peers:
            beat = self._beat_of(peer)
            seen = self.last_beats.get(peer)
            if seen is None or beat != seen[0]:
                self.last_beats[peer] = (beat, now)
            elif beat > 0 and now - seen[1] > float(self.plan["node_timeout_seconds"]) and self._note_of(peer) is None:
                self._interrupt(peer, now - seen[1])
                return

    def _interrupt(self, peer: int, silent: float) -> None:
        """Stops this node's workers through elastic's own SIGTERM handler, which raises in the
        launching thread; only while that handler is installed (the workers run), never before
        or after, when SIGTERM would simply end this interpreter."""
        from torch.distributed.elastic.multiprocessing.api import _terminate_process_handler

        with self.lock:
            if not self.launching or self.lost_node is not None or signal.getsignal(signal.SIGTERM) is not _terminate_process_handler:
                return
            self.lost_node = peer
        log.error("node %d has sent no heartbeat for %.0f s: interrupting the training", peer, silent)
        os.kill(os.getpid(), signal.SIGTERM)

    def nodes_seen(self) -> set[int]:
        seen = {self.node}
        if self.store is None:
            return seen
        for n in self.peers:
            try:
                if self._beat_of(n) > 0:
                    seen.add(n)
            except Exception:  # noqa: BLE001
                pass
        return seen

    def leave_note(self, note: dict[str, Any]) -> bool:
        if self.store is None:
            return False
        try:
            with self.lock:
                self.store.set(self.key(f"note/{self.node}"), json.dumps(plain({**note, "node": self.node}), allow_nan=False))
            return True
        except Exception as exc:  # noqa: BLE001 - node 0's store is gone: node 0 names this node from its silence
            log.debug("could not leave a note: %s", exc)
            return False

    def _note_of(self, node: int) -> dict[str, Any] | None:
        key = self.key(f"note/{node}")
        try:
            with self.lock:
                return json.loads(self.store.get(key)) if self.store.check([key]) else None
        except Exception:  # noqa: BLE001
            return None

    def explain(self, own: dict[str, Any] | None) -> BaseException:
        """The job's error: a peer's own failure or loss when that is what broke the collective,
        else this node's failure. Waits (bounded) until every peer has left a note or gone quiet."""
        peers = self._peer_states() if self.store is not None else {}
        for peer, state in sorted(peers.items()):
            if state and state.get("kind") == "failed" and not state.get("peer_gone"):
                where = f"node {peer} ({node_ranks(self.plan, peer)})"
                return WorkerFailure(_envelope(state), prefix=f"{where} failed: ")
        for peer, state in sorted(peers.items()):
            if state and state.get("kind") == "stopped":
                return NodeLostError(
                    f"node {peer} ({node_ranks(self.plan, peer)}) was stopped ({state['message']}) and the job cannot go on without it; "
                    "retry the job: it resumes from its last checkpoint"
                )
        lost = [p for p, s in sorted(peers.items()) if s is None]
        if self.lost_node is not None and self.lost_node not in lost:
            lost.insert(0, self.lost_node)
        if lost:
            who = " and ".join(f"node {p} ({node_ranks(self.plan, p)})" for p in lost)
            return NodeLostError(
                f"{who} of the job was lost: it stopped answering (its processes were killed, or its machine left the cluster); "
                "retry the job: it resumes from its last checkpoint"
            )
        if own is None:
            return RuntimeError("the distributed training was interrupted")
        return WorkerFailure(
            _envelope(own), prefix=f"node {self.node} ({node_ranks(self.plan, self.node)}, rank {own.get('rank')}) failed: " if self.peers else ""
        )

    def _peer_states(self) -> dict[int, dict[str, Any] | None]:
        """Each peer's note, or None for a peer that went quiet without one."""
        states: dict[int, dict[str, Any] | None] = {}
        beats = {p: (self._safe_beat(p), time.monotonic()) for p in self.peers}
        deadline = time.monotonic() + float(self.plan["node_timeout_seconds"])
        while True:
            for peer in self.peers:
                if peer in states:
                    continue
                note = self._note_of(peer)
                if note is not None:
                    states[peer] = note
                    continue
                beat = self._safe_beat(peer)
                if beat != beats[peer][0]:
                    beats[peer] = (beat, time.monotonic())
                elif time.monotonic() - beats[peer][1] > SILENCE_SECONDS:
                    states[peer] = None
            if len(states) == len(self.peers) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        for peer in self.peers:
            states.setdefault(peer, None)
        return states

    def _safe_beat(self, node: int) -> int:
        try:
            return self._beat_of(node)
        except Exception:  # noqa: BLE001 - the store itself is gone (node 0 died)
            return -1


class PeerFailedError(RuntimeError):
    """Another node failed before its launch; `envelope` carries its exit code, which node 0's
    job exits with (a configuration error stays one, a storage outage stays retryable)."""

    def __init__(self, envelope: dict[str, Any]):
        self.envelope = envelope
        super().__init__(envelope["message"])


def _before_start(plan: DistributedParams, peer: int, note: dict[str, Any]) -> BaseException:
    where = f"node {peer} ({node_ranks(plan, peer)})"
    if note.get("kind") == "stopped":
        return NodeLostError(f"{where} was stopped before training started ({note.get('message', '')}); retry the job")
    return PeerFailedError(
        {
            **_envelope(note),
            "type": "PeerFailedError",
            "module": __name__,
            "message": f"{where} failed before training started: {note.get('message', '')}",
            "exit_code": int(note.get("exit_code", 11)),
        }
    )


# This interpreter's check-in (one job per interpreter): the launch and a note before it reuse it.
_CHECKED_IN: NodeMonitor | None = None


def _monitor_for(plan: DistributedParams) -> NodeMonitor:
    """The monitor this node checked in with, given the launch's plan, else a new one."""
    monitor = _CHECKED_IN
    if monitor is None or monitor.plan["run_id"] != plan["run_id"] or monitor.stopping.is_set():
        return NodeMonitor(plan)
    monitor.adopt(plan)
    return monitor


@entry
def check_in(params: CheckInParams) -> CheckInAnswer:
    """A node of a multi-node job checks in as soon as its Python runs, before its dataset
    download: node 0 hosts the rendezvous store, every node starts beating in it (the peers
    connect in the background, for up to JOIN_TIMEOUT_SECONDS). The launch continues from here."""
    global _CHECKED_IN
    plan = params["distributed"]
    if plan["nnodes"] < 2:
        return {"hosting": False}
    monitor = _monitor_for(plan)
    monitor.open()
    _CHECKED_IN = monitor
    return {"hosting": plan["node_rank"] == 0}


def announce_failure(plan: DistributedParams, note: dict[str, Any], wait_seconds: float) -> bool:
    """A node other than node 0 that will not join (its own refusal, a download that failed, a
    stop) leaves a note in node 0's rendezvous store, at once through its check-in's connection,
    else waiting up to `wait_seconds` for node 0 to host it; node 0's `gather` fails the job with
    it. False when node 0 never came (node 0 then notices this node's silence, or that it never
    checked in)."""
    if plan["node_rank"] == 0 or plan["nnodes"] < 2:
        return False
    checked_in = _CHECKED_IN
    if checked_in is not None and checked_in.plan["run_id"] == plan["run_id"] and checked_in.store is not None and checked_in.leave_note(note):
        return True
    from torch.distributed import TCPStore

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            store = TCPStore(plan["master_addr"], int(plan["master_port"]), is_master=False, wait_for_workers=False, timeout=datetime.timedelta(seconds=5))
            key = f"{STORE_PREFIX}/{plan['run_id']}/note/{plan['node_rank']}"
            store.set(key, json.dumps(plain({**note, "node": plan["node_rank"]}), allow_nan=False))
            return True
        except Exception as exc:  # noqa: BLE001 - node 0's store is not up yet (still downloading): try again
            if time.monotonic() + HEARTBEAT_SECONDS > deadline:
                log.warning("node 0's rendezvous store at %s:%s did not answer: %s", plan["master_addr"], plan["master_port"], exc)
                return False
            time.sleep(HEARTBEAT_SECONDS)


@entry
def announce(params: AnnounceFailureParams) -> AnnounceFailureAnswer:
    """TypeScript's door to `announce_failure`: the job of a node other than node 0 failed or was
    stopped before its launch (a download, the dataset, the preflight)."""
    note = {"kind": params["kind"], "type": "NodeFailure", "module": __name__, "message": params["message"], "exit_code": params["exit_code"]}
    return {"delivered": announce_failure(params["distributed"], note, float(params["wait_seconds"]))}


def _envelope(note: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": note.get("type", "RuntimeError"),
        "module": note.get("module", __name__),
        "message": note.get("message", ""),
        "traceback": note.get("traceback", ""),
        "out_of_memory": bool(note.get("out_of_memory", False)),
    }
