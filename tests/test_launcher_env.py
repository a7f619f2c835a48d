"""The trainer takes its place in the world from the launcher's environment (docs/training.md, "Several
nodes"): two real local processes, started the way ``torchrun`` and DeepSpeed's launcher start them, each set
up by ``algorithms.distributed.init_distributed`` (gloo, CPU) and split by the trainer's own functions
(``tests/launcher_probe.py``). Each rank's ``DistInfo`` matches what its launcher said, and the ranks' shares
of the step prompts and of the held-out tasks are disjoint and cover the whole.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from algorithms.distributed import _free_port
from tests.helpers import REPO
from tests.launcher_probe import EVAL_TASKS, PROMPTS_PER_STEP

BIN = Path(sys.executable).parent
ENV = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
for _name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(_name, None)  # what the launchers set, and nothing left over from this process


def _launcher(name: str) -> str:
    path = BIN / name
    if not path.exists() and shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    return str(path) if path.exists() else shutil.which(name)


def _finish(procs: list[subprocess.Popen], out: Path) -> dict[int, dict]:
    for proc in procs:
        try:
            _, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("the launched ranks did not finish (their rendezvous did not pair up)")
        assert proc.returncode == 0, stderr[-4000:]
    ranks = {}
    for path in sorted(out.glob("rank*.json")):
        record = json.loads(path.read_text())
        ranks[record["dist"]["rank"]] = record
    return ranks


def _assert_split(ranks: dict[int, dict]) -> None:
    """Both ranks drew the same global batches; their shares are disjoint and cover each batch (slots and the
    prompts in them) and the held-out tasks."""
    assert sorted(ranks) == [0, 1]
    assert all(r["ranks_summed"] == 3.0 for r in ranks.values())  # 1 + 2: one world of both processes
    for step in ("1", "2", "3"):
        prompts = ranks[0]["steps"][step]["all"]
        assert ranks[1]["steps"][step]["all"] == prompts and len(prompts) == PROMPTS_PER_STEP
        shares = [ranks[r]["steps"][step]["mine"] for r in (0, 1)]
        slots = [[slot for slot, _ in share] for share in shares]
        assert not set(slots[0]) & set(slots[1])
        assert sorted(slots[0] + slots[1]) == list(range(PROMPTS_PER_STEP))
        assert all(prompts[slot] == task for share in shares for slot, task in share)
        assert len(shares[0]) == len(shares[1]) == PROMPTS_PER_STEP // 2
    evals = [ranks[r]["eval"] for r in (0, 1)]
    assert not set(evals[0]) & set(evals[1]) and sorted(evals[0] + evals[1]) == list(range(EVAL_TASKS))


def test_torchrun_one_node_two_ranks(tmp_path: Path) -> None:
    """``torchrun --nnodes 1 --nproc_per_node 2`` with a c10d rendezvous endpoint: the multi-node command of
    the docs with one node. Local rank = rank, both processes on this node."""
    cmd = [_launcher("torchrun"), "--nnodes", "1", "--nproc_per_node", "2", "--rdzv_backend", "c10d",
           "--rdzv_endpoint", f"127.0.0.1:{_free_port()}", "-m", "tests.launcher_probe", str(tmp_path)]
    ranks = _finish([subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)], tmp_path)
    for rank, record in ranks.items():
        assert record["dist"] == {"rank": rank, "world_size": 2, "local_rank": rank, "local_world_size": 2}
        assert record["env"]["LOCAL_WORLD_SIZE"] == "2" and record["hydra_args"] == [str(tmp_path)]
    _assert_split(ranks)


def test_deepspeed_launcher_two_nodes_of_one_rank(tmp_path: Path) -> None:
    """DeepSpeed's launcher with a hostfile of two nodes, one slot each, run once per node with ``--no_ssh
    --node_rank`` (what its pdsh mode runs on each node over ssh): here both "nodes" are this machine. Rank 1
    is local rank 0 of node 1, which only ``LOCAL_RANK`` tells from ``RANK``; without ``--no_local_rank`` the
    launcher also appends ``--local_rank=0``, which the entry point takes off before Hydra sees it."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=1\nnode-b slots=1\n")
    out = tmp_path / "out"
    out.mkdir()
    port = _free_port()
    procs = []
    for node_rank in (0, 1):
        cmd = [_launcher("deepspeed"), "--hostfile", str(hostfile), "--no_ssh", "--node_rank", str(node_rank),
               "--master_addr", "127.0.0.1", "--master_port", str(port), "--module", "tests.launcher_probe", str(out)]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    ranks = _finish(procs, out)
    for rank, record in ranks.items():
        assert record["dist"] == {"rank": rank, "world_size": 2, "local_rank": 0, "local_world_size": 1}
        assert record["env"]["CROSS_RANK"] == str(rank) and record["env"]["LOCAL_SIZE"] == "1"
        assert record["local_rank_arg"] == "0" and record["hydra_args"] == [str(out)]
    _assert_split(ranks)


def test_local_rank_argument_is_taken_off_for_hydra() -> None:
    from algorithms.train import split_local_rank_arg

    assert split_local_rank_arg(["--local_rank=3", "model=tiny"]) == (["model=tiny"], "3")
    assert split_local_rank_arg(["model=tiny", "--local-rank", "1", "trainer.lr=1"]) == (
        ["model=tiny", "trainer.lr=1"], "1")
    assert split_local_rank_arg(["model=tiny"]) == (["model=tiny"], None)


def test_launch_environment_without_a_launcher(monkeypatch) -> None:
    """What ``init_distributed`` reads before the process group exists: the local rank from the launcher that
    set one (torch-style first, then MPI's and Slurm's), and whether MPI started several processes."""
    from algorithms import distributed

    for name in (*distributed.LOCAL_RANK_VARS, *distributed.MPI_SIZE_VARS):
        monkeypatch.delenv(name, raising=False)
    assert distributed._env_int(distributed.LOCAL_RANK_VARS, 0) == 0 and not distributed.launched_by_mpi()
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "16")
    assert distributed._env_int(distributed.LOCAL_RANK_VARS, 0) == 5 and distributed.launched_by_mpi()
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert distributed._env_int(distributed.LOCAL_RANK_VARS, 0) == 2
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")  # mpirun -n 1, or Slurm's PMI for one task: a world of one
    assert not distributed.launched_by_mpi()


def test_an_mpi_launch_without_mpi4py_stops_in_one_line(monkeypatch) -> None:
    """``deepspeed --launcher openmpi`` starts the processes without ``RANK``: they used to be taken for a plain
    ``python`` run and each became a world of one; now the ranks are left to MPI, and without mpi4py the run
    stops saying so (before any process group or environment variable is touched)."""
    import importlib.util

    from algorithms import distributed

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", *distributed.MPI_SIZE_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "16")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mpi4py" else real(name, *a))
    with pytest.raises(distributed.LaunchError, match=r"no RANK: .* \(pip install mpi4py\)"):
        distributed.init_distributed()
    assert "RANK" not in os.environ and "WORLD_SIZE" not in os.environ


def test_each_rank_takes_its_local_gpu(monkeypatch) -> None:
    import torch

    from algorithms.distributed import LaunchError, _device_index

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert [_device_index(r) for r in (0, 7)] == [0, 7]
    with pytest.raises(LaunchError, match="local rank 8 has no GPU of its own: this node shows 8 GPUs"):
        _device_index(8)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # the launcher showed each process one GPU
    assert _device_index(3) == 0
