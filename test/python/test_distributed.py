"""The pieces of common/distributed.py that need no second process: the event socket's wire
format, device planning on a CPU machine, the names given to a node's ranks, and the stop vote
in a one-process gloo group."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from vision_trainer.common import distributed


def test_the_socket_relay_sends_json_lines_and_reads_the_answer(tmp_path):
    path = str(tmp_path / "events.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    seen = []

    def answer():
        conn, _ = server.accept()
        reader = conn.makefile("r", encoding="utf-8")
        for reply in ({"answer": None}, {"answer": "stop"}, {"error": "did not fit its schema"}):
            seen.append(json.loads(reader.readline()))
            conn.sendall((json.dumps(reply) + "\n").encode())
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    relay = distributed.SocketRelay(path)
    try:
        assert relay("batch", {"kind": "batch", "losses": {"loss": float("nan")}}) is None
        assert relay("epoch", {"kind": "epoch"}) == "stop"
        with pytest.raises(RuntimeError, match="the job refused a start event: did not fit its schema"):
            relay("start", {"kind": "start"})
    finally:
        relay.close()
        thread.join()
        server.close()
    assert seen[0] == {"kind": "batch", "losses": {"loss": None}}


def test_cpu_processes_and_refusals_on_a_machine_without_gpus(monkeypatch):
    monkeypatch.setattr(distributed, "_visible_gpus", lambda: [])
    assert distributed.local_devices("cpu", 2) == (2, None)
    assert distributed.local_devices("auto", "auto") == (1, None)
    with pytest.raises(distributed.DistributedSetupError, match=r"NPROC_PER_NODE=gpu .* has none"):
        distributed.local_devices("cpu", "gpu")
    with pytest.raises(distributed.DistributedSetupError, match="DEVICE=0,1 asks for GPUs, but torch sees none"):
        distributed.local_devices("0,1", 2)


def test_gpus_the_node_lacks_are_named(monkeypatch):
    monkeypatch.setattr(distributed, "_visible_gpus", lambda: ["0", "1"])
    assert distributed.local_devices("0,1", 2) == (2, ["0", "1"])
    assert distributed.local_devices("auto", "gpu") == (2, ["0", "1"])
    with pytest.raises(distributed.DistributedSetupError, match=r"needs GPU 2, 3, but this node has 2 .* at most NPROC_PER_NODE=2"):
        distributed.local_devices("cuda", 4)


def test_a_nodes_ranks():
    plan = {"nproc_per_node": 2}
    assert distributed.node_ranks(plan, 0) == "ranks 0-1"
    assert distributed.node_ranks(plan, 3) == "ranks 6-7"
    assert distributed.node_ranks({"nproc_per_node": 1}, 1) == "rank 1"


def test_the_stop_vote_in_a_one_process_group(tmp_path, monkeypatch):
    import torch
    import torch.distributed as dist

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ranks = distributed.Ranks(rank=0, local_rank=0, world_size=1, local_world_size=1, node_rank=0, nnodes=1)
        stop_file = tmp_path / "stop"
        vote = distributed.StopVote(ranks, str(stop_file), torch.device("cpu"))
        assert vote(False) is False
        assert vote.by_node is None
        stop_file.write_text("SIGTERM\n")
        assert vote(False) is True
        assert vote.by_node == 0
        assert distributed.sum_across_ranks([1.5, 2.0], torch.device("cpu")) == [1.5, 2.0]
    finally:
        dist.destroy_process_group()
    assert os.path.exists(stop_file)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plan(tmp_path, node: int, port: int, timeout: float = 30.0, join: float | None = None, node_timeout: float = 10.0) -> dict:
    return {
        "nnodes": 2,
        "node_rank": node,
        "nproc_per_node": 1,
        "master_addr": "127.0.0.1",
        "master_port": port,
        "run_id": "job-gather",
        "rendezvous_timeout_seconds": timeout,
        "join_timeout_seconds": timeout if join is None else join,
        "node_timeout_seconds": node_timeout,
        "events_socket": None,
        "stop_file": str(tmp_path / f"stop-{node}"),
    }


def test_node_0_fails_at_once_with_the_reason_a_peer_left_before_its_launch(tmp_path):
    port = _free_port()
    node0 = distributed.NodeMonitor(_plan(tmp_path, 0, port))
    raised: list[BaseException] = []

    def gather():
        try:
            node0.gather()
        except BaseException as exc:  # noqa: BLE001 - the assertion reads it
            raised.append(exc)

    thread = threading.Thread(target=gather)
    thread.start()
    note = {"kind": "failed", "type": "NodeFailure", "message": "DEVICE: torch sees no GPU", "exit_code": 2}
    assert distributed.announce_failure(_plan(tmp_path, 1, port), note, 20.0) is True
    thread.join(20)
    assert not thread.is_alive()
    [exc] = raised
    assert isinstance(exc, distributed.PeerFailedError)
    assert exc.envelope["exit_code"] == 2
    assert exc.envelope["message"] == "node 1 (rank 1) failed before training started: DEVICE: torch sees no GPU"


def test_gathering_ends_when_every_peer_has_arrived_and_names_one_that_never_does(tmp_path):
    port = _free_port()
    node0 = distributed.NodeMonitor(_plan(tmp_path, 0, port))
    thread = threading.Thread(target=node0.gather)
    thread.start()
    distributed.NodeMonitor(_plan(tmp_path, 1, port)).gather()
    thread.join(20)
    assert not thread.is_alive()

    alone = distributed.NodeMonitor(_plan(tmp_path, 0, _free_port(), join=1.0))
    with pytest.raises(distributed.NodeLostError, match=r"node 1 \(rank 1\) never checked in .* within JOIN_TIMEOUT_SECONDS=1 s"):
        alone.gather()
    alone.stop()

    # A peer that checks in and keeps beating, but never arrives (a slow download): the rendezvous timeout.
    port = _free_port()
    node0 = distributed.NodeMonitor(_plan(tmp_path, 0, port, timeout=3.0))
    node0.open()
    slow = distributed.NodeMonitor(_plan(tmp_path, 1, port, timeout=3.0))
    slow.open()
    with pytest.raises(distributed.NodeLostError, match=r"timed out after 3 s: node 1 never joined"):
        node0.gather()
    slow.stop()
    node0.stop()


def test_a_peer_that_checked_in_and_went_silent_before_joining_fails_the_job_after_the_node_timeout(tmp_path):
    port = _free_port()
    node0 = distributed.NodeMonitor(_plan(tmp_path, 0, port, timeout=600.0, node_timeout=2.0))
    node0.open()
    peer = distributed.NodeMonitor(_plan(tmp_path, 1, port, timeout=600.0, node_timeout=2.0))
    peer.open()
    assert peer.connected.wait(10) and peer.store is not None
    time.sleep(1.5)  # node 0's heartbeat thread has seen it beat
    peer.stop()  # killed during its dataset download: no note, its beats stop
    started = time.monotonic()
    with pytest.raises(distributed.NodeLostError, match=r"node 1 \(rank 1\) stopped answering before training started: it checked in, then sent no heartbeat"):
        node0.gather()
    assert time.monotonic() - started < 10  # not the 600 s rendezvous timeout
    node0.stop()


def test_a_peer_fails_fast_when_node_0_never_opens_its_store_or_goes_away_before_the_launch(tmp_path):
    never = distributed.NodeMonitor(_plan(tmp_path, 1, _free_port(), timeout=600.0, join=1.0))
    started = time.monotonic()
    with pytest.raises(distributed.NodeLostError, match=r"node 1 could not reach node 0's rendezvous store .* within JOIN_TIMEOUT_SECONDS=1 s"):
        never.gather()
    assert time.monotonic() - started < 10

    # Node 0 in a process of its own that checks in, sees node 1 beat, then ends (its job failed before the launch).
    port = _free_port()
    plan0 = json.dumps(_plan(tmp_path, 0, port, timeout=600.0))
    script = (
        "import json, time\n"
        "from vision_trainer.common import distributed as d\n"
        f"m = d.NodeMonitor(json.loads({plan0!r}))\n"
        "m.open()\n"
        "end = time.monotonic() + 300\n"
        "while m.last_beats.get(1, (0, 0))[0] <= 0 and time.monotonic() < end:\n"
        "    time.sleep(0.1)\n"
    )
    node0 = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    # Generous: node 0's interpreter imports torch first, which takes a minute on a loaded machine.
    peer = distributed.NodeMonitor(_plan(tmp_path, 1, port, timeout=600.0, join=300.0))
    try:
        peer.open()
        assert peer.connected.wait(300) and peer.store is not None
        started = time.monotonic()
        with pytest.raises(
            distributed.NodeLostError, match=r"node 0's rendezvous store at 127.0.0.1:\d+ went away before training started|node 0 .*stopped answering"
        ):
            peer.gather()
        assert time.monotonic() - started < 60  # not the 600 s rendezvous timeout
    finally:
        peer.stop()
        node0.wait(30)
