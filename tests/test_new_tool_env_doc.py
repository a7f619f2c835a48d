"""docs/new-tool-env.md, run literally in an empty directory: its ``file=`` blocks become files, its Python
blocks run in order in one namespace, and its shell blocks (train, then evaluate the checkpoint) run as
they are, with this interpreter first on PATH."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.doc_runner import doc_blocks, run_page_in, run_shell_block

DOC = Path(__file__).resolve().parents[1] / "docs" / "new-tool-env.md"


@pytest.mark.slow  # 72 s: make test-slow; the default suite keeps its 15 minutes
def test_doc_runs_end_to_end(tmp_path, monkeypatch, capsys):
    blocks = doc_blocks(DOC)
    assert set(blocks.files) == {"bookshop_env.py", "configs/env/bookshop.yaml"}
    assert len(blocks.python) == 2 and len(blocks.shell) == 2
    run_page_in(tmp_path, blocks, DOC, monkeypatch)
    out = capsys.readouterr().out
    assert "order" in out.lower() and "error" in out

    train = run_shell_block(blocks.shell[0], tmp_path)
    assert train.returncode == 0, train.stderr[-4000:]
    run_dir = tmp_path / "runs" / "bookshop-chord_mu-tiny-random"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env"] == "bookshop" and summary["eval_split"] == "test" and summary["eval_n"] == 4
    held_out = [json.loads(line) for line in (run_dir / "eval" / "step-000002.jsonl").read_text().splitlines()]
    assert held_out and all(r["task_id"] in {f"bookshop-{i}" for i in range(4, 40, 5)} for r in held_out)
    assert "training tasks" not in train.stderr  # train and test share no task: no overlap warning

    evaluate = run_shell_block(blocks.shell[1], tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr[-4000:]
    results = json.loads((tmp_path / "runs" / "eval-bookshop" / "results.json").read_text())
    assert [e["id"] for e in results["entries"]] == [f"bookshop-{i}" for i in range(4, 34, 5)]
    assert "bookshop/test" in (tmp_path / "runs" / "eval-bookshop" / "results.md").read_text()
