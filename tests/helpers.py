"""Shared by the training tests: run ``python -m algorithms.train`` in a subprocess and read what it logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_train_process(run_dir: Path, *overrides: str, accelerator: str = "cpu",
                      timeout: int = 600) -> subprocess.CompletedProcess:
    """The real entry point with ``overrides``; DeepSpeed on ``accelerator`` (cpu or cuda)."""
    env = {**os.environ, "DS_ACCELERATOR": accelerator, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "algorithms.train", f"run_dir={run_dir}", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def metric_rows(run_dir: Path) -> list[dict]:
    """Every row of the run's ``metrics.jsonl`` (train steps and evaluations)."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
