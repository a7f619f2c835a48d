"""Atomic, verified checkpoints: DeepSpeed state for resuming plus a Hugging Face export for use elsewhere.

Layout under ``<run_dir>/checkpoints``::

    step-000010/           one checkpoint, complete or absent
        deepspeed/         engine.save_checkpoint (model, optimizer, scheduler)
        hf/                the policy as a plain Hugging Face model + tokenizer (a LoRA run's adapters merged)
        adapter/           a LoRA run's adapter alone (peft's save_pretrained)
        trainer_state.json step, RNG state, metrics needed to continue
        MANIFEST.json      size and sha256 of every other file, and the step; written last
    LATEST                 the name of the newest complete checkpoint

A checkpoint is written into ``.tmp-step-000010``: every file is hashed and fsynced, ``MANIFEST.json`` is
written last, and the directory is renamed into place only then; ``LATEST`` is replaced atomically
afterwards. A run killed at any moment therefore resumes from the last complete checkpoint and never sees a
half-written one. What the disk does to a checkpoint afterwards (bit flips, truncation by a copy, a file
lost) is caught on resume by ``verify_checkpoint`` against the manifest; ``find_resume_checkpoint`` then
falls back to the newest checkpoint that verifies. A save that fails (disk full, no permission) removes its
temporary directory and raises ``CheckpointWriteError`` with one line naming the path and the cause.

Checkpoints written before manifests existed are checked as far as their files allow (``trainer_state.json``
parses, every zip-format ``.pt`` file passes its CRC-32s, every ``.safetensors`` file has the size its header
promises) and accepted with a warning.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.lora import is_lora, save_adapter, save_merged

LATEST = "LATEST"
MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = "chordgym-checkpoint/1"
TMP_PREFIX = ".tmp-"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_READ_BYTES = 8 << 20  # hashing reads: large enough that the per-call cost vanishes (docs/training.md)


class CheckpointError(RuntimeError):
    """No checkpoint to resume from that verifies; the message is one line naming the path(s) and why."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written; the message is one line naming the path and the cause."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def _step_of(path: Path) -> int | None:
    match = _STEP_DIR.match(path.name)
    return int(match.group(1)) if match else None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# -- the manifest ----------------------------------------------------------------------------------------
def _hash_file(path: Path, fsync: bool = False) -> tuple[int, str]:
    """(size, sha256 hex) of ``path``, read in large blocks; with ``fsync`` its data is flushed to disk too."""
    digest = hashlib.sha256()
    buf = bytearray(_READ_BYTES)
    view = memoryview(buf)
    size = 0
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
            size += n
        if fsync:
            os.fsync(f.fileno())
    return size, digest.hexdigest()


def _files_of(directory: Path) -> list[Path]:
    """Every regular file under ``directory`` except the manifest, sorted by relative path."""
    return sorted((p for p in directory.rglob("*") if p.is_file() and p.relative_to(directory).as_posix() != MANIFEST),
                  key=lambda p: p.relative_to(directory).as_posix())


def write_manifest(directory: Path, step: int) -> dict[str, Any]:
    """Hash and fsync every file of ``directory``, then write ``MANIFEST.json`` (fsynced) last."""
    files = {}
    for path in _files_of(directory):
        size, sha = _hash_file(path, fsync=True)
        files[path.relative_to(directory).as_posix()] = {"size": size, "sha256": sha}
    manifest = {"format": MANIFEST_FORMAT, "step": int(step), "files": files}
    with (directory / MANIFEST).open("w") as f:
        f.write(json.dumps(manifest, indent=1))
        f.flush()
        os.fsync(f.fileno())
    for sub in sorted({p.parent for p in directory.rglob("*")} | {directory}, key=lambda p: -len(p.parts)):
        _fsync_dir(sub)
    return manifest


def _read_manifest(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None), (None, why it is unusable), or (None, None) when there is none."""
    file = path / MANIFEST
    if not file.exists():
        return None, None
    try:
        manifest = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"{MANIFEST} is unreadable ({_short(err)})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
            for v in files.values()):
        return None, f"{MANIFEST} is malformed (no files with size and sha256)"
    return manifest, None


def _short(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror.lower()}, errno {err.errno}"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def verify_checkpoint(path: Path, hashes: bool = True) -> str | None:
    """None when checkpoint ``path`` is intact, else why not (one line, naming the file).

    With a manifest: every listed file exists with its size and (``hashes``) its sha256; sizes are checked
    for all files before any is hashed, so a truncated file is found without reading the others. Files not
    listed are ignored. Without one (a checkpoint from before manifests): ``_verify_legacy``.
    """
    if not path.is_dir():
        return "no such checkpoint directory"
    manifest, problem = _read_manifest(path)
    if problem:
        return problem
    if manifest is None:
        return _verify_legacy(path, deep=hashes)
    files = manifest["files"]
    for rel, entry in files.items():
        file = path / rel
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            return f"{rel} is missing"
        except OSError as err:
            return f"{rel} is unreadable ({_short(err)})"
        if size != entry["size"]:
            return f"{rel} has {size} bytes, the manifest says {entry['size']}" + (
                " (truncated)" if size < entry["size"] else "")
    if hashes:
        for rel, entry in files.items():
            try:
                _, sha = _hash_file(path / rel)
            except OSError as err:
                return f"{rel} is unreadable ({_short(err)})"
            if sha != entry["sha256"]:
                return f"{rel} does not match its sha256 in the manifest (its contents changed after the save)"
    return None


def _verify_legacy(path: Path, deep: bool = True) -> str | None:
    """What can be checked without a manifest: trainer_state.json, the zip CRC-32s of the DeepSpeed ``.pt``
    files (torch's format), and the sizes the ``.safetensors`` headers promise."""
    state = path / "trainer_state.json"
    if not state.exists():
        return f"no {MANIFEST} and no trainer_state.json (incomplete)"
    try:
        if not isinstance(json.loads(state.read_text()).get("step"), int):
            return "trainer_state.json has no step"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        return f"trainer_state.json is unreadable ({_short(err)})"
    pts = sorted((path / "deepspeed").rglob("*.pt"))
    if not pts:
        return "deepspeed/ holds no .pt state files"
    if not deep:
        return None
    for file in pts:
        rel = file.relative_to(path).as_posix()
        try:
            with file.open("rb") as f:
                if f.read(4) != b"PK\x03\x04":
                    continue  # torch's pre-zip format: nothing to check it against
            with zipfile.ZipFile(file) as z:
                bad = z.testzip()
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
            return f"{rel} is not a readable zip archive ({_short(err)})"
        if bad is not None:
            return f"{rel}: member {bad} fails its CRC-32 check"
    for file in sorted(path.rglob("*.safetensors")):
        rel = file.relative_to(path).as_posix()
        try:
            size = file.stat().st_size
            with file.open("rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(header_len))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
                MemoryError, OverflowError) as err:
            return f"{rel} has an unreadable header ({_short(err)})"
        if size != 8 + header_len + end:
            return f"{rel} has {size} bytes, its header says {8 + header_len + end}"
    return None


# -- finding the checkpoint to resume from ---------------------------------------------------------------
def step_checkpoints(ckpt_root: Path) -> list[Path]:
    """The ``step-N`` directories under ``ckpt_root``, newest (highest step) first."""
    if not ckpt_root.is_dir():
        return []
    dirs = [p for p in ckpt_root.iterdir() if p.is_dir() and _step_of(p) is not None]
    return sorted(dirs, key=lambda p: _step_of(p) or 0, reverse=True)


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """The checkpoint ``LATEST`` names (not verified), or None when the run has none."""
    pointer = ckpt_root / LATEST
    if not pointer.exists():
        return None
    path = ckpt_root / pointer.read_text().strip()
    if not (path / "trainer_state.json").exists():
        raise RuntimeError(f"{pointer} names {path.name}, which is incomplete; remove {pointer} to start over")
    return path


def find_resume_checkpoint(ckpt_root: Path, fallback: bool = True,
                           warn: Callable[[str], None] = lambda line: None) -> Path | None:
    """The checkpoint ``trainer.resume=auto`` continues from: the one ``LATEST`` names if it verifies, else
    (``fallback``) the newest older one that does. None when there is no ``LATEST`` (a fresh run).

    Each rejected checkpoint and each checkpoint accepted without a manifest is reported through ``warn``
    (one line each). Raises ``CheckpointError`` (one line) when the ``LATEST`` checkpoint is damaged and
    ``fallback`` is off, or when no checkpoint verifies.
    """
    pointer = ckpt_root / LATEST
    if not pointer.exists():
        return None
    named, problem = None, None
    try:
        text = pointer.read_text().strip()
        if _STEP_DIR.match(text):
            named = ckpt_root / text
        else:
            problem = f"names {text[:80]!r}, which is not a step-N checkpoint"
    except (OSError, UnicodeDecodeError) as err:
        problem = f"is unreadable ({_short(err)})"
    if problem is not None:
        if not fallback:
            raise CheckpointError(f"{pointer} {problem} (trainer.resume_fallback=false)")
        warn(f"warning: {pointer} {problem}; trying the checkpoints in {ckpt_root}")
    # LATEST's checkpoint first, then older ones; newer ones are left over from a run that was resumed
    # from an earlier checkpoint (or from a kill between the rename and LATEST): never preferred.
    bound = _step_of(named) if named is not None else None
    candidates = [p for p in step_checkpoints(ckpt_root) if bound is None or (_step_of(p) or 0) < bound]
    if named is not None:
        candidates.insert(0, named)
    rejected: list[str] = []
    for path in candidates:
        reason = verify_checkpoint(path)
        if reason is None:
            _warn_if_legacy(path, warn)
            return path
        rejected.append(f"{path}: {reason}")
        if not fallback:
            raise CheckpointError(f"checkpoint {path} is damaged: {reason} (trainer.resume_fallback=false; "
                                  f"true resumes from the previous intact checkpoint)")
        warn(f"warning: checkpoint {path} is damaged: {reason}; trying the previous one")
    if not rejected:
        raise CheckpointError(f"{pointer} {problem}, and there is no step-N checkpoint in {ckpt_root}")
    raise CheckpointError(f"no intact checkpoint in {ckpt_root} (" + "; ".join(rejected)
                          + "); trainer.resume=never starts over")


def check_checkpoint(path: Path, warn: Callable[[str], None] = lambda line: None) -> Path:
    """``path`` if it verifies (``trainer.resume=<dir>``), else ``CheckpointError`` naming it and why."""
    reason = verify_checkpoint(path)
    if reason is not None:
        raise CheckpointError(f"checkpoint {path} is damaged: {reason}")
    _warn_if_legacy(path, warn)
    return path


def _warn_if_legacy(path: Path, warn: Callable[[str], None]) -> None:
    if not (path / MANIFEST).exists():
        warn(f"warning: checkpoint {path} has no {MANIFEST} (written before manifests): only its "
             f"trainer_state.json, zip CRC-32s and safetensors sizes were checked")


def remove_partial_checkpoints(ckpt_root: Path) -> list[Path]:
    """Remove what a killed or failed save left (``.tmp-step-*`` directories, ``.LATEST.tmp``); return them."""
    if not ckpt_root.is_dir():
        return []
    removed = []
    for path in sorted(ckpt_root.iterdir()):
        if path.name.startswith(TMP_PREFIX + "step-") or path.name == f".{LATEST}.tmp":
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# -- saving ----------------------------------------------------------------------------------------------
_DISK_FULL_TEXT = ("no space left", "os error 28", "code: 28", "disk quota exceeded", "storagefull")
_TORCH_WRITE_TEXT = ("inline_container", "unexpected pos", "pytorchstreamwriter", "file write failed")
_LOW_FREE_BYTES = 64 << 20


def choose_resume_checkpoint(ckpt_root: Path, mode: str, fallback: bool, *, is_main: bool, world_size: int,
                             warn: Callable[[str], None]) -> Path | None:
    """The checkpoint a run continues from (``docs/training.md``, "Checkpoints and resuming"), None to start.

    ``mode`` is ``trainer.resume``: ``auto`` (the latest intact checkpoint under ``ckpt_root``, or with
    ``fallback`` the previous intact one when the latest is damaged), ``never``, or a checkpoint path. Rank 0
    removes what a killed or failed save left (``.tmp-step-*``) and verifies the choice against its manifest;
    its choice, or its one-line error (``CheckpointError`` naming ``trainer.resume``), goes to every rank so
    that all load the same checkpoint or all stop.
    """
    choice: list[str | None] = [None, None]  # [checkpoint to load, or the one-line error]
    if is_main:
        try:
            for leftover in remove_partial_checkpoints(ckpt_root):
                warn(f"removed {leftover}, left by a checkpoint save that was killed or failed")
            if mode == "auto":
                found = find_resume_checkpoint(ckpt_root, fallback=fallback, warn=warn)
                choice[0] = None if found is None else str(found)
            elif mode != "never":
                if not Path(mode).exists():
                    raise CheckpointError(f"no checkpoint at {mode}")
                choice[0] = str(check_checkpoint(Path(mode), warn=warn))
        except (CheckpointError, OSError) as err:
            choice[1] = f"trainer.resume={mode}: {err}"
    if world_size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.broadcast_object_list(choice, src=0)
    if choice[1] is not None:
        raise CheckpointError(choice[1])
    return None if choice[0] is None else Path(choice[0])


def _free_bytes(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _describe_write_error(err: BaseException, where: Path) -> tuple[str, bool]:
    """(the cause in a few words, whether it is a known I/O cause). Call before removing the partial files:
    the free space then still shows whether the disk filled up."""
    chain: list[BaseException] = []
    e: BaseException | None = err
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, OSError) and e.errno is not None:
            return f"{os.strerror(e.errno).lower()} (errno {e.errno})", True
    text = " ".join(str(e) for e in chain).lower()
    if any(t in text for t in _DISK_FULL_TEXT):
        return f"no space left on device (errno {errno.ENOSPC})", True
    if "permission denied" in text or "os error 13" in text:
        return f"permission denied (errno {errno.EACCES})", True
    if "read-only file system" in text or "os error 30" in text:
        return f"read-only file system (errno {errno.EROFS})", True
    free = _free_bytes(where)
    if any(t in text for t in _TORCH_WRITE_TEXT):
        # torch's zip writer reports a failed write without its errno ("[enforce fail at inline_container.cc]
        # ... unexpected pos"): the free space tells whether the disk filled up.
        if free is not None and free < _LOW_FREE_BYTES:
            return f"no space left on device (errno {errno.ENOSPC}; {free >> 20} MiB free)", True
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"the write failed ({first}; {'?' if free is None else free >> 20} MiB free on that disk)", True
    return _short(err), False


def _fail(path: Path, err: BaseException,
          partial: Path | None) -> tuple[CheckpointWriteError, BaseException | None]:
    """The one-line error for a failed write of ``path`` and the exception to chain it to (None when the line
    says it all, e.g. ENOSPC behind torch's "inline_container.cc ... unexpected pos"); removes ``partial``."""
    cause, known = _describe_write_error(err, path)
    removed = ""
    if partial is not None and partial.exists():
        shutil.rmtree(partial, ignore_errors=True)
        removed = "; the partial checkpoint was removed" if not partial.exists() else \
            f"; could not remove the partial checkpoint {partial}"
    return CheckpointWriteError(f"cannot write checkpoint {path}: {cause}{removed}"), None if known else err


def save_checkpoint(engine: Any, tokenizer: Any, ckpt_root: Path, step: int, state: dict[str, Any],
                    is_main: bool, keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically (all ranks call this; rank 0 writes the shared files).

    Raises ``CheckpointWriteError`` (one line: path and cause) when it cannot be written; the temporary
    directory is removed and the previous checkpoints and ``LATEST`` are left as they were.
    """
    from algorithms.distributed import barrier

    final = ckpt_root / checkpoint_name(step)
    tmp = ckpt_root / f"{TMP_PREFIX}{checkpoint_name(step)}"
    try:
        if is_main:
            ckpt_root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
        barrier()
        engine.save_checkpoint(str(tmp / "deepspeed"), tag="state", save_latest=False)
        # hf/: the policy as a plain Hugging Face model (LoRA merged in, ZeRO-3 partitions gathered: a
        # collective, so every rank takes part); adapter/: a LoRA run's adapter alone, for peft users
        save_merged(engine.module, tmp / "hf", tokenizer, write=is_main)
        if is_main and is_lora(engine.module):
            save_adapter(engine.module, tmp / "adapter")
        if is_main:
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
            write_manifest(tmp, step)  # last: its presence says every other file is complete
    except Exception as err:  # noqa: BLE001 - whatever failed: one line, and no partial checkpoint left
        error, cause = _fail(tmp, err, partial=tmp)
        raise error from cause
    if is_main:
        try:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(ckpt_root)
        except OSError as err:
            error, cause = _fail(final, err, partial=tmp)
            raise error from cause
        try:
            _write_text_atomic(ckpt_root / LATEST, final.name)
        except OSError as err:  # the checkpoint is complete; LATEST still names the previous one
            error, cause = _fail(ckpt_root / LATEST, err, partial=None)
            raise error from cause
        _prune(ckpt_root, keep, final)
    barrier()
    return final


def load_checkpoint(engine: Any, path: Path) -> dict[str, Any]:
    """Restore the engine from ``path`` and return the trainer state saved with it."""
    load_path, _ = engine.load_checkpoint(str(path / "deepspeed"), tag="state")
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint in {path / 'deepspeed'}")
    return json.loads((path / "trainer_state.json").read_text())


def _prune(ckpt_root: Path, keep: int, current: Path) -> list[Path]:
    """Keep ``current`` (just written, hashed as it was written) and the newest older checkpoints that pass
    the cheap check (manifest present, every size right) up to ``keep`` in all; remove the other older ones.

    A damaged checkpoint never counts towards ``keep``, so an intact older one is never removed in its
    favour. Checkpoints with a higher step than ``current`` (left by a run resumed from an earlier one) are
    neither counted nor removed: the run replaces each when it reaches its step. ``keep <= 0`` keeps all.
    """
    if keep <= 0:
        return []
    step = _step_of(current)
    older = [p for p in step_checkpoints(ckpt_root) if (_step_of(p) or 0) < (step or 0)]
    kept, removed = 1, []
    for path in older:
        if kept < keep and verify_checkpoint(path, hashes=False) is None:
            kept += 1
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
