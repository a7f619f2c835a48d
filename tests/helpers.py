"""Shared by the training tests: run ``python -m algorithms.train`` in a subprocess and read what it logged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_train_process(run_dir: Path, *overrides: str, accelerator: str = "cpu",
                      timeout: int = 600) -> subprocess.CompletedProcess:
    """The real entry point with ``overrides``; DeepSpeed on ``accelerator`` (cpu or cuda)."""
    env = {**os.environ, "DS_ACCELERATOR": accelerator, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "algorithms.train", f"run_dir={run_dir}", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def kill_at_checkpoint(run_dir: Path, *overrides: str, step: int, grace_s: float = 0.0,
                       accelerator: str = "cpu") -> int:
    """Start the real entry point, SIGKILL it once checkpoint ``step`` is the latest (``grace_s`` later, to
    land inside a following step), and return the step of the checkpoint it left as LATEST."""
    env = {**os.environ, "DS_ACCELERATOR": accelerator, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "algorithms.train", f"run_dir={run_dir}", *overrides]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pointer = run_dir / "checkpoints" / "LATEST"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if pointer.exists() and pointer.read_text().strip() == f"step-{step:06d}":
            break
        time.sleep(0.2)
    if proc.poll() is not None:
        raise AssertionError("the run ended before it could be killed: " + proc.stderr.read()[-3000:])
    time.sleep(grace_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return int(pointer.read_text().strip().split("-")[1])


def metric_rows(run_dir: Path) -> list[dict]:
    """Every row of the run's ``metrics.jsonl`` (train steps and evaluations)."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def autocast_probe(run_dir: Path, *overrides: str, accelerator: str = "cpu") -> dict:
    """``tests/autocast_probe.py``'s report of one SFT step (the tiny model) on ``accelerator``."""
    env = {**os.environ, "DS_ACCELERATOR": accelerator, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.autocast_probe", str(run_dir), *overrides], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])

