"""The pieces of common/distributed.py that need no second process: the event socket's wire
format, device planning on a CPU machine, the names given to a node's ranks, and the stop vote
in a one-process gloo group."""

import json
import os
import socket
import threading

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


def _plan(tmp_path, node: int, port: int, timeout: float = 30.0) -> dict:
    return {
        "nnodes": 2,
        "node_rank": node,
        "nproc_per_node": 1,
        "master_addr": "127.0.0.1",
        "master_port": port,
        "run_id": "job-gather",
        "rendezvous_timeout_seconds": timeout,
        "node_timeout_seconds": 10.0,
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

    alone = distributed.NodeMonitor(_plan(tmp_path, 0, _free_port(), timeout=1.0))
    with pytest.raises(distributed.NodeLostError, match=r"timed out after 1 s: node 1 never joined"):
        alone.gather()
