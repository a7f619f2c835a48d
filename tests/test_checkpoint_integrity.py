"""Checkpoint integrity: the manifest, verification and fallback on resume, rotation, failed saves, and the
atomic cut of ``metrics.jsonl`` (``algorithms/checkpoint.py``, ``algorithms/metrics.py``; docs/training.md).

Most tests call the checkpoint functions in this process on a real DeepSpeed engine around the tiny model;
one test runs the real entry point: train, corrupt the newest checkpoint, resume.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from algorithms import checkpoint as ckpt
from algorithms.checkpoint import (
    LATEST,
    MANIFEST,
    CheckpointError,
    CheckpointWriteError,
    check_checkpoint,
    find_resume_checkpoint,
    load_checkpoint,
    remove_partial_checkpoints,
    save_checkpoint,
    verify_checkpoint,
    write_manifest,
)
from algorithms.config import TrainConfigError, TrainerConfig
from algorithms.metrics import MetricsLogger, read_jsonl
from tests.helpers import metric_rows, run_train_process
from tests.test_train_e2e import TINY

MODEL_STATES = "deepspeed/state/mp_rank_00_model_states.pt"
_RENDEZVOUS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "DS_ACCELERATOR")


@pytest.fixture(scope="module")
def engine():
    """(DeepSpeed engine on CPU around the tiny model, tokenizer). The rendezvous variables that setting up
    the process group writes into os.environ are restored, so that training subprocesses pick their own."""
    saved = {k: os.environ.get(k) for k in _RENDEZVOUS}
    os.environ["DS_ACCELERATOR"] = "cpu"
    import deepspeed

    from agents.models import load_model
    from algorithms.distributed import init_distributed

    try:
        init_distributed()
        model, tokenizer = load_model("tiny-random", dtype="fp32")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                  "zero_optimization": {"stage": 2}, "zero_allow_untested_optimizer": True,
                  "steps_per_print": 10**9}
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield engine, tokenizer
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def saved_run(engine, tmp_path_factory) -> Path:
    """A checkpoint root with step-000001 and step-000002 written by save_checkpoint; copy it before changing."""
    eng, tok = engine
    root = tmp_path_factory.mktemp("run") / "checkpoints"
    for step in (1, 2):
        save_checkpoint(eng, tok, root, step, {"step": step, "eval_history": []}, is_main=True, keep=2)
    return root


@pytest.fixture
def root(saved_run, tmp_path) -> Path:
    copy = tmp_path / "checkpoints"
    shutil.copytree(saved_run, copy)
    return copy


def flip_middle(path: Path, count: int = 4096) -> None:
    """XOR ``count`` bytes in the middle of ``path`` with 0xFF (what the fault campaign did)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        data = f.read(count)
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in data))


def truncate_half(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def collect() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lines.append


# -- the manifest ----------------------------------------------------------------------------------------
def test_manifest_lists_every_file_with_size_and_sha256(saved_run: Path) -> None:
    path = saved_run / "step-000002"
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["format"] == ckpt.MANIFEST_FORMAT and manifest["step"] == 2
    on_disk = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert sorted(manifest["files"]) == on_disk
    assert {MODEL_STATES, "trainer_state.json", "hf/model.safetensors", "hf/config.json"} <= set(manifest["files"])
    for rel, entry in manifest["files"].items():
        assert entry["size"] == (path / rel).stat().st_size and len(entry["sha256"]) == 64
    assert verify_checkpoint(path) is None
    assert (saved_run / LATEST).read_text().strip() == "step-000002"
    assert not list(saved_run.glob(".tmp-*")) and not list(saved_run.glob(".*.tmp"))


def test_a_verified_checkpoint_loads(engine, saved_run: Path) -> None:
    eng, _ = engine
    assert find_resume_checkpoint(saved_run) == saved_run / "step-000002"
    assert load_checkpoint(eng, saved_run / "step-000001")["step"] == 1


# -- damage found on resume ------------------------------------------------------------------------------
def test_flipped_bytes_fall_back_to_the_previous_checkpoint(root: Path) -> None:
    damaged = root / "step-000002"
    flip_middle(damaged / MODEL_STATES)
    reason = verify_checkpoint(damaged)
    assert reason is not None and MODEL_STATES in reason and "sha256" in reason
    lines, warn = collect()
    assert find_resume_checkpoint(root, fallback=True, warn=warn) == root / "step-000001"
    assert len(lines) == 1 and str(damaged) in lines[0] and "sha256" in lines[0] and "\n" not in lines[0]


def test_a_truncated_file_falls_back_without_hashing(root: Path, monkeypatch) -> None:
    truncate_half(root / "step-000002" / MODEL_STATES)
    hashed = []
    real_hash = ckpt._hash_file
    monkeypatch.setattr(ckpt, "_hash_file", lambda p, fsync=False: hashed.append(p) or real_hash(p, fsync))
    lines, warn = collect()
    assert find_resume_checkpoint(root, warn=warn) == root / "step-000001"
    assert "truncated" in lines[0] and str(root / "step-000002") in lines[0]
    assert not any("step-000002" in str(p) for p in hashed)  # the size check found it


def test_without_fallback_a_damaged_latest_stops_with_one_line(root: Path) -> None:
    flip_middle(root / "step-000002" / "hf" / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        find_resume_checkpoint(root, fallback=False)
    message = str(err.value)
    assert str(root / "step-000002") in message and "hf/model.safetensors" in message and "\n" not in message
    assert "resume_fallback" in message


def test_no_intact_checkpoint_names_each_and_why(root: Path) -> None:
    (root / "step-000002" / MODEL_STATES).unlink()
    flip_middle(root / "step-000001" / "deepspeed" / "state" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    with pytest.raises(CheckpointError) as err:
        find_resume_checkpoint(root, warn=lambda line: None)
    message = str(err.value)
    assert "is missing" in message and "sha256" in message and "\n" not in message
    assert str(root / "step-000001") in message and str(root / "step-000002") in message


def test_latest_naming_a_missing_or_bogus_checkpoint_falls_back(root: Path) -> None:
    shutil.rmtree(root / "step-000002")
    lines, warn = collect()
    assert find_resume_checkpoint(root, warn=warn) == root / "step-000001"
    assert "no such checkpoint directory" in lines[0]
    (root / LATEST).write_text("garbage\n")
    lines, warn = collect()
    assert find_resume_checkpoint(root, warn=warn) == root / "step-000001"
    assert "garbage" in lines[0]
    with pytest.raises(CheckpointError, match="resume_fallback=false"):
        find_resume_checkpoint(root, fallback=False)


def test_checkpoints_newer_than_latest_are_not_preferred(root: Path) -> None:
    (root / LATEST).write_text("step-000001")  # e.g. a run resumed from step 1 and killed before its next save
    assert find_resume_checkpoint(root) == root / "step-000001"


def test_a_checkpoint_without_manifest_is_checked_as_far_as_possible(root: Path) -> None:
    """Written before manifests: accepted with a warning when its zip CRCs and safetensors sizes hold."""
    legacy = root / "step-000002"
    (legacy / MANIFEST).unlink()
    lines, warn = collect()
    assert find_resume_checkpoint(root, warn=warn) == legacy
    assert len(lines) == 1 and "no MANIFEST.json" in lines[0] and str(legacy) in lines[0]
    flip_middle(legacy / MODEL_STATES)  # torch's zip format keeps a CRC-32 per record
    assert "CRC-32" in verify_checkpoint(legacy)
    lines, warn = collect()
    assert find_resume_checkpoint(root, warn=warn) == root / "step-000001"
    assert "CRC-32" in lines[0]
    shutil.copy(root / "step-000001" / MODEL_STATES, legacy / MODEL_STATES)
    truncate_half(legacy / "hf" / "model.safetensors")
    assert "its header says" in verify_checkpoint(legacy)
    (legacy / "trainer_state.json").unlink()
    assert "incomplete" in verify_checkpoint(legacy)


def test_an_unparsable_manifest_is_damage(root: Path) -> None:
    (root / "step-000002" / MANIFEST).write_text('{"files": ')
    assert "MANIFEST.json is unreadable" in verify_checkpoint(root / "step-000002")
    assert find_resume_checkpoint(root) == root / "step-000001"


def test_explicit_damaged_checkpoint_stops_with_one_line(root: Path) -> None:
    flip_middle(root / "step-000001" / MODEL_STATES)
    with pytest.raises(CheckpointError) as err:
        check_checkpoint(root / "step-000001")
    assert str(root / "step-000001") in str(err.value) and "\n" not in str(err.value)


TRAINER_YAML = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "train.yaml").trainer)


def _fake_trainer(root: Path, engine, resume: str, fallback=True) -> SimpleNamespace:
    from algorithms.distributed import DistInfo

    return SimpleNamespace(t=OmegaConf.create({"resume": resume, "resume_fallback": fallback}),
                           dist=DistInfo(rank=0, world_size=1, local_rank=0), ckpt_root=root, engine=engine,
                           state={}, start_step=0, sampler=SimpleNamespace(update_weights=lambda module: None))


def test_trainer_resume_reports_falls_back_and_stops(engine, root: Path, capsys) -> None:
    """Trainer._maybe_resume: leftovers removed, a damaged latest reported and skipped, or a config error."""
    from algorithms.trainer import Trainer

    eng, _ = engine
    (root / ".tmp-step-000003" / "deepspeed").mkdir(parents=True)
    flip_middle(root / "step-000002" / MODEL_STATES)
    trainer = _fake_trainer(root, eng, "auto")
    Trainer._maybe_resume(trainer)
    captured = capsys.readouterr()
    assert trainer.start_step == 1 and f"resumed from {root / 'step-000001'} at step 1" in captured.out
    assert not (root / ".tmp-step-000003").exists() and ".tmp-step-000003" in captured.err
    assert f"checkpoint {root / 'step-000002'} is damaged" in captured.err
    with pytest.raises(TrainConfigError, match="resume_fallback=false") as err:
        Trainer._maybe_resume(_fake_trainer(root, eng, "auto", fallback=False))
    assert str(root / "step-000002") in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(TrainConfigError) as err:
        Trainer._maybe_resume(_fake_trainer(root, eng, str(root / "step-000002")))
    assert str(err.value).startswith(f"trainer.resume={root / 'step-000002'}: checkpoint {root / 'step-000002'} "
                                     f"is damaged: {MODEL_STATES}")
    with pytest.raises(TrainConfigError, match="resume_fallback must be true or false"):
        TrainerConfig.from_mapping({**TRAINER_YAML, "resume_fallback": "yes"})  # checked once, with the rest


# -- rotation --------------------------------------------------------------------------------------------
def _fake_checkpoint(root: Path, step: int, manifest: bool = True) -> Path:
    path = root / ckpt.checkpoint_name(step)
    (path / "deepspeed" / "state").mkdir(parents=True)
    (path / "deepspeed" / "state" / "mp_rank_00_model_states.pt").write_bytes(b"x" * 1000)
    (path / "trainer_state.json").write_text(json.dumps({"step": step}))
    if manifest:
        write_manifest(path, step)
    return path


def test_rotation_never_removes_an_intact_checkpoint_for_a_damaged_one(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    intact, damaged, current, stale = (_fake_checkpoint(root, s) for s in (1, 2, 3, 5))
    truncate_half(damaged / MODEL_STATES)
    removed = ckpt._prune(root, keep=2, current=current)
    assert removed == [damaged]
    assert intact.exists() and current.exists() and stale.exists()  # a newer, stale one is left, not counted
    assert ckpt._prune(root, keep=1, current=current) == [intact]
    assert current.exists() and stale.exists()  # the old rule (newest names) removed the one just written
    legacy = _fake_checkpoint(root, 2, manifest=False)
    assert ckpt._prune(root, keep=2, current=current) == [] and legacy.exists()  # counted as complete
    assert ckpt._prune(root, keep=0, current=current) == []


# -- leftovers and failed saves --------------------------------------------------------------------------
def test_leftovers_of_a_killed_save_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    (root / ".tmp-step-000004" / "deepspeed").mkdir(parents=True)
    (root / ".tmp-step-000004" / "deepspeed" / "x.pt").write_bytes(b"partial")
    (root / f".{LATEST}.tmp").write_text("step-000004")
    keep = _fake_checkpoint(root, 2)
    assert sorted(p.name for p in remove_partial_checkpoints(root)) == [".LATEST.tmp", ".tmp-step-000004"]
    assert sorted(p.name for p in root.iterdir()) == [keep.name]
    assert remove_partial_checkpoints(tmp_path / "absent") == []


TORCH_ENOSPC = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


def _torch_write_failure(*args, **kwargs):
    """What torch.save raises when the disk fills up mid-write (seen writing to /dev/full): no errno."""
    try:
        raise RuntimeError("basic_ios::clear: iostream error")
    except RuntimeError:
        raise RuntimeError(TORCH_ENOSPC)  # noqa: B904 - torch chains it this way


def _assert_failed_cleanly(root: Path, err: pytest.ExceptionInfo, cause: str) -> None:
    message = str(err.value)
    assert message.startswith(f"cannot write checkpoint {root / '.tmp-step-000003'}: {cause}"), message
    assert "\n" not in message and "partial checkpoint was removed" in message
    assert not (root / ".tmp-step-000003").exists() and not (root / "step-000003").exists()
    assert (root / LATEST).read_text().strip() == "step-000002"
    assert find_resume_checkpoint(root) == root / "step-000002"


def test_disk_full_in_torch_save_names_path_and_cause(engine, root: Path, monkeypatch) -> None:
    eng, tok = engine
    monkeypatch.setattr(torch, "save", _torch_write_failure)
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: SimpleNamespace(total=10**12, used=10**12, free=4096))
    with pytest.raises(CheckpointWriteError) as err:
        save_checkpoint(eng, tok, root, 3, {"step": 3}, is_main=True, keep=2)
    _assert_failed_cleanly(root, err, "no space left on device (errno 28")
    assert err.value.__cause__ is None and err.value.__suppress_context__  # the one line is the whole story


def test_torch_write_failure_with_free_space_keeps_torch_text(engine, root: Path, monkeypatch) -> None:
    eng, tok = engine
    monkeypatch.setattr(torch, "save", _torch_write_failure)
    with pytest.raises(CheckpointWriteError) as err:
        save_checkpoint(eng, tok, root, 3, {"step": 3}, is_main=True, keep=2)
    _assert_failed_cleanly(root, err, "the write failed ([enforce fail at inline_container.cc")
    assert "MiB free on that disk" in str(err.value)


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "no space left on device (errno 28)"),
                                         (errno.EACCES, "permission denied (errno 13)")])
def test_oserror_in_the_hf_export_names_path_and_cause(engine, root: Path, monkeypatch, code, cause) -> None:
    eng, tok = engine

    def fail(directory, **kwargs):
        (Path(directory) / "model.safetensors").parent.mkdir(parents=True, exist_ok=True)
        (Path(directory) / "model.safetensors").write_bytes(b"partial")
        raise OSError(code, os.strerror(code), str(Path(directory) / "model.safetensors"))

    monkeypatch.setattr(eng.module, "save_pretrained", fail)
    with pytest.raises(CheckpointWriteError) as err:
        save_checkpoint(eng, tok, root, 3, {"step": 3}, is_main=True, keep=2)
    _assert_failed_cleanly(root, err, cause)


def test_read_only_checkpoint_directory(engine, root: Path) -> None:
    eng, tok = engine
    os.chmod(root, 0o555)
    try:
        probe = root / ".probe"
        try:
            probe.write_text("")
            probe.unlink()
            pytest.skip("chmod does not stop this user from writing (root): covered by the EACCES test above")
        except PermissionError:
            pass
        with pytest.raises(CheckpointWriteError) as err:
            save_checkpoint(eng, tok, root, 3, {"step": 3}, is_main=True, keep=2)
        message = str(err.value)
        assert f"cannot write checkpoint {root / '.tmp-step-000003'}: permission denied (errno 13)" in message
    finally:
        os.chmod(root, 0o755)


# -- metrics.jsonl ---------------------------------------------------------------------------------------
def _metrics_file(run_dir: Path, steps: int) -> str:
    run_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps({"step": s, "loss/total": float(s)}) + "\n" for s in range(1, steps + 1))
    (run_dir / "metrics.jsonl").write_text(text + '{"step": 6, "loss')  # and a line a kill cut short
    return (run_dir / "metrics.jsonl").read_text()


def test_metrics_cut_on_resume_is_atomic(tmp_path: Path, monkeypatch) -> None:
    """An exception (or a kill) in the middle of the rewrite leaves the old file whole."""
    import algorithms.metrics as metrics

    before = _metrics_file(tmp_path, 5)
    real_rewrite, real_dumps = metrics.write_jsonl_atomic, json.dumps
    rows_written = []

    def dumps_dying_at_the_second_row(obj, *args, **kwargs):
        rows_written.append(obj)
        if len(rows_written) == 2:
            raise RuntimeError("killed mid-rewrite")
        return real_dumps(obj, *args, **kwargs)

    def rewrite(path, rows):
        monkeypatch.setattr(metrics.json, "dumps", dumps_dying_at_the_second_row)
        real_rewrite(path, rows)

    monkeypatch.setattr(metrics, "write_jsonl_atomic", rewrite)
    with pytest.raises(RuntimeError, match="killed mid-rewrite"):
        MetricsLogger(tmp_path, enabled=True, resume_step=3, show_progress=False)
    monkeypatch.undo()
    assert len(rows_written) == 2 and (tmp_path / "metrics.jsonl").read_text() == before  # nothing lost
    assert not (tmp_path / ".metrics.jsonl.tmp").exists()
    (tmp_path / ".metrics.jsonl.tmp").write_text('{"step": 1}\n')  # what a SIGKILL at that point leaves
    logger = MetricsLogger(tmp_path, enabled=True, resume_step=3, show_progress=False)
    logger.log({"step": 4, "loss/total": 4.5})
    logger.close()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["loss/total"] == 4.5
    assert not (tmp_path / ".metrics.jsonl.tmp").exists()


def test_metrics_file_is_not_rewritten_when_nothing_is_cut(tmp_path: Path) -> None:
    text = "".join(json.dumps({"step": s}) + "\n" for s in (1, 2))
    tmp_path.joinpath("metrics.jsonl").write_text(text)
    inode = tmp_path.joinpath("metrics.jsonl").stat().st_ino
    MetricsLogger(tmp_path, enabled=True, resume_step=2, show_progress=False).close()
    assert tmp_path.joinpath("metrics.jsonl").stat().st_ino == inode


# -- through the entry point -----------------------------------------------------------------------------
TINY_SFT = [*TINY, "algorithm=sft", "trainer.eval_every=0", "trainer.save_every=1", "trainer.keep_checkpoints=2"]


def test_train_corrupt_latest_resume_from_previous(tmp_path: Path) -> None:
    """2 steps with a checkpoint each, 4 KB flipped in step 2's model states, then resume to 3 steps: the
    damaged checkpoint is named on stderr, the run resumes at step 1, redoes step 2 with the same loss."""
    run_dir = tmp_path / "run"
    first = run_train_process(run_dir, *TINY_SFT, "trainer.total_steps=3", "trainer.max_steps_this_run=2")
    assert first.returncode == 0, first.stderr[-4000:]
    before = {r["step"]: r for r in metric_rows(run_dir) if "loss/total" in r}
    damaged = run_dir / "checkpoints" / "step-000002"
    flip_middle(damaged / MODEL_STATES)

    second = run_train_process(run_dir, *TINY_SFT, "trainer.total_steps=3")
    assert second.returncode == 0, second.stderr[-4000:]
    reports = [line for line in second.stderr.splitlines() if str(damaged) in line]
    assert len(reports) == 1 and "damaged" in reports[0] and MODEL_STATES in reports[0], second.stderr[-3000:]
    assert f"resumed from {run_dir / 'checkpoints' / 'step-000001'} at step 1" in second.stdout
    after = [r for r in metric_rows(run_dir) if "loss/total" in r]
    assert [r["step"] for r in after] == [1, 2, 3]
    assert after[0] == before[1]  # kept as it was
    assert after[1]["loss/total"] == pytest.approx(before[2]["loss/total"], rel=1e-5)  # step 2 redone the same
    assert verify_checkpoint(damaged) is None  # replaced by the redone step 2
    assert (run_dir / "checkpoints" / LATEST).read_text().strip() == "step-000003"
