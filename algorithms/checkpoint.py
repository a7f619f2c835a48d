"""Atomic checkpoints: DeepSpeed state for resuming plus a Hugging Face export for use elsewhere.

Layout under ``<run_dir>/checkpoints``::

    step-000010/           one checkpoint, complete or absent
        deepspeed/         engine.save_checkpoint (model, optimizer, scheduler)
        hf/                save_pretrained + tokenizer
        trainer_state.json step, RNG state, metrics needed to continue
    LATEST                 the name of the newest complete checkpoint

A checkpoint is written into ``.tmp-step-000010`` and renamed into place only when every part is on
disk; ``LATEST`` is replaced atomically afterwards. A run killed at any moment therefore resumes from the
last complete checkpoint and never sees a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

LATEST = "LATEST"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """The newest complete checkpoint directory, or None when the run has none."""
    pointer = ckpt_root / LATEST
    if not pointer.exists():
        return None
    path = ckpt_root / pointer.read_text().strip()
    if not (path / "trainer_state.json").exists():
        raise RuntimeError(f"{pointer} names {path.name}, which is incomplete; remove {pointer} to start over")
    return path


def save_checkpoint(engine: Any, tokenizer: Any, ckpt_root: Path, step: int, state: dict[str, Any],
                    is_main: bool, keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically (all ranks call this; rank 0 writes the shared files)."""
    from algorithms.distributed import barrier

    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / checkpoint_name(step)
    tmp = ckpt_root / f".tmp-{checkpoint_name(step)}"
    if is_main and tmp.exists():
        shutil.rmtree(tmp)
    barrier()
    engine.save_checkpoint(str(tmp / "deepspeed"), tag="state", save_latest=False)
    if is_main:
        engine.module.save_pretrained(tmp / "hf", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "hf")
        _write_text_atomic(tmp / "trainer_state.json", json.dumps(state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_text_atomic(ckpt_root / LATEST, final.name)
        _prune(ckpt_root, keep)
    barrier()
    return final


def load_checkpoint(engine: Any, path: Path) -> dict[str, Any]:
    """Restore the engine from ``path`` and return the trainer state saved with it."""
    load_path, _ = engine.load_checkpoint(str(path / "deepspeed"), tag="state")
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint in {path / 'deepspeed'}")
    return json.loads((path / "trainer_state.json").read_text())


def _prune(ckpt_root: Path, keep: int) -> None:
    complete = sorted(p for p in ckpt_root.glob("step-*") if (p / "trainer_state.json").exists())
    for old in complete[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
