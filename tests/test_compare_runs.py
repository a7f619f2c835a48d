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


def write_results(out: Path, solved: dict[tuple[str, str], bool]) -> Path:
    out.mkdir(parents=True)
    entries = [{"suite": suite, "id": entry, "correct": ok} for (suite, entry), ok in solved.items()]
    (out / "results.json").write_text(json.dumps({"summary": {}, "entries": entries}))
    return out


def test_two_evaluations_are_paired_per_suite_and_per_bfcl_pool(tmp_path: Path, capsys) -> None:
    a = write_results(tmp_path / "a", {("bfcl/simple_python", "s0"): True, ("bfcl/simple_python", "s1"): True,
                                       ("bfcl/multiple", "m0"): False, ("bfcl/multiple", "m1"): True,
                                       ("bfcl/irrelevance", "i0"): True, ("toolace/test", "t0"): True,
                                       ("bfcl/parallel", "p0"): True})
    b = write_results(tmp_path / "b", {("bfcl/simple_python", "s0"): False, ("bfcl/simple_python", "s1"): True,
                                       ("bfcl/multiple", "m0"): True, ("bfcl/multiple", "m1"): False,
                                       ("bfcl/irrelevance", "i0"): False, ("toolace/test", "t0"): True,
                                       ("bfcl/simple_python", "only-b"): True})
    result = compare_runs(a, b / "results.json")  # a directory or its results.json
    metrics = result["metrics"]
    # the same entry id in two suites is two entries; bfcl/parallel (only in a) pairs with nothing
    assert list(metrics) == ["bfcl/irrelevance", "bfcl/multiple", "bfcl/simple_python", "toolace/test", "non_live_ast"]
    assert metrics["bfcl/multiple"] == {"n": 2, "a_correct": 1, "b_correct": 1, "gained": 1, "lost": 1,
                                        "p_value": mcnemar_exact(1, 1)}
    assert metrics["non_live_ast"] == {"n": 4, "a_correct": 3, "b_correct": 2, "gained": 2, "lost": 1,
                                       "p_value": mcnemar_exact(2, 1)}
    assert metrics["bfcl/irrelevance"]["gained"] == 1 and "irrelevance" not in metrics  # a one-suite pool is its row
    assert (result["only_a"], result["only_b"]) == (1, 1)
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    lo, hi = wilson_interval(3, 4)
    assert f"non_live_ast                     4   75.0 [{100 * lo:4.1f}, {100 * hi:5.1f}]" in out
    assert "left out: 1 entries scored only in a, 1 only in b" in out


def test_an_evaluation_against_a_run_or_a_broken_results_file_is_one_line(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    write_eval(run, 3, {"t0": 1.0})
    evaluation = write_results(tmp_path / "ev", {("toolace/test", "t0"): True})
    with pytest.raises(RunReadError, match=r"ev is an agents.evaluate output and .*run is not"):
        compare_runs(run, evaluation)
    with pytest.raises(RunReadError, match="--step is for training runs"):
        compare_runs(evaluation, evaluation, step=0)
    (tmp_path / "broken.json").write_text('{"summary": {}, "entries": [{"suite": "toolace/test"}]}')
    assert main([str(evaluation), str(tmp_path / "broken.json")]) == 2
    err = capsys.readouterr().err
    assert "broken.json: not an agents.evaluate results file" in err and "KeyError" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(RunReadError, match=r"missing.json: no such file"):
        compare_runs(evaluation, tmp_path / "missing.json")
    other = write_results(tmp_path / "other", {("toolace/test", "t1"): True})
    with pytest.raises(RunReadError, match="scored no entry in common"):
        compare_runs(evaluation, other)
