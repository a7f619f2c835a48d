"""Dynamic sampling and the pass-rate filter (``algorithms.dynamic_sampling``): the pieces, then the trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from algorithms.config import TrainConfigError, TrainerConfig
from algorithms.dynamic_sampling import (
    GroupOutcome,
    PromptHistory,
    draw_prompts,
    is_informative,
    kept_groups,
    pass_rate,
    pass_rate_histogram,
)
from tests.helpers import REPO, metric_rows, run_train_process


def test_a_group_is_informative_only_when_its_rewards_differ() -> None:
    assert not is_informative([0.0, 0.0, 0.0, 0.0]) and not is_informative([1.0, 1.0])
    assert not is_informative([0.5])  # one sample: nothing to compare
    assert is_informative([0.0, 1.0]) and is_informative([0.2, 0.2, 0.3])
    assert not is_informative([0.1, 0.1 + 1e-12])  # float noise is a tie


def test_pass_rate_and_its_histogram() -> None:
    assert pass_rate([1.0, 0.0, 1.0, 0.5]) == 0.5
    rates = [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.9]
    hist = pass_rate_histogram(rates)
    assert hist == {"pass_rate/0": 2, "pass_rate/0-0.25": 1, "pass_rate/0.25-0.5": 1, "pass_rate/0.5-0.75": 1,
                    "pass_rate/0.75-1": 1, "pass_rate/1": 3}
    assert sum(hist.values()) == len(rates)


def test_the_first_informative_groups_in_draw_order_are_kept() -> None:
    outcomes = [GroupOutcome(0, 0, 7, 0.0, False), GroupOutcome(0, 1, 3, 0.5, True),
                GroupOutcome(1, 0, 9, 0.25, True), GroupOutcome(1, 1, 2, 0.75, True),
                GroupOutcome(2, 0, 4, 0.5, True)]
    assert kept_groups(outcomes, 2) == {(0, 1), (1, 0)}
    assert kept_groups(outcomes[::-1], 3) == {(0, 1), (1, 0), (1, 1)}  # order of arrival does not matter
    assert kept_groups(outcomes[:1], 2) == set()


def test_the_history_skips_a_task_only_after_k_tied_visits_in_a_row() -> None:
    history = PromptHistory(2)
    history.record(5, False)
    assert not history.skip(5)  # one tied visit of two
    history.record(5, False)
    assert history.skip(5)
    history.record(5, True)  # an informative visit clears it
    assert not history.skip(5)
    history.record(5, False)
    assert not history.skip(5)
    off = PromptHistory(0, {"5": [False, False, False]})
    off.record(6, False)
    assert not off.skip(5) and len(off) == 1  # k = 0: the filter is off and keeps nothing new
    restored = PromptHistory(2, json.loads(json.dumps(history.state_dict())))  # the checkpoint round trip
    assert restored.state_dict() == history.state_dict() == {"5": [True, False]}


def test_the_plain_draw_is_unchanged_without_the_filter() -> None:
    a, skipped = draw_prompts(np.random.default_rng([0, 3, 0]), 100, 4)
    assert skipped == 0 and a == [int(i) for i in np.random.default_rng([0, 3, 0]).choice(100, size=4, replace=False)]


def test_the_draw_passes_over_filtered_and_excluded_tasks_and_never_stalls() -> None:
    skip = {1, 2, 3}.__contains__
    chosen, passed_over = draw_prompts(np.random.default_rng(1), 8, 3, exclude={4, 5}, skip=skip)
    assert len(chosen) == 3 and not set(chosen) & {1, 2, 3, 4, 5} and len(set(chosen)) == 3
    assert 0 <= passed_over <= 3
    # everything filtered or excluded: the batch is still full, filtered tasks first, then excluded ones
    chosen, passed_over = draw_prompts(np.random.default_rng(1), 4, 3, exclude={0}, skip=lambda i: True)
    assert sorted(chosen) == [1, 2, 3] and passed_over == 3
    chosen, _ = draw_prompts(np.random.default_rng(1), 2, 3, exclude={0}, skip=None)  # pool smaller than batch
    assert len(chosen) == 3 and set(chosen) <= {0, 1}


COIN = ["model=tiny", "env=math", "env.name=coin", "+env.entry_point=tests.coin_env:CoinEnv", "env.id=chordgym/Coin-v0",
        "env.kwargs.size=40", "env.kwargs.max_turns=1", "algorithm=grpo", "algorithm.group_size=2",
        "trainer.prompts_per_step=2", "trainer.max_new_tokens=6", "trainer.micro_batch_size=4",
        "trainer.eval_every=0", "trainer.progress=false", "trainer.total_steps=3", "trainer.save_every=3"]


def test_dynamic_sampling_trains_only_informative_groups_and_records_every_draw(tmp_path: Path) -> None:
    run_dir = tmp_path / "dynamic"
    proc = run_train_process(run_dir, *COIN, "trainer.dynamic_sampling=true", "trainer.max_extra_batches=3",
                             "trainer.prompt_filter_visits=5", timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    steps = [r for r in metric_rows(run_dir) if "loss/total" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:
        batches = 1 + r["sampling/extra_batches"]
        assert r["sampling/groups_drawn"] == 2 * batches
        assert r["sampling/extra_rollouts"] == 2 * 2 * (batches - 1)
        assert r["sampling/groups_trained"] == min(2, r["sampling/informative_groups"])
        assert r["sampling/informative_share"] == r["sampling/informative_groups"] / r["sampling/groups_drawn"]
        assert sum(v for k, v in r.items() if k.startswith("pass_rate/")) == r["sampling/groups_drawn"]
        # it stops at the first draw that completes the target, or when the budget is spent
        assert r["sampling/informative_groups"] >= 2 or batches == 4
        if r["sampling/groups_trained"] > 0:  # every trained group has differing rewards
            assert r["grpo/zero_adv_share"] == 0.0
    assert any(r["sampling/groups_trained"] > 0 for r in steps)
    state = json.loads((run_dir / "checkpoints" / "step-000003" / "trainer_state.json").read_text())
    visits = sum(len(v) for v in state["prompt_history"].values())  # a task is drawn at most once a step
    assert visits == sum(r["sampling/groups_drawn"] for r in steps)  # every group drawn was recorded


def test_without_dynamic_sampling_every_group_is_trained_and_the_share_is_logged(tmp_path: Path) -> None:
    run_dir = tmp_path / "plain"
    proc = run_train_process(run_dir, *COIN, "trainer.total_steps=2", "trainer.save_every=0", timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    steps = [r for r in metric_rows(run_dir) if "loss/total" in r]
    for r in steps:
        assert r["sampling/groups_drawn"] == r["sampling/groups_trained"] == 2
        assert r["sampling/extra_batches"] == 0 and r["sampling/extra_rollouts"] == 0
        assert r["grpo/zero_adv_share"] == 1.0 - r["sampling/informative_share"]


@pytest.mark.parametrize(("change", "key"), [({"max_extra_batches": -1}, "trainer.max_extra_batches"),
                                           ({"informative_groups": 3}, "trainer.informative_groups"),
                                           ({"informative_groups": 0}, "trainer.informative_groups"),
                                           ({"prompt_filter_visits": -2}, "trainer.prompt_filter_visits"),
                                           ({"dynamic_sampling": "yes"}, "trainer.dynamic_sampling")])
def test_bad_dynamic_sampling_settings_are_named(change: dict, key: str) -> None:
    section = {**OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "train.yaml").trainer),
               "prompts_per_step": 2, **change}
    with pytest.raises(TrainConfigError, match=key):
        TrainerConfig.from_mapping(section)


def test_two_ranks_draw_and_keep_what_one_rank_does(tmp_path: Path) -> None:
    """Each group's outcome is all-reduced, so the redraws, the kept groups and the loss do not depend on how
    the batch is split over ranks (torchrun, 2 CPU ranks, gloo)."""
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    rows = {}
    for nproc in (1, 2):
        run_dir = tmp_path / f"ranks{nproc}"
        overrides = [f"run_dir={run_dir}", *COIN, "trainer.dynamic_sampling=true", "trainer.max_extra_batches=3",
                     "trainer.total_steps=2", "trainer.save_every=0"]
        env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run([str(torchrun), "--standalone", f"--nproc_per_node={nproc}", "-m", "algorithms.train",
                               *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        rows[nproc] = [r for r in metric_rows(run_dir) if "loss/total" in r]
    assert len(rows[1]) == len(rows[2]) == 2
    for one, two in zip(rows[1], rows[2], strict=True):
        sampling = {k: v for k, v in one.items() if k.startswith(("sampling/", "pass_rate/"))}
        assert sampling and sampling == {k: two[k] for k in sampling}
        assert two["reward/mean"] == pytest.approx(one["reward/mean"], abs=1e-9)
        assert two["loss/grpo"] == pytest.approx(one["loss/grpo"], abs=1e-4)
