"""Where training metrics go: the loggers named in ``logger`` (JSONL, TensorBoard, W&B) and a progress bar.

Each logger is a small class behind one interface (``Logger``: ``log`` a row, ``log_transcripts`` of an
evaluation, ``close``); ``MetricsLogger`` builds the ones a run names and hands every row to each. Only rank 0
logs.

On resume every logger keeps each step exactly once, even when a killed run had logged steps after its last
checkpoint: the JSONL is cut back to the resumed step (the cut writes a new file beside the old one and renames
it over it, ``write_jsonl_atomic``: a kill during the cut loses no row), TensorBoard purges the later steps,
and W&B, whose history cannot be cut, continues the same run and skips the steps it already holds
(``WandbLogger``).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from agents.heldout import TaskRecord

LOGGERS = ("jsonl", "tensorboard", "wandb")  # the names ``logger`` takes: JsonlLogger, TensorBoardLogger, WandbLogger
DEFAULT_LOGGERS = ("jsonl", "tensorboard")
WANDB_MODES = ("online", "offline", "disabled")


class LoggerStartError(RuntimeError):
    """A logger that cannot start (W&B without a login for ``mode=online``, say); the message names the setting."""


@dataclass(frozen=True, kw_only=True)
class WandbSettings:
    """The ``wandb:`` section of ``configs/train.yaml`` (used with ``logger=[...,wandb]``; checked by
    ``algorithms.config.logging_config``)."""

    project: str | None = None  # null: $WANDB_PROJECT, else chordgym
    entity: str | None = None
    name: str | None = None  # null: the run directory's name
    group: str | None = None
    tags: tuple[str, ...] = ()
    mode: str | None = None  # null: $WANDB_MODE, else offline

    def resolved_mode(self) -> str:
        """``mode``, else ``$WANDB_MODE``, else ``offline``: nothing leaves the machine unless asked to."""
        return self.mode or os.environ.get("WANDB_MODE") or "offline"

    def resolved_project(self) -> str:
        return self.project or os.environ.get("WANDB_PROJECT") or "chordgym"


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


class Logger:
    """One place the run's metrics go. ``log`` gets every row (``step`` an int, the other values floats, plus
    ``time``); ``log_transcripts`` each held-out evaluation's records; ``close`` once, at the end."""

    def log(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_transcripts(self, step: int, records: Sequence[TaskRecord]) -> None:
        """Most loggers keep only numbers."""

    def close(self) -> None:
        pass


def write_eval_transcripts(run_dir: Path, step: int, records: Sequence[TaskRecord]) -> Path:
    """What the model said on the held-out tasks and, for a failed task, why (its environment's ``failure``):
    one JSON line per record in ``<run_dir>/eval/step-NNNNNN.jsonl``."""
    out = run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"step-{step:06d}.jsonl"
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps({"task_id": r.id, "reward": r.reward, "failure": r.failure, "assistant": r.output,
                                "environment": r.environment}, default=str) + "\n")
    return path


class JsonlLogger(Logger):
    """``metrics.jsonl`` (one row a line, cut back to the resumed step on resume) and the held-out transcripts
    ``eval/step-NNNNNN.jsonl`` (``write_eval_transcripts``)."""

    def __init__(self, run_dir: Path, resume_step: int):
        self.run_dir = run_dir
        self.path = run_dir / "metrics.jsonl"
        kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        if not self.path.exists() or self.path.read_text() != text:  # rows to cut, or a line a kill cut short
            write_jsonl_atomic(self.path, kept)

    def log(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def log_transcripts(self, step: int, records: Sequence[TaskRecord]) -> None:
        write_eval_transcripts(self.run_dir, step, records)


class TensorBoardLogger(Logger):
    """The finite scalars of every row under ``tensorboard/``; steps after the resumed one are purged."""

    def __init__(self, run_dir: Path, resume_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1)

    def log(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key not in ("step", "time") and isinstance(value, float) and math.isfinite(value):
                self._tb.add_scalar(key, value, row["step"])
        self._tb.flush()

    def close(self) -> None:
        self._tb.close()


class WandbLogger(Logger):
    """A W&B run (the ``wandb`` package): every row at its step, the resolved config as the run's config, and
    each evaluation's transcripts as a table ``eval/transcripts`` (task id, reward, failure, the assistant's
    turns).

    ``<run_dir>/wandb.json`` holds the run's id and the last step handed to W&B. A resumed run
    (``resume_step > 0``) continues the run of that id; a run that starts at step 0 starts a new one. W&B's
    history cannot be cut back the way ``metrics.jsonl`` is, so the steps a killed run had logged after its
    last checkpoint are not logged again when the resumed run redoes them: every step is in W&B once. The
    file names the step before W&B gets it, so a kill between the two loses that step's row rather than
    logging it twice.
    """

    STATE_FILE = "wandb.json"
    TABLE_KEY = "eval/transcripts"
    COLUMNS = ("task_id", "reward", "failure", "assistant")

    def __init__(self, run_dir: Path, resume_step: int, config: Mapping[str, Any] | None,
                 settings: WandbSettings):
        import wandb

        self._wandb = wandb
        self._state_path = run_dir / self.STATE_FILE
        state = self._read_state() if resume_step > 0 else {}
        self.run_id = state.get("id") or _new_run_id()
        self._logged_before = int(state.get("step", -1))  # what earlier sessions of this run gave W&B
        self._last_step = self._logged_before
        self._write_state()
        mode = settings.resolved_mode()
        try:
            self.run = wandb.init(
                project=settings.resolved_project(), entity=settings.entity, name=settings.name or run_dir.name,
                group=settings.group, tags=list(settings.tags) or None, mode=mode, id=self.run_id,
                resume="allow", config=dict(config or {}), allow_val_change=True,
                dir=os.environ.get("WANDB_DIR") or str(run_dir))
        except Exception as err:  # a login, a network or a settings problem: one line, not wandb's traceback
            raise LoggerStartError(f"wandb: could not start the run (wandb.mode={mode}): "
                                   f"{' '.join(str(err).split())}") from None

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or damaged: a new W&B run
        return state if isinstance(state, dict) and isinstance(state.get("id"), str) else {}

    def _write_state(self) -> None:
        tmp = self._state_path.with_name(f".{self._state_path.name}.tmp")
        tmp.write_text(json.dumps({"id": self.run_id, "step": self._last_step}) + "\n")
        os.replace(tmp, self._state_path)

    def _take(self, step: int) -> bool:
        """Whether ``step`` goes to W&B (not if an earlier session already logged it); records it first."""
        if step <= self._logged_before:
            return False
        if step > self._last_step:
            self._last_step = step
            self._write_state()
        return True

    def log(self, row: dict[str, Any]) -> None:
        step = row["step"]
        if self._take(step):
            self.run.log({k: v for k, v in row.items() if k not in ("step", "time")}, step=step)

    def log_transcripts(self, step: int, records: Sequence[TaskRecord]) -> None:
        if not self._take(step):
            return
        rows = [[str(r.id), float(r.reward), r.failure, "\n---\n".join(r.output)] for r in records]
        self.run.log({self.TABLE_KEY: self._wandb.Table(columns=list(self.COLUMNS), data=rows)}, step=step)

    def close(self) -> None:
        self.run.finish()


def _new_run_id() -> str:
    """A fresh W&B run id: 8 lowercase letters and digits, like the ones W&B makes itself."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class MetricsLogger:
    """The run's loggers (``loggers``: names from ``LOGGERS``) and its progress bar.

    ``run_config`` is the resolved config (W&B's run config); ``wandb`` the ``wandb:`` section. On a rank
    other than 0 (``enabled=False``) nothing is built and every call does nothing.
    """

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int = 0, total_steps: int = 0,
                 show_progress: bool = True, loggers: Sequence[str] = DEFAULT_LOGGERS,
                 run_config: Mapping[str, Any] | None = None, wandb: WandbSettings | None = None):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.loggers: list[Logger] = []
        self._progress: Progress | None = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in loggers:
            if name == "jsonl":
                self.loggers.append(JsonlLogger(run_dir, resume_step))
            elif name == "tensorboard":
                self.loggers.append(TensorBoardLogger(run_dir, resume_step))
            elif name == "wandb":
                self.loggers.append(WandbLogger(run_dir, resume_step, run_config, wandb or WandbSettings()))
            else:
                raise ValueError(f"unknown logger {name!r}")  # algorithms.config checked the names first
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
        for logger in self.loggers:
            logger.log(row)

    def log_transcripts(self, step: int, records: Sequence[TaskRecord]) -> None:
        """One held-out evaluation's records (``agents.heldout.TaskRecord``), for the loggers that keep them."""
        if not self.enabled:
            return
        for logger in self.loggers:
            logger.log_transcripts(step, records)

    def progress(self, step: int, status: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, status=status)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        for logger in self.loggers:
            logger.close()
