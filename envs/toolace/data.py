"""Task files and the cache of generated splits.

A split directory holds ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` (one ``Task`` per line) and
``meta.json`` (the generator version, seed, sizes and kinds). ``generate_all`` writes one;
``load_split("train")`` reads ``train.jsonl`` from the cache directory, generating all three splits there
first if a file is missing (or was written by an older generator). The cache is
``$CHORDGYM_DATA_DIR/seed-<seed>/`` when the variable is set, else ``<repo>/data/generated/toolace/seed-<seed>/``.
An explicit ``data_dir`` is used as is (``<data_dir>/<split>.jsonl``, the layout that
``python -m envs.toolace.generate --out DIR`` writes) and generated into only if its files are missing.
Generation holds a file lock, so parallel workers generate once. The check of every generated task
(replay through the environment) is the caller's to give: ``ToolACEEnv`` and the command give theirs.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from envs.toolace.generator import GENERATOR_VERSION, KIND_WEIGHTS, TaskCheck, dedup_key, generate_split
from envs.toolace.splits import SPLITS
from envs.toolace.task import Task

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "CHORDGYM_DATA_DIR"
DEFAULT_SIZES = {"train": 5000, "val": 400, "test": 800}


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


def write_tasks(path: Path, tasks: list[Task]) -> None:
    """Write ``tasks`` as JSONL atomically (temp file + rename), so concurrent readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for t in tasks:
            f.write(t.to_json() + "\n")
    os.replace(tmp, path)


def generate_all(out: str | Path, seed: int = 0, sizes: dict[str, int] | None = None,
                 check: TaskCheck | None = None) -> dict[str, Any]:
    """Generate the three splits (``check`` sees every task) and write ``train/val/test.jsonl`` and
    ``meta.json`` under ``out``; returns the meta record. Val leaves out tasks that train already has."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    out = Path(out)
    t0 = time.perf_counter()
    train = generate_split("train", sizes["train"], seed, check)
    val = generate_split("val", sizes["val"], seed, check, exclude={dedup_key(t) for t in train})
    test = generate_split("test", sizes["test"], seed, check)
    for name, tasks in (("train", train), ("val", val), ("test", test)):
        write_tasks(out / f"{name}.jsonl", tasks)
    counts = {name: {k: sum(t.kind == k for t in ts) for k in KIND_WEIGHTS} for name, ts in (("train", train), ("val", val), ("test", test))}
    meta = {"generator_version": GENERATOR_VERSION, "seed": seed, "sizes": sizes, "kinds": counts,
            "seconds": round(time.perf_counter() - t0, 2)}
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".meta.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp, out / "meta.json")
    return meta


def _fresh(directory: Path, cache: bool) -> bool:
    if not all((directory / f"{s}.jsonl").exists() for s in SPLITS):
        return False
    if not cache:
        return True
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("generator_version") == GENERATOR_VERSION


def ensure_generated(data_dir: str | Path | None = None, seed: int = 0, check: TaskCheck | None = None) -> Path:
    """The directory holding the splits, generating them (under a file lock, each task passed to ``check``)
    when needed."""
    cache = data_dir is None
    directory = default_data_dir(seed) if cache else Path(data_dir)
    if _fresh(directory, cache):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".generate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _fresh(directory, cache):
                log.info("generating ToolACE splits (seed %d) into %s", seed, directory)
                generate_all(directory, seed, check=check)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return directory


def load_split(split: str, data_dir: str | Path | None = None, seed: int = 0,
               on_error: Literal["raise", "skip"] = "raise", check: TaskCheck | None = None) -> list[Task]:
    """The tasks of ``split`` (``train``, ``val`` or ``test``), generated on first use (``check``: see
    ``ensure_generated``; ``ToolACEEnv`` passes ``envs.toolace.env.expert_check()``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return read_tasks(ensure_generated(data_dir, seed, check) / f"{split}.jsonl", on_error=on_error)
