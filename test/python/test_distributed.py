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
