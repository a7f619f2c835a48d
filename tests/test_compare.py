"""bench/compare.py's statistics: which entries each metric pools, the intervals and the paired tests."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from agents.scores import mcnemar_exact, wilson_interval
from tests.helpers import REPO

spec = importlib.util.spec_from_file_location("compare", REPO / "bench" / "compare.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def write_results(out: Path, method: str, solved: dict[tuple[str, str], bool]) -> None:
    path = out / "eval" / method / "results.json"
    path.parent.mkdir(parents=True)
    entries = [{"suite": suite, "id": entry, "correct": ok} for (suite, entry), ok in solved.items()]
    path.write_text(json.dumps({"summary": {}, "entries": entries}))


def test_paired_tests_pool_each_metric_and_count_discordant_entries(tmp_path: Path) -> None:
    ast = {("bfcl/simple_python", str(i)): i < 6 for i in range(10)} | {("bfcl/multiple", "m0"): True}
    write_results(tmp_path, "sft", ast | {("bfcl/irrelevance", "r0"): True, ("toolace/test", "t0"): False})
    chord = {k: not v if k[1] in ("0", "8", "9") else v for k, v in ast.items()}  # loses entry 0, gains 8 and 9
    write_results(tmp_path, "chord_phi", chord | {("bfcl/irrelevance", "r0"): False, ("live_only", "x"): True})
    write_results(tmp_path, "original", {("bfcl/simple_python", "0"): False})
    rows = [{"method": m} for m in ("original", "sft", "chord_phi")]
    tests = {(t["method"], t["against"], t["metric"]): t for t in compare.paired_tests(rows, tmp_path)}
    ast_test = tests[("chord_phi", "sft", "non_live_ast")]
    assert (ast_test["n"], ast_test["gained"], ast_test["lost"]) == (11, 2, 1)
    assert ast_test["p_value"] == mcnemar_exact(2, 1)
    assert ast_test["accuracy"] == 8 / 11 and ast_test["against_accuracy"] == 7 / 11
    irr = tests[("chord_phi", "sft", "irrelevance")]
    assert (irr["n"], irr["gained"], irr["lost"]) == (1, 0, 1)
    assert ("chord_phi", "sft", "toolace_test") not in tests  # chord_phi scored no ToolACE entry: no pair
    assert tests[("chord_phi", "original", "non_live_ast")]["n"] == 1  # only the shared entry is compared
    assert not any(t["against"] == "chord_phi" for t in tests.values())


def test_intervals_are_over_the_pooled_entries(tmp_path: Path) -> None:
    write_results(tmp_path, "sft", {("bfcl/parallel", str(i)): i < 3 for i in range(12)}
                  | {("bfcl/live_simple", "a"): True})
    verdicts = compare.entry_verdicts(tmp_path, "sft")
    lo, hi, n = compare.pooled_interval(verdicts, "non_live_ast")
    assert n == 12 and (lo, hi) == wilson_interval(3, 12)
    assert compare.pooled_interval(verdicts, "toolace_test") is None
    assert compare.entry_verdicts(tmp_path, "never_ran") == {}


def test_val_is_paired_from_each_methods_validation_stage(tmp_path: Path) -> None:
    write_results(tmp_path, "original-val", {("toolace/val", f"val-{i:05d}"): i < 2 for i in range(4)})
    write_results(tmp_path, "sft", {("toolace/test", "test-00000"): True})
    write_results(tmp_path, "sft-val", {("toolace/val", f"val-{i:05d}"): i in (1, 2) for i in range(4)})
    verdicts = compare.entry_verdicts(tmp_path, "sft")
    assert verdicts[("toolace/val", "val-00002")] and not verdicts[("toolace/val", "val-00003")]
    assert verdicts[("toolace/test", "test-00000")]
    tests = {(t["method"], t["metric"]): t for t in compare.paired_tests([{"method": "original"}, {"method": "sft"}],
                                                                         tmp_path)}
    val = tests[("sft", "toolace_val")]
    assert (val["n"], val["gained"], val["lost"], val["against"]) == (4, 1, 1, "original")
    assert compare.pooled_interval(compare.entry_verdicts(tmp_path, "original"), "toolace_val")[2] == 4


def test_the_table_carries_intervals_and_the_paired_section(tmp_path: Path) -> None:
    write_results(tmp_path, "original", {("bfcl/simple_python", "0"): False, ("bfcl/simple_python", "1"): True})
    write_results(tmp_path, "sft", {("bfcl/simple_python", "0"): True, ("bfcl/simple_python", "1"): True})
    args = Namespace(steps=1, prompts=2, group_size=2, expert=2, lr=1e-4, seed=0, max_new_tokens=8, expert_tasks=8,
                     bfcl_limit=None, toolace_limit=2, val_size=2, out=tmp_path)
    rows = [{"method": "original", "summary": {"bfcl_aggregates": {"non_live_ast": 0.5}, "accuracy": {}},
             "val_accuracy": 0.25, "val_interval": [0.1, 0.5]},
            {"method": "sft", "summary": {"bfcl_aggregates": {"non_live_ast": 1.0}, "accuracy": {}},
             "val_accuracy": None}]
    text = compare.table(rows, args)
    lo, hi = wilson_interval(1, 2)
    assert f"| original | 50.0 [{100 * lo:.1f}, {100 * hi:.1f}] |" in text
    assert "25.0 [10.0, 50.0]" in text and "BFCL: all entries per category" in text
    assert "| sft | original | non_live_ast | 2 | 100.0 | 50.0 | 1 | 0 | 1 |" in text
    # An aggregate that is a mean over categories (here 0.3) gets the pooled accuracy its interval is centred on.
    rows[1]["summary"]["bfcl_aggregates"]["non_live_ast"] = 0.3
    lo, hi = wilson_interval(2, 2)
    assert f"| sft | 30.0 (pooled 100.0 [{100 * lo:.1f}, {100 * hi:.1f}]) |" in compare.table(rows, args)


def write_stage(out: Path, name: str, summary: dict, entries: list[dict]) -> None:
    path = out / "eval" / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"summary": summary, "entries": entries}))


def test_a_row_merges_its_scoring_stages_and_reads_the_steps_its_run_took(tmp_path: Path) -> None:
    write_stage(tmp_path, "chord_mu", {"accuracy": {"bfcl/simple_python": 0.5, "toolace/test": 0.25},
                                       "interval95": {}, "bfcl_aggregates": {"non_live_ast": 0.5, "live_ast": None}},
                [{"suite": "bfcl/simple_python", "id": "0", "correct": True}])
    write_stage(tmp_path, "chord_mu-live", {"accuracy": {"bfcl/live_simple": 0.1}, "interval95": {},
                                            "bfcl_aggregates": {"non_live_ast": None, "live_ast": 0.1}},
                [{"suite": "bfcl/live_simple", "id": "a", "correct": False}])
    write_stage(tmp_path, "chord_mu-val", {"accuracy": {"toolace/val": 0.3}, "interval95": {"toolace/val": [0.2, 0.4]},
                                           "bfcl_aggregates": {}}, [{"suite": "toolace/val", "id": "v", "correct": True}])
    # sft's own stage must not be read as chord_mu's, nor sft_then_grpo's as sft's
    write_stage(tmp_path, "sft_then_grpo", {"accuracy": {"toolace/test": 1.0}, "interval95": {}, "bfcl_aggregates": {}},
                [{"suite": "toolace/test", "id": "t", "correct": True}])
    metrics = tmp_path / "runs" / "chord_mu" / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("\n".join(json.dumps({"step": s, "time/step_s": 2.0}) for s in (1, 2, 3)) + "\n")
    row = compare.collect_row("chord_mu", tmp_path)
    assert row["summary"]["bfcl_aggregates"] == {"non_live_ast": 0.5, "live_ast": 0.1}
    assert row["summary"]["accuracy"] == {"bfcl/simple_python": 0.5, "toolace/test": 0.25, "bfcl/live_simple": 0.1}
    assert (row["val_accuracy"], row["val_interval"], row["steps"]) == (0.3, [0.2, 0.4], 3)
    assert set(compare.entry_verdicts(tmp_path, "chord_mu")) == {("bfcl/simple_python", "0"), ("bfcl/live_simple", "a"),
                                                                 ("toolace/val", "v")}
    assert compare.collect_row("sft", tmp_path)["summary"]["accuracy"] == {}


def test_scoring_stages_put_the_headline_first_and_live_last() -> None:
    args = Namespace(val_only=False, bfcl_limit=None, bfcl_categories=["simple_python", "irrelevance", "live_simple"],
                     toolace_limit=200, eval_max_new_tokens=128, max_new_tokens=64, val_size=200)
    stages = compare.eval_stages("sft", Path("ckpt/hf"), args)
    assert [name for name, _ in stages] == ["sft", "sft-val", "sft-live"]
    assert "bfcl.categories=[simple_python,irrelevance]" in stages[0][1] and "model_path=ckpt/hf" in stages[2][1]
    assert "bfcl.categories=[live_simple]" in stages[2][1] and "max_new_tokens=64" in stages[1][1]
    args.val_only = True
    assert [name for name, _ in compare.eval_stages("original", None, args)] == ["original-val"]


def test_a_stage_past_the_deadline_is_not_started_and_one_running_then_is_stopped(tmp_path: Path) -> None:
    import time

    with pytest.raises(compare.StageCut, match="not started"):
        compare.run([sys.executable, "-c", "open('started', 'w')"], tmp_path / "a.log", deadline=time.time() - 1)
    marker = tmp_path / "child-alive"
    child = tmp_path / "child.py"
    child.write_text(f"import time\ntime.sleep(3)\nopen({str(marker)!r}, 'w')\n")
    # the stage's own child must go too: the whole process group is stopped
    script = f"import subprocess, sys, time; subprocess.Popen([sys.executable, {str(child)!r}]); time.sleep(60)"
    t0 = time.time()
    with pytest.raises(compare.StageCut, match="stopped at the deadline"):
        compare.run([sys.executable, "-c", script], tmp_path / "b.log", deadline=time.time() + 1.5)
    assert time.time() - t0 < 30
    time.sleep(3)
    assert not marker.exists() and not (compare.REPO / "started").exists()


def test_an_interrupted_comparison_stops_its_running_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stages run in their own session (so the deadline can stop a whole process group): Ctrl-C in the
    comparison must then stop them itself, or they run on as orphans."""
    import time

    marker = tmp_path / "still-running"
    child = tmp_path / "child.py"
    child.write_text(f"import time\ntime.sleep(3)\nopen({str(marker)!r}, 'w')\n")
    real_wait = subprocess.Popen.wait

    def interrupted(self, timeout=None):
        if timeout is None and self.args[-1] == str(child):
            time.sleep(0.5)
            raise KeyboardInterrupt
        return real_wait(self, timeout=timeout)

    monkeypatch.setattr(subprocess.Popen, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compare.run([sys.executable, str(child)], tmp_path / "c.log")
    monkeypatch.undo()
    time.sleep(3.5)
    assert not marker.exists()


def test_table_only_rebuilds_the_table_from_the_files_with_the_runs_own_budget(tmp_path: Path) -> None:
    write_results(tmp_path, "original", {("bfcl/simple_python", "0"): False, ("bfcl/simple_python", "1"): True})
    write_results(tmp_path, "sft", {("bfcl/simple_python", "0"): True, ("bfcl/simple_python", "1"): True})
    (tmp_path / "budget.json").write_text(json.dumps({"steps": 7, "prompts": 3, "group_size": 8, "expert": 32,
                                                      "lr": 3e-4, "train_minutes": 2.5}))
    proc = subprocess.run([sys.executable, "bench/compare.py", "--table-only", "--out", str(tmp_path),
                           "--methods", "original", "sft"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (tmp_path / "compare.md").read_text()
    assert text.startswith("Budget: 7 optimizer steps; per step 3 prompts x 8 rollouts")
    assert "stopped there" in text and "| sft | original | non_live_ast | 2 | 100.0 | 50.0 | 1 | 0 | 1 |" in text
    assert [r["method"] for r in json.loads((tmp_path / "compare.json").read_text())["rows"]] == ["original", "sft"]
    assert not (tmp_path / "runs").exists()  # nothing was trained


@pytest.mark.slow
def test_the_gpu_script_rehearses_every_stage_on_the_cpu(tmp_path: Path) -> None:
    """bench/compare_gpu.sh with REHEARSE=1: training, validation, BFCL and ToolACE scoring, table and plot."""
    out = tmp_path / "rehearsal"
    proc = subprocess.run(["bash", "bench/compare_gpu.sh", str(out)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "REHEARSE": "1", "PY": sys.executable,
                               "METHODS": "original sft grpo_ds chord_phi"},
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "compare.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["original", "sft", "grpo_ds", "chord_phi"]
    assert not any("error" in r for r in data["rows"])
    assert {(t["method"], t["against"]) for t in data["paired"]} >= {("chord_phi", "sft"), ("sft", "original")}
    assert (out / "compare.png").stat().st_size > 0 and "McNemar" in (out / "compare.md").read_text()
    assert "dynamic_sampling: true" in (out / "runs" / "grpo_ds" / "config.yaml").read_text()
    assert "dynamic_sampling: false" in (out / "runs" / "chord_phi" / "config.yaml").read_text()
