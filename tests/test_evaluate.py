"""``python -m agents.evaluate``: the summary (accuracy, Wilson interval, per-kind rows) and a CPU run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.evaluate import baseline_label, markdown_report, model_label, paired_with_baseline, summarise
from tests.helpers import REPO


def _record(suite: str, correct: bool, kind: str | None = None) -> dict:
    return {"suite": suite, "correct": correct, "verdict": {"kind": kind} if kind else {}}


def test_summary_counts_kinds_and_intervals() -> None:
    records = ([_record("toolace/test", True, "no_tool")] * 3 + [_record("toolace/test", False, "no_tool")]
               + [_record("toolace/test", True, "single")] + [_record("toolace/test", False, "single")] * 3
               + [_record("math/test", True), _record("math/test", False)])
    summary = summarise(records)
    assert summary["accuracy"] == {"toolace/test": 0.5, "math/test": 0.5}
    assert summary["accuracy_by_kind"] == {"toolace/test": {"no_tool": 0.75, "single": 0.25}}
    assert summary["counts_by_kind"]["toolace/test"]["single"] == {"n": 4, "correct": 1}
    # Wilson 95% for 4/8: centre 0.5, half 1.96 / 1.4802 * sqrt(0.03125 + 3.8416 / 256) = 0.284787
    lo, hi = summary["interval95"]["toolace/test"]
    assert lo == pytest.approx(0.5 - 0.284787, abs=1e-5) and hi == pytest.approx(0.5 + 0.284787, abs=1e-5)
    table = markdown_report(summary, "m", baseline=summary, baseline_name="base")
    assert "| toolace/test | 50.0 | 8 | 21.5-78.5 | 50.0 |" in table
    assert "| toolace/test · no_tool | 75.0 | 4 |" in table
    assert "| math/test | 50.0 | 2 |" in table and "math/test ·" not in table


def test_no_tool_sub_kinds_get_rows_of_their_own_and_kind_counts_still_add_up() -> None:
    def rec(correct: bool, kind: str, subkind: str | None = None) -> dict:
        return {"suite": "toolace/test", "correct": correct,
                "verdict": {"kind": kind, "meta": {"subkind": subkind} if subkind else {}}}

    records = [rec(False, "no_tool", "irrelevant"), rec(False, "no_tool", "irrelevant"),
               rec(True, "no_tool", "irrelevant"), rec(True, "no_tool", "chitchat"), rec(True, "single")]
    summary = summarise(records)
    assert summary["counts_by_subkind"]["toolace/test"] == {"no_tool · irrelevant": {"n": 3, "correct": 1},
                                                            "no_tool · chitchat": {"n": 1, "correct": 1}}
    assert sum(c["n"] for c in summary["counts_by_kind"]["toolace/test"].values()) == len(records)
    base = summarise([rec(True, "no_tool", "irrelevant"), rec(True, "single")])
    lines = markdown_report(summary, "m", baseline=base, baseline_name="base").splitlines()
    rows = [line.split(" | ")[0].lstrip("| ") for line in lines if line.startswith("| toolace/test")]
    assert rows == ["toolace/test", "toolace/test · no_tool", "toolace/test · no_tool · chitchat",
                    "toolace/test · no_tool · irrelevant", "toolace/test · single"]  # each under its kind
    assert "| toolace/test · no_tool · irrelevant | 33.3 | 3 | 6.1-79.2 | 100.0 |" in lines
    assert "| toolace/test · no_tool · chitchat | 100.0 | 1 | 20.7-100.0 | — |" in lines


def test_summary_tallies_failure_causes_of_failed_entries_only() -> None:
    def rec(suite: str, correct: bool, failure: str | None = None, **verdict) -> dict:
        return {"suite": suite, "correct": correct, "failure": failure, "verdict": verdict}

    records = [rec("toolace/test", False, "wrong_value", kind="single"),
               rec("toolace/test", False, "no_call", kind="single"),
               rec("toolace/test", False, "wrong_value", kind="parallel"),
               rec("toolace/test", True, None, kind="single"),
               rec("toolace/test", True, "no_call", kind="single"),  # solved: its tag is not a failure
               rec("bfcl/simple_python", False, "value_error:string"),
               rec("bfcl/simple_python", True, None),
               rec("math/test", False)]
    summary = summarise(records)
    assert summary["failures"] == {"toolace/test": {"wrong_value": 2, "no_call": 1},
                                   "bfcl/simple_python": {"value_error:string": 1}}
    assert list(summary["failures"]["toolace/test"]) == ["wrong_value", "no_call"]  # most frequent first
    base = summarise([rec("toolace/test", False, "turn_cap")])
    table = markdown_report(summary, "m", baseline=base, baseline_name="base")
    assert "| toolace/test | wrong_value | 2 | 0 |" in table
    assert "| toolace/test | turn_cap | 0 | 1 |" in table  # a cause only the baseline has still shows
    assert "| bfcl/simple_python | value_error:string | 1 | 0 |" in table
    old_baseline = {k: v for k, v in base.items() if k != "failures"}  # written before causes were recorded
    table = markdown_report(summary, "m", baseline=old_baseline, baseline_name="base")
    assert "| toolace/test | wrong_value | 2 |\n" in table


def test_model_label_names_checkpoints_by_run_and_step() -> None:
    assert model_label("runs/final5/checkpoints/step-000012/hf") == "final5/step-000012"
    assert model_label("smollm2-135m-instruct") == "smollm2-135m-instruct"


def test_the_same_model_as_baseline_is_named_by_its_results_directory() -> None:
    ckpt = "runs/final5/checkpoints/step-000012/hf"
    assert baseline_label(ckpt, "smollm2-135m-instruct", "runs/eval/base/results.json") == "smollm2-135m-instruct"
    assert baseline_label(ckpt, ckpt, "runs/eval30/final5-val200/results.json") == "baseline final5-val200"


def test_paired_with_baseline_matches_entries_by_suite_and_id() -> None:
    def rec(suite: str, id_: str, correct: bool) -> dict:
        return {"suite": suite, "id": id_, "correct": correct}

    base = [rec("t", "a", True), rec("t", "b", False), rec("t", "c", False), rec("u", "a", False)]
    new = [rec("t", "c", True), rec("t", "b", True), rec("t", "a", False), rec("t", "z", True), rec("v", "a", True)]
    # t: a lost, b and c gained (z has no baseline entry); u and v share no entry
    assert paired_with_baseline(new, base) == {"t": {"n": 3, "gained": 2, "lost": 1, "p_value": 1.0}}


def test_evaluate_on_cpu_writes_results(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "agents.evaluate", "model=tiny", "suites=[toolace]", "toolace.limit=3",
           "max_new_tokens=8", "device=cpu", "progress=false"]
    proc = subprocess.run(cmd + [f"out_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["entries"]) == 3
    summary = results["summary"]
    assert sum(c["n"] for c in summary["counts_by_kind"]["toolace/test"].values()) == 3
    assert len(summary["interval95"]["toolace/test"]) == 2
    assert "95% CI" in (tmp_path / "results.md").read_text()
    failed = [e for e in results["entries"] if not e["correct"]]
    assert sum(summary.get("failures", {}).get("toolace/test", {}).values()) == len(failed)
    assert all(e["failure"] and e["failure"] == e["verdict"]["failure"] for e in failed)
    again = tmp_path / "again"
    proc = subprocess.run(cmd + [f"out_dir={again}", f"baseline={tmp_path / 'results.json'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    paired = json.loads((again / "results.json").read_text())["summary"]["paired_vs_baseline"]["toolace/test"]
    assert paired["n"] == 3 and paired["gained"] == paired["lost"] == 0  # same model, greedy: same verdicts
