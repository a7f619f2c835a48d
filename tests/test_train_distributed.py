"""Two CPU ranks (torchrun + gloo) split the prompts and reproduce one rank's first-step loss."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_train_e2e import REPO, TINY

pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                                reason="torchrun not installed")


def first_step(run_dir: Path, nproc: int, algorithm: str) -> dict:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    overrides = [f"run_dir={run_dir}", *TINY, f"algorithm={algorithm}", "trainer.prompts_per_step=4",
                 "trainer.expert_per_step=4", "trainer.max_new_tokens=24", "trainer.total_steps=1", "trainer.eval_every=0", "trainer.save_every=0"]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "algorithms.train", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] == 1 and "loss/total" in r][0]


@pytest.mark.parametrize("algorithm", ["chord_mu"])
def test_two_ranks_give_the_one_rank_first_step_loss(tmp_path: Path, algorithm: str) -> None:
    one = first_step(tmp_path / "one", 1, algorithm)
    two = first_step(tmp_path / "two", 2, algorithm)
    # The same rollouts: every episode samples from a stream named by its global slot, not its rank.
    assert two["reward/mean"] == pytest.approx(one["reward/mean"], abs=1e-9)
    assert two["rollout/generated_tokens"] == one["rollout/generated_tokens"]
    assert one["loss/sft"] > 0  # the expert term (split 2 + 2 over the ranks) is live
    for key in ("loss/grpo", "loss/sft", "loss/total"):
        assert two[key] == pytest.approx(one[key], abs=1e-4), key


def test_two_ranks_gather_every_held_out_verdict(tmp_path: Path) -> None:
    """Each rank evaluates its share of the held-out tasks; the per-task verdicts behind the accuracy and the
    summary's paired comparison are gathered from both, so they equal one rank's."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    solved = {}
    for nproc in (1, 2):
        run_dir = tmp_path / f"ranks{nproc}"
        overrides = [f"run_dir={run_dir}", *TINY, "algorithm=sft", "trainer.expert_per_step=2",
                     "trainer.total_steps=1", "trainer.eval_every=1", "trainer.eval_size=6", "trainer.save_every=1"]
        cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "algorithms.train", *overrides]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        state = json.loads((run_dir / "checkpoints" / "step-000001" / "trainer_state.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        assert len(state["eval_solved"]["1"]) == 6 and summary["eval_paired"]["n"] == 6
        assert summary["final_eval_accuracy"] == pytest.approx(sum(state["eval_solved"]["1"]) / 6)
        solved[nproc] = state["eval_solved"]
    assert solved[2] == solved[1]


def _fill_own_entries(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from algorithms.distributed import all_reduce_sum, all_reduce_sum_list

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    values = [0.0] * 5
    for i in range(rank, 5, world):  # the evaluation's rank share: every world-th task
        values[i] = float(i + 1)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"list": all_reduce_sum_list(values),
                                                         "scalar": all_reduce_sum(rank + 1)}))
    dist.destroy_process_group()


def test_all_reduce_sum_list_gathers_each_ranks_entries(tmp_path: Path) -> None:
    """The held-out verdicts are gathered this way (the tiny model's verdicts are all 0, so the end-to-end
    test above cannot tell a lost rank from a failed task)."""
    import torch.multiprocessing as mp

    from algorithms.distributed import _free_port

    mp.spawn(_fill_own_entries, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == {"list": [1.0, 2.0, 3.0, 4.0, 5.0], "scalar": 3.0}


def test_stale_build_locks_are_removed_fresh_ones_kept(tmp_path: Path, monkeypatch) -> None:
    """A build killed mid-way leaves torch's extension lock; every later run would wait on it forever."""
    import os
    import time

    from algorithms.distributed import STALE_LOCK_S, clear_stale_build_locks

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    stale, fresh = tmp_path / "py311_cpu" / "old_op" / "lock", tmp_path / "py311_cpu" / "new_op" / "lock"
    for lock in (stale, fresh):
        lock.parent.mkdir(parents=True)
        lock.touch()
    past = time.time() - STALE_LOCK_S - 60
    os.utime(stale, (past, past))
    assert clear_stale_build_locks() == [stale]
    assert not stale.exists() and fresh.exists()

