"""algorithms.compare_runs: two runs' held-out transcripts paired by task, with intervals and McNemar's test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.scores import mcnemar_exact, wilson_interval
from algorithms.compare_runs import RunReadError, compare_runs, main


def write_eval(run: Path, step: int, rewards: dict[str, float]) -> None:
    (run / "eval").mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"task_id": t, "reward": r, "assistant": ["..."]}) for t, r in rewards.items()]
    (run / "eval" / f"step-{step:06d}.jsonl").write_text("\n".join(lines) + "\n")


def test_tasks_are_paired_by_id_at_each_runs_last_step(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_eval(a, 0, {f"t{i}": 0.0 for i in range(6)})
    write_eval(a, 12, {"t0": 1.0, "t1": 1.0, "t2": 0.0, "t3": 1.0, "t4": 0.5, "extra": 1.0})
    write_eval(b, 6, {"t3": 0.0, "t2": 1.0, "t1": 1.0, "t0": 0.0, "t4": 1.0})  # other order, other last step
    result = compare_runs(a, b)
    assert result["a"]["step"] == 12 and result["b"]["step"] == 6
    assert (result["a"]["correct"], result["b"]["correct"], result["a"]["n"]) == (3, 3, 5)  # 0.5 is not solved
    assert result["paired"] == {"n": 5, "gained": 2, "lost": 2, "p_value": mcnemar_exact(2, 2)}
    assert result["a"]["interval95"] == list(wilson_interval(3, 5))
    assert (result["only_a"], result["only_b"]) == (1, 0)
    write_eval(b, 0, {f"t{i}": float(i < 2) for i in range(6)})
    at_start = compare_runs(a, b, step=0)
    assert (at_start["a"]["correct"], at_start["b"]["correct"], at_start["paired"]["lost"]) == (0, 2, 2)


def test_missing_and_broken_transcripts_are_one_line_naming_the_path(tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_eval(a, 3, {"t0": 1.0})
    with pytest.raises(RunReadError, match=r"b/eval: no held-out transcripts"):
        compare_runs(a, b)
    write_eval(b, 3, {"t0": 1.0})
    with pytest.raises(RunReadError, match="no held-out transcripts of step 7"):
        compare_runs(a, b, step=7)
    (b / "eval" / "step-000003.jsonl").write_text('{"task_id": "t0", "reward": 1.0}\n{"task_id": "t1"\n')
    assert main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "step-000003.jsonl:2: not a transcript line" in err and len(err.strip().splitlines()) == 1
    write_eval(b, 3, {"other": 1.0})
    with pytest.raises(RunReadError, match="no task in common"):
        compare_runs(a, b)
