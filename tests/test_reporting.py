"""``algorithms.reporting``: the training run's summary, its printed form and the plot, and the held-out
transcripts (``algorithms.metrics.write_eval_transcripts``), from explicit inputs (no trainer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.heldout import TaskRecord
from agents.scores import wilson_interval
from algorithms.metrics import write_eval_transcripts
from algorithms.reporting import format_summary, training_summary, write_run_report

FACTS = dict(env="toolace", algorithm="chord_mu", model="tiny", steps=3, eval_split="val",
             final_checkpoint="runs/x/checkpoints/step-000003", run_dir="runs/x", device="cpu", world_size=2)


def test_summary_compares_base_and_final_on_the_same_tasks() -> None:
    history = [{"step": 0, "eval/accuracy": 0.25, "eval/reward": 0.4},
               {"step": 2, "eval/accuracy": 0.5, "eval/reward": 0.5},
               {"step": 3, "eval/accuracy": 0.75, "eval/reward": 0.8}]
    solved = {"0": [True, False, False, False], "2": [True, True, False, False], "3": [True, True, True, False]}
    summary = training_summary(history, solved, **FACTS)
    assert summary["base_eval_accuracy"] == 0.25 and summary["final_eval_accuracy"] == 0.75
    assert summary["base_eval_reward"] == 0.4 and summary["final_eval_reward"] == 0.8
    assert summary["eval_n"] == 4
    assert summary["base_eval_interval"] == list(wilson_interval(1, 4))
    assert summary["final_eval_interval"] == list(wilson_interval(3, 4))
    # base -> final: tasks 1 and 2 gained, none lost; two fair coins both heads: p = 2 * 1/4
    assert summary["eval_paired"] == {"n": 4, "gained": 2, "lost": 0, "p_value": pytest.approx(0.5)}
    assert {k: summary[k] for k in FACTS} == FACTS
    text = format_summary(summary)
    assert "chord_mu on toolace (tiny, 3 steps)" in text
    lo, hi = wilson_interval(1, 4)
    assert f"base 25.0% [{100 * lo:.1f}, {100 * hi:.1f}] -> trained 75.0%" in text
    assert "n=4)" in text and "2 gained, 0 lost (McNemar exact p = 0.500)" in text
    assert "checkpoint: runs/x/checkpoints/step-000003" in text


def test_summary_without_a_base_evaluation_has_no_base_figures() -> None:
    """trainer.eval_at_start=false: no step-0 row, so no base score, interval or paired change."""
    summary = training_summary([{"step": 3, "eval/accuracy": 0.5, "eval/reward": 0.5}], {"3": [True, False]},
                               **FACTS)
    assert summary["base_eval_accuracy"] is None and summary["final_eval_accuracy"] == 0.5
    assert "base_eval_interval" not in summary and "eval_paired" not in summary
    assert summary["eval_n"] == 2
    assert "base n/a -> trained 50.0%" in format_summary(summary) and "McNemar" not in format_summary(summary)
    empty = training_summary([], {}, **FACTS)  # evaluation off
    assert empty["final_eval_accuracy"] is None and "eval_n" not in empty
    assert "base n/a -> trained n/a" in format_summary(empty)


def test_transcripts_hold_outputs_environment_and_failure(tmp_path: Path) -> None:
    conversation = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                    {"role": "assistant", "content": "call"}, {"role": "tool", "content": "result"},
                    {"role": "assistant", "content": "answer"}]
    records = [TaskRecord(index=0, id="t0", messages=conversation, reward=0.0, failure="wrong_value", verdict={}),
               TaskRecord(index=1, id="t1", messages=conversation[:3], reward=1.0, failure=None, verdict={})]
    path = write_eval_transcripts(tmp_path, 12, records)
    assert path == tmp_path / "eval" / "step-000012.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"task_id": "t0", "reward": 0.0, "failure": "wrong_value", "assistant": ["call", "answer"],
                      "environment": ["result"]},
                     {"task_id": "t1", "reward": 1.0, "failure": None, "assistant": ["call"], "environment": []}]


def test_run_report_writes_summary_and_plot(tmp_path: Path) -> None:
    rows = [{"step": 0, "eval/accuracy": 0.25}, {"step": 1, "reward/mean": 0.1, "mu": 0.5},
            {"step": 2, "reward/mean": 0.3, "mu": 0.4}, {"step": 2, "eval/accuracy": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    history = [{"step": 0, "eval/accuracy": 0.25, "eval/reward": 0.25},
               {"step": 2, "eval/accuracy": 0.5, "eval/reward": 0.5}]
    summary = training_summary(history, {"0": [True, False, False, False], "2": [True, True, False, False]},
                               **FACTS)
    text = write_run_report(tmp_path, summary)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "training.png").stat().st_size > 1000
    assert text == format_summary(summary)
