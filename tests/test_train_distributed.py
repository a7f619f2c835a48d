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
