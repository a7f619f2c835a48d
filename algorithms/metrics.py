"""Where training metrics go: a JSONL file, TensorBoard, and a progress bar on the terminal.

Only rank 0 logs. On resume the JSONL is cut back to the resumed step, so every step appears in it
exactly once even when a killed run had logged steps after its last checkpoint. The cut writes a new file
beside the old one and renames it over it (``write_jsonl_atomic``): a kill during the cut loses no row.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a kill: everything before it stands
    return rows


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace ``path`` by ``rows``, one JSON object a line: written to a temporary file in the same
    directory, fsynced, then renamed over ``path``. Until the rename the old file stands untouched, so an
    exception or a kill at any point leaves either the old file or the new one, never a cut one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # a file system that cannot fsync a directory: the rename itself is still atomic


class MetricsLogger:
    """Append metric rows (one per optimizer step or evaluation) to JSONL and TensorBoard."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int = 0, total_steps: int = 0,
                 show_progress: bool = True):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self._tb = None
        self._progress: Progress | None = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        if not self.path.exists() or self.path.read_text() != text:  # rows to cut, or a line a kill cut short
            write_jsonl_atomic(self.path, kept)
        from torch.utils.tensorboard import SummaryWriter

        self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1)
        if show_progress:
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=total_steps, completed=resume_step, status="")
        self._t0 = time.time()

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {k: (float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v) for k, v in row.items()}
        row["step"] = int(row["step"])
        row["time"] = time.time()
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for key, value in row.items():
            if key not in ("step", "time") and isinstance(value, float) and math.isfinite(value):
                self._tb.add_scalar(key, value, row["step"])
        self._tb.flush()

    def progress(self, step: int, status: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, status=status)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._tb is not None:
            self._tb.close()
