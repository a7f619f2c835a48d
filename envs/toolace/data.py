"""Reading and caching task splits.

``load_split("train")`` reads ``train.jsonl`` from the cache directory, generating all three splits
there first if a file is missing (or was written by an older generator). The cache is
``$CHORDGYM_DATA_DIR/seed-<seed>/`` when the variable is set, else ``<repo>/data/generated/toolace/seed-<seed>/``.
An explicit ``data_dir`` is used as is (``<data_dir>/<split>.jsonl``, the layout that
``python -m envs.toolace.generate --out DIR`` writes) and generated into only if its files are missing.
Generation holds a file lock, so parallel workers generate once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Literal

from envs.toolace.splits import SPLITS
from envs.toolace.task import Task

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "CHORDGYM_DATA_DIR"


def default_data_dir(seed: int = 0) -> Path:
    """The cache directory for generated splits of ``seed``."""
    root = Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else REPO_ROOT / "data" / "generated" / "toolace"
    return root / f"seed-{seed}"


def read_tasks(path: str | Path, on_error: Literal["raise", "skip"] = "raise") -> list[Task]:
    """Tasks from a JSONL file. A broken line raises ``ValueError`` naming the file and line number;
    with ``on_error="skip"`` broken lines are dropped and their count logged as a warning."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    tasks, skipped = [], 0
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                tasks.append(Task.from_dict(json.loads(line)))
            except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
                if on_error == "raise":
                    raise ValueError(f"{path}:{lineno}: invalid task line: {e}") from None
                skipped += 1
    if skipped:
        log.warning("%s: skipped %d invalid line(s), kept %d task(s)", path, skipped, len(tasks))
    return tasks


def _fresh(directory: Path, cache: bool) -> bool:
    if not all((directory / f"{s}.jsonl").exists() for s in SPLITS):
        return False
    if not cache:
        return True
    from envs.toolace.generate import GENERATOR_VERSION
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("generator_version") == GENERATOR_VERSION


def ensure_generated(data_dir: str | Path | None = None, seed: int = 0) -> Path:
    """The directory holding the splits, generating them (under a file lock) when needed."""
    cache = data_dir is None
    directory = default_data_dir(seed) if cache else Path(data_dir)
    if _fresh(directory, cache):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".generate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _fresh(directory, cache):
                from envs.toolace.generate import generate_all
                log.info("generating ToolACE splits (seed %d) into %s", seed, directory)
                generate_all(directory, seed)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return directory


def load_split(split: str, data_dir: str | Path | None = None, seed: int = 0,
               on_error: Literal["raise", "skip"] = "raise") -> list[Task]:
    """The tasks of ``split`` (``train``, ``val`` or ``test``), generated on first use."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return read_tasks(ensure_generated(data_dir, seed) / f"{split}.jsonl", on_error=on_error)
