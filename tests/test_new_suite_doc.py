"""docs/new-suite.md, run literally in an empty directory: a user's suite with a corpus-level metric,
evaluated through ``python -m agents.evaluate`` twice, the second time against the first as baseline."""

from __future__ import annotations

import json
from pathlib import Path

from tests.doc_runner import doc_blocks, run_page_in, run_shell_block

DOC = Path(__file__).resolve().parents[1] / "docs" / "new-suite.md"


def test_doc_runs_end_to_end(tmp_path, monkeypatch, capsys):
    blocks = doc_blocks(DOC)
    assert set(blocks.files) == {"suite/test.jsonl", "callsuite_env.py", "configs/env/callsuite.yaml"}
    assert len(blocks.python) == 1 and len(blocks.shell) == 1
    run_page_in(tmp_path, blocks, DOC, monkeypatch)
    assert "call_f1" in capsys.readouterr().out

    proc = run_shell_block(blocks.shell[0], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    base = json.loads((tmp_path / "runs" / "callsuite-base" / "results.json").read_text())["summary"]
    again = json.loads((tmp_path / "runs" / "callsuite-again" / "results.json").read_text())
    assert set(base["corpus_metrics"]["callsuite/test"]) == {"call_precision", "call_recall", "call_f1"}
    assert again["summary"]["corpus_metrics"]["callsuite/test"] == base["corpus_metrics"]["callsuite/test"]
    assert "toolace/test" not in again["summary"].get("corpus_metrics", {})  # ToolACE defines none
    assert [e["id"] for e in again["entries"] if e["suite"] == "callsuite/test"] == ["fx-0", "fx-1", "tz-0", "tz-1", "no-0"]
    table = (tmp_path / "runs" / "callsuite-again" / "results.md").read_text()
    documented = [line for _, body in blocks.other for line in body.splitlines()]
    assert documented[0] in table  # the page's sample header is the report's
    rows = [line for line in table.splitlines() if line.startswith("| callsuite/test | call_")]
    assert len(rows) == 3 and all(line.count("|") == 5 for line in rows)  # a value and the baseline's
    assert again["summary"]["paired_vs_baseline"]["callsuite/test"]["n"] == 5
