"""End-to-end training on the tiny-random model: every algorithm runs, checkpoints, resumes after SIGKILL.

These run the real entry point (`python -m algorithms.train`) in a subprocess, with real DeepSpeed on CPU.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from algorithms.lr_schedule import lr_at
from tests.helpers import REPO, autocast_probe, kill_at_checkpoint, metric_rows, run_train_process

# Small enough for CI: 2 prompts x 2 rollouts + 2 expert samples, short turns, tiny model.
TINY = [
    "model=tiny", "trainer.prompts_per_step=2", "algorithm.group_size=2", "trainer.expert_per_step=2",
    "trainer.micro_batch_size=2", "trainer.max_new_tokens=12", "trainer.eval_max_new_tokens=12",
    "trainer.eval_size=2", "trainer.progress=false", "env.kwargs.max_turns=2",
]


def run_train(run_dir: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_train_process(run_dir, *TINY, *overrides, timeout=timeout)


def train_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in metric_rows(run_dir) if "loss/total" in r]


@pytest.mark.parametrize("algorithm", ["sft", "grpo", "sft_then_grpo", "chord_mu", "chord_phi", "idft"])
def test_three_steps_of_each_algorithm(tmp_path: Path, algorithm: str) -> None:
    run_dir = tmp_path / algorithm
    at_start = algorithm != "idft"  # one run checks trainer.eval_at_start=false (no step-0 evaluation)
    proc = run_train(run_dir, f"algorithm={algorithm}", "trainer.total_steps=3", "trainer.save_every=3",
                     "trainer.eval_every=3", f"trainer.eval_at_start={str(at_start).lower()}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = metric_rows(run_dir)
    steps = [r for r in rows if "loss/total" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["loss/total"] == r["loss/total"] for r in steps)  # no NaN
    if algorithm == "sft":
        assert all(r["mu"] == 1.0 and "sft/nll" in r for r in steps)
    if algorithm == "grpo":
        assert all(r["mu"] == 0.0 and "sft/nll" not in r for r in steps)
        # tiny-random's groups tie (all-zero advantages): nothing to learn, the optimizer step is skipped
        zero_adv = [r for r in steps if r.get("grpo/zero_adv_share") == 1.0]
        assert steps[-1]["optimizer/skipped_steps"] == len(zero_adv)
    if algorithm == "chord_phi":
        assert all(abs(r["mu"] - 0.1) < 1e-9 for r in steps)
    evals = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == ([0, 3] if at_start else [3])
    transcript = [json.loads(line) for line in (run_dir / "eval" / "step-000003.jsonl").read_text().splitlines()]
    assert len(transcript) == 2 and all("assistant" in t and "reward" in t for t in transcript)
    assert all((t["failure"] is None) == (t["reward"] >= 1.0) for t in transcript)  # ToolACE names each cause
    ckpt = run_dir / "checkpoints" / "step-000003"
    assert (ckpt / "hf" / "config.json").exists() and (ckpt / "trainer_state.json").exists()
    assert (run_dir / "checkpoints" / "LATEST").read_text().strip() == "step-000003"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["algorithm"] == algorithm and (summary["base_eval_accuracy"] is not None) == at_start
    assert summary["final_eval_accuracy"] is not None
    # the noise around the score: Wilson intervals over the eval tasks, and the paired change from step 0
    assert summary["eval_n"] == 2 and len(summary["final_eval_interval"]) == 2
    assert ("eval_paired" in summary) == at_start and ("base_eval_interval" in summary) == at_start
    if at_start:
        assert summary["eval_paired"]["n"] == 2 and "McNemar" in proc.stdout
    assert (run_dir / "training.png").stat().st_size > 1000


@pytest.mark.slow  # make test-slow; the default suite kills and resumes a LoRA run the same way (test_lora.py)
def test_sigkill_then_resume_repeats_and_loses_no_step(tmp_path: Path) -> None:
    """Also: the resumed run continues the learning-rate schedule (each step's lr is lr_at(step))."""
    run_dir = tmp_path / "killed"
    overrides = [*TINY, "algorithm=chord_mu", "trainer.total_steps=5", "trainer.save_every=2", "trainer.eval_every=0",
                 "trainer.lr=1e-3", "trainer.lr_schedule=cosine", "trainer.warmup_steps=1"]
    # killed 1 s after the step-2 checkpoint, inside step 3 (or 4): those steps must be redone, not kept twice
    resumed_from = kill_at_checkpoint(run_dir, *overrides, step=2, grace_s=1.0)
    assert resumed_from in (2, 4)

    done = run_train_process(run_dir, *overrides)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"at step {resumed_from}" in done.stdout
    assert train_steps(run_dir) == [1, 2, 3, 4, 5]
    assert (run_dir / "checkpoints" / "LATEST").read_text().strip() == "step-000005"
    lrs = [r["lr"] for r in metric_rows(run_dir) if "loss/total" in r]
    assert lrs == pytest.approx([lr_at(s, 5, 1e-3, "cosine", warmup_steps=1) for s in range(1, 6)])


def test_resume_continues_the_same_data_stream(tmp_path: Path) -> None:
    """3 steps straight == 2 steps, stop, resume, 1 step: the third step sees the same batch."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["algorithm=sft", "trainer.total_steps=3", "trainer.save_every=1", "trainer.eval_every=0"]
    assert run_train(straight, *common).returncode == 0
    assert run_train(split, *common, "trainer.max_steps_this_run=2").returncode == 0
    assert train_steps(split) == [1, 2]
    assert run_train(split, *common).returncode == 0
    a = [r for r in metric_rows(straight) if r["step"] == 3 and "loss/total" in r][0]
    b = [r for r in metric_rows(split) if r["step"] == 3 and "loss/total" in r][0]
    assert a["loss/sft"] == pytest.approx(b["loss/sft"], rel=1e-5)


def test_a_run_killed_while_evaluating_keeps_its_steps(tmp_path: Path) -> None:
    """The last step is due a checkpoint and an evaluation: the checkpoint comes first, so a kill during the
    evaluation (SIGKILL as soon as LATEST names step 2) loses no step, and the resumed run evaluates step 2
    without training again. Evaluating first would leave no step-2 checkpoint and redo both steps."""
    run_dir = tmp_path / "killed"
    overrides = [*TINY, "algorithm=sft", "trainer.total_steps=2", "trainer.save_every=2", "trainer.eval_every=2",
                 "trainer.eval_at_start=false", "trainer.eval_size=12"]
    assert kill_at_checkpoint(run_dir, *overrides, step=2) == 2
    assert train_steps(run_dir) == [1, 2]
    assert not [r for r in metric_rows(run_dir) if "eval/accuracy" in r]  # the kill landed in the evaluation

    done = run_train(run_dir, *overrides[len(TINY):])
    assert done.returncode == 0, done.stderr[-4000:]
    assert "at step 2" in done.stdout and "evaluating step 2" in done.stdout
    assert train_steps(run_dir) == [1, 2]
    assert [r["step"] for r in metric_rows(run_dir) if "eval/accuracy" in r] == [2]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval_n"] == 12 and summary["final_eval_accuracy"] is not None


def test_a_time_limit_stops_at_a_step_boundary_with_a_checkpoint_and_a_score(tmp_path: Path) -> None:
    """A limit used up by the first step stops the run after it: that step is checkpointed and scored though
    neither schedule is due (3); a resume with the limit spent trains nothing (the clock counts over
    resumes); one without the limit trains on to the end."""
    run_dir = tmp_path / "timed"
    common = ["algorithm=sft", "trainer.total_steps=4", "trainer.save_every=3", "trainer.eval_every=3",
              "trainer.eval_at_start=false"]
    limited = run_train(run_dir, *common, "trainer.time_limit_minutes=0.0001")
    assert limited.returncode == 0, limited.stderr[-4000:]
    assert "time limit: stopping after step 1 of 4" in limited.stdout
    assert train_steps(run_dir) == [1]
    assert (run_dir / "checkpoints" / "LATEST").read_text().strip() == "step-000001"
    assert [r["step"] for r in metric_rows(run_dir) if "eval/accuracy" in r] == [1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["steps_done"], summary["steps"]) == (1, 4) and "1 of 4 steps" in limited.stdout

    spent = run_train(run_dir, *common, "trainer.time_limit_minutes=0.0001")
    assert spent.returncode == 0, spent.stderr[-4000:]
    assert "at step 1" in spent.stdout and "time limit: stopping after step 1 of 4" in spent.stdout
    assert train_steps(run_dir) == [1]

    rest = run_train(run_dir, *common)
    assert rest.returncode == 0, rest.stderr[-4000:]
    assert train_steps(run_dir) == [1, 2, 3, 4]
    assert [r["step"] for r in metric_rows(run_dir) if "eval/accuracy" in r] == [1, 3, 4]
    assert json.loads((run_dir / "summary.json").read_text())["steps_done"] == 4


@pytest.mark.parametrize("override, key", [
    ("trainer.prompts_per_step=0", "trainer.prompts_per_step"),
    ("algorithm.group_size=1", "algorithm.group_size"),
    ("trainer.expert_per_step=0", "trainer.expert_per_step"),
    ("algorithm.sft_weighting=bogus", "sft_weighting"),
    ("+algorithm.not_a_key=1", "not_a_key"),
    ("model.dtype=fp16", "model.dtype"),
    ("trainer.lr_schedule=step", "trainer.lr_schedule"),
    ("trainer.warmup_steps=12", "trainer.warmup_steps"),
    ("env.kwargs.reward_mode=bogus", "env.kwargs"),
    ("+env.train_kwargs.not_a_kwarg=1", "env.train_kwargs"),
    ("env.train_kwargs.mask_tool_names=2", "env.train_kwargs"),
    ("env.eval_split=bogus", "env.eval_split"),
    ("+env.kwargs.tasks=missing/tasks.jsonl", "no such file: missing/tasks.jsonl"),
    ("trainer.lr=fast", "trainer.lr must be a number, got 'fast'"),
    ("trainer.time_limit_minutes=0", "trainer.time_limit_minutes must be null or > 0"),
    ("model.spec=tests/missing-checkpoint", "model path tests/missing-checkpoint does not exist"),
    ("trainer.prompt_grad=none", "trainer.prompt_grad"),
    ("trainer.eval_guided_calls=always", "trainer.eval_guided_calls"),
    ("trainer.gradient_checkpointing=true trainer.prompt_grad=detached", "trainer.gradient_checkpointing=true does not combine"),
])
def test_bad_config_stops_before_work_naming_the_key(tmp_path: Path, monkeypatch, capsys, override: str,
                                                     key: str) -> None:
    """In this process, through the command line's error handler: one ``config error:`` line naming the key,
    exit 2, before the distributed set-up (which fails the test if reached) and before anything is written.
    (test_a_bad_config_is_one_line_from_the_command_line runs the same path as a subprocess.)"""
    from hydra import compose, initialize_config_dir

    import algorithms.trainer
    from algorithms.config import exit_on_start_up_errors

    def reached(*args, **kwargs):
        raise AssertionError("the bad config reached the distributed set-up")

    monkeypatch.setattr(algorithms.trainer, "init_distributed", reached)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"run_dir={tmp_path / 'bad'}", *TINY, "algorithm=chord_mu",
                                          *override.split(" ")])
    with pytest.raises(SystemExit) as stop, exit_on_start_up_errors(str(cfg.model.spec)):
        algorithms.trainer.Trainer(cfg)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2
    assert key in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()


def test_a_bad_config_is_one_line_from_the_command_line(tmp_path: Path) -> None:
    proc = run_train(tmp_path / "bad", "algorithm=chord_mu", "trainer.lr=fast", timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "config error: trainer.lr must be a number, got 'fast'"
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()


def test_unknown_env_or_algorithm_is_named(tmp_path: Path) -> None:
    for override, word in (("env=nope", "env"), ("algorithm=nope", "algorithm")):
        proc = run_train(tmp_path / "bad", override, timeout=120)
        assert proc.returncode != 0 and word in proc.stderr and "nope" in proc.stderr


def test_realigned_expert_set_replaces_the_env_experts(tmp_path: Path) -> None:
    """trainer.expert_data points the SFT term at a realigned set (algorithms.realign's JSONL format)."""
    import envs

    env = envs.make("toolace", split="train")
    pool = tmp_path / "realigned.jsonl"
    with pool.open("w") as f:
        for i in range(3):
            opening, info = env.reset(options={"index": i})
            f.write(json.dumps({"index": i, "opening": opening, "expert": info["expert"], "source": "hinted"}) + "\n")
    run_dir = tmp_path / "pool"
    proc = run_train(run_dir, "algorithm=sft", f"trainer.expert_data={pool}", "trainer.total_steps=1",
                     "trainer.eval_every=0", "trainer.save_every=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert train_steps(run_dir) == [1]

    broken = tmp_path / "broken.jsonl"
    broken.write_text(pool.read_text() + "{not json\n")
    proc = run_train(tmp_path / "bad", "algorithm=sft", f"trainer.expert_data={broken}", timeout=300)
    assert proc.returncode != 0 and "broken.jsonl:4" in proc.stderr


def test_step_metrics_do_not_depend_on_micro_batch_size(tmp_path: Path) -> None:
    """Per-micro-batch metrics are weighted by their share of the term's tokens: the step's ``sft/nll`` is
    the token mean over the whole expert batch, with 1 or 4 rows per backward."""
    rows = {}
    for mbs in (1, 4):
        run_dir = tmp_path / f"mbs{mbs}"
        proc = run_train(run_dir, "algorithm=sft", "trainer.total_steps=1", "trainer.expert_per_step=4",
                         f"trainer.micro_batch_size={mbs}", "trainer.save_every=0", "trainer.eval_every=0")
        assert proc.returncode == 0, proc.stderr[-4000:]
        rows[mbs] = [r for r in metric_rows(run_dir) if "loss/total" in r][0]
    assert rows[1]["sft/nll"] == pytest.approx(rows[4]["sft/nll"], abs=1e-4)
    assert rows[1]["loss/sft"] == pytest.approx(rows[4]["loss/sft"], abs=1e-4)


@pytest.mark.slow  # 22 s: make test-slow
def test_detached_prompt_grad_keeps_the_step_losses(tmp_path: Path) -> None:
    """trainer.prompt_grad=detached changes the gradient, not the values: the first step's losses (computed
    before any update) equal the exact pass's, and the rows' shared system-prompt head is computed once."""
    rows = {}
    for mode in ("full", "detached"):
        run_dir = tmp_path / mode
        proc = run_train(run_dir, "algorithm=chord_mu", "trainer.total_steps=2", f"trainer.prompt_grad={mode}",
                         "trainer.save_every=0", "trainer.eval_every=0")
        assert proc.returncode == 0, proc.stderr[-4000:]
        rows[mode] = [r for r in metric_rows(run_dir) if "loss/total" in r]
    first_full, first_det = rows["full"][0], rows["detached"][0]
    assert first_det["loss/sft"] == pytest.approx(first_full["loss/sft"], abs=1e-4)
    assert first_det["loss/grpo"] == pytest.approx(first_full["loss/grpo"], abs=1e-4)
    assert 0.0 < first_det["train/prompt_kv_computed_share"] < 1.0
    assert "train/prompt_kv_computed_share" not in first_full
    assert [r["step"] for r in rows["detached"]] == [1, 2]


def test_train_kwargs_reach_the_training_envs_only() -> None:
    """env.train_kwargs.reward_mode=partial scores the rollouts with the partial reward while the held-out
    evaluation stays strict (the reported score does not change meaning)."""
    from hydra import compose, initialize_config_dir

    from algorithms.trainer import Trainer

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["env=toolace", "env.train_kwargs.reward_mode=partial"])
    trainer = Trainer.__new__(Trainer)  # only the env factory: no model, no engine
    trainer.cfg = cfg
    trainer.call_format = None  # ToolACE takes no call format
    assert trainer._make_env(cfg.env.train_split, training=True).reward_mode == "partial"
    assert trainer._make_env(cfg.env.eval_split).reward_mode == "strict"
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        default = compose("train", overrides=["env=toolace", "env.kwargs.reward_mode=partial"])
    trainer.cfg = default  # by default the training reward follows env.kwargs.reward_mode
    assert trainer._make_env(default.env.train_split, training=True).reward_mode == "partial"


MATH = ["env=math", "env.kwargs.size=40", "trainer.total_steps=1", "trainer.save_every=0", "trainer.eval_every=1"]


def test_math_trains_through_the_cli_and_warns_on_a_training_split_held_out(tmp_path: Path) -> None:
    """README's ``env=math algorithm=chord_mu_math`` (math.yaml has ``train_kwargs: {}``), scored on its
    training split: it trains, and says first that the held-out score is measured on training tasks."""
    run_dir = tmp_path / "math"
    proc = run_train(run_dir, *MATH, "algorithm=chord_mu_math", "env.eval_split=train")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "warning: env.eval_split='train' is the training split" in proc.stderr
    steps = [r for r in metric_rows(run_dir) if "loss/total" in r]
    assert len(steps) == 1 and "sft/nll" in steps[0] and "reward/mean" in steps[0]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["sft", "grpo", "sft_then_grpo", "chord_mu", "chord_phi", "idft", "chord_idft",
                                       "chord_adaptive"])
def test_every_algorithm_preset_trains_on_math(tmp_path: Path, algorithm: str) -> None:
    proc = run_train(tmp_path / algorithm, *MATH, f"algorithm={algorithm}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [r["step"] for r in metric_rows(tmp_path / algorithm) if "loss/total" in r] == [1]


def test_shared_held_out_tasks_are_warned_about(capsys) -> None:
    from types import SimpleNamespace

    from algorithms.trainer import Trainer

    trainer = Trainer.__new__(Trainer)
    trainer.dist = SimpleNamespace(is_main=True)
    trainer.cfg = SimpleNamespace(env=SimpleNamespace(train_split="train", eval_split="test"))
    trainer.train_env = SimpleNamespace(task_ids=["a", "b", "c"])
    trainer.eval_envs = [SimpleNamespace(task_ids=["c", "d"])]
    trainer._warn_on_shared_tasks()
    assert "1 of the 2 held-out tasks" in capsys.readouterr().err
    trainer.eval_envs = [SimpleNamespace(task_ids=["d", "e"])]
    trainer._warn_on_shared_tasks()
    trainer.eval_envs = [SimpleNamespace(task_ids=None)]
    trainer._warn_on_shared_tasks()
    assert capsys.readouterr().err == ""


def test_kl_coef_reaches_the_loss(tmp_path: Path) -> None:
    """algorithm.kl_coef > 0 loads the reference model and adds the k3 term (it used to be accepted and
    ignored): the step logs grpo/kl and forwards every row, zero advantages included."""
    proc = run_train(tmp_path / "kl", "algorithm=grpo", "algorithm.kl_coef=0.1", "trainer.total_steps=1",
                     "trainer.eval_every=0", "trainer.save_every=0")
    assert proc.returncode == 0, proc.stderr[-4000:]
    step = [r for r in metric_rows(tmp_path / "kl") if "loss/total" in r][0]
    assert step["grpo/kl"] == pytest.approx(0.0, abs=1e-6)  # step 1: the policy is the reference
    assert step["grpo/zero_adv_share"] == 0.0 and step["optimizer/skipped_steps"] == 0  # no row skipped


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_training_computes_in_the_models_dtype_inside_deepspeed(tmp_path: Path, dtype: str) -> None:
    """bf16 = fp32 weights under autocast: DeepSpeed must be told (its torch_autocast section), or on CUDA its
    engine turns the surrounding autocast off and the step runs in fp32 (seen on an H100, session 22)."""
    report = autocast_probe(tmp_path / dtype, f"model.dtype={dtype}")
    assert report["engine_autocast"] is (dtype == "bf16")
    assert report["linear_dtypes"] == (["bfloat16"] if dtype == "bf16" else ["float32"])
    assert report["nll"] == report["nll"]  # a real, finite step
