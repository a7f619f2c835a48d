"""``logger=[...]``: where metrics go (``algorithms/metrics.py``; docs/training.md, "Loggers").

The W&B tests run the ``wandb`` package in offline mode (``WANDB_MODE=offline``, ``WANDB_DIR`` under
``tmp_path``) and read what it wrote back: an offline run is a directory ``offline-run-<time>-<id>`` with one
``run-<id>.wandb`` file, W&B's transaction log (LevelDB's log format, the records are protobuf ``Record``s,
``read_wandb_records``), and the tables under ``files/media/table/``.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from omegaconf import OmegaConf

from algorithms.config import TrainConfigError, logging_config
from tests.helpers import metric_rows
from tests.test_train_e2e import run_train

_BLOCK = 32768  # LevelDB log: 32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_wandb_records(path: Path) -> list[Any]:
    """Every record of a ``.wandb`` transaction log, each checked against its CRC."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, chunks, pending = 7, [], b""  # the file header: ":W&B", magic (2 bytes), version (1 byte)
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"{path}: a damaged record at {pos}"
        if kind == _FULL:
            chunks.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            chunks.append(pending + chunk)
    return [wandb_internal_pb2.Record.FromString(c) for c in chunks]


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """One offline run: its id and name, its config (the init's and later updates), its history (step ->
    values, the ``_``-keys W&B adds left out), its start time and its directory."""
    (log,) = run_dir.glob("run-*.wandb")
    run: dict[str, Any] = {"dir": run_dir, "config": {}, "history": {}}
    for record in read_wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"], run["name"] = record.run.run_id, record.run.display_name
            run["start"] = (record.run.start_time.seconds, record.run.start_time.nanos)
            run["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            run["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            values = {_key(i): json.loads(i.value_json) for i in record.history.item}
            assert record.history.step.num not in run["history"], f"step {record.history.step.num} logged twice"
            run["history"][record.history.step.num] = {k: v for k, v in values.items() if not k.startswith("_")}
    return run


def offline_runs(wandb_dir: Path) -> list[dict[str, Any]]:
    """The offline runs under ``wandb_dir``, oldest first (by their start; the directory names only have
    whole seconds)."""
    return sorted((read_offline_run(d) for d in wandb_dir.glob("**/wandb/offline-run-*")),
                  key=lambda run: run["start"])


def table(run: dict[str, Any], step: int) -> dict[str, Any]:
    """The ``eval/transcripts`` table logged at ``step``: ``{"columns": [...], "data": [[...], ...]}``."""
    path = run["history"][step]["eval/transcripts/path"]
    return json.loads((run["dir"] / "files" / path).read_text())


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch) -> Path:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # pytest owns this process's stdout
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb-dir").mkdir()
    return tmp_path / "wandb-dir"


SHORT = ["algorithm=sft", "trainer.total_steps=2", "trainer.eval_every=1", "trainer.save_every=1",
         "logger=[jsonl,wandb]"]


def test_training_writes_a_wandb_run_that_a_resumed_run_continues(tmp_path: Path, wandb_offline: Path) -> None:
    """The real entry point on the tiny model with ``logger=[jsonl,wandb]``: the W&B run holds every metrics
    row at its step, the resolved config and each evaluation's transcripts table; stopped after step 1 and
    resumed, the second session continues the same run id from step 2, logging no step twice."""
    run_dir = tmp_path / "run"
    first = run_train(run_dir, *SHORT, "trainer.max_steps_this_run=1")
    assert first.returncode == 0, first.stderr[-4000:]
    (run1,) = offline_runs(wandb_offline)
    assert run1["name"] == "run" and sorted(run1["history"]) == [0, 1]
    rows = metric_rows(run_dir)  # the jsonl logger ran beside it; tensorboard was not asked for
    assert not (run_dir / "tensorboard").exists()
    for row in rows:
        logged = run1["history"][row["step"]]
        for key, value in row.items():
            if key not in ("step", "time"):
                assert logged[key] == pytest.approx(value), (row["step"], key)
    assert "loss/total" in run1["history"][1] and "eval/accuracy" in run1["history"][0]
    config = run1["config"]
    assert config["run_dir"] == str(run_dir) and config["logger"] == ["jsonl", "wandb"]
    assert config["trainer"]["total_steps"] == 2 and config["model"]["spec"] == "tiny-random"
    assert config["algorithm"]["name"] == "sft" and config["env"]["name"] == "toolace"
    for step in (0, 1):
        transcripts = table(run1, step)
        on_disk = [json.loads(line) for line in (run_dir / "eval" / f"step-{step:06d}.jsonl").read_text().splitlines()]
        assert transcripts["columns"] == ["task_id", "reward", "failure", "assistant"]
        assert [r[0] for r in transcripts["data"]] == [str(r["task_id"]) for r in on_disk] and len(on_disk) == 2
        assert [r[1] for r in transcripts["data"]] == [r["reward"] for r in on_disk]
        assert [r[2] for r in transcripts["data"]] == [r["failure"] for r in on_disk]
        assert [r[3] for r in transcripts["data"]] == ["\n---\n".join(r["assistant"]) for r in on_disk]
    assert json.loads((run_dir / "wandb.json").read_text()) == {"id": run1["id"], "step": 1}

    second = run_train(run_dir, *SHORT)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "at step 1" in second.stdout
    run1, run2 = offline_runs(wandb_offline)
    assert run2["id"] == run1["id"]
    assert sorted(run2["history"]) == [2] and "loss/total" in run2["history"][2]
    assert table(run2, 2)["columns"] == ["task_id", "reward", "failure", "assistant"]
    assert [r["step"] for r in metric_rows(run_dir) if "loss/total" in r] == [1, 2]


def _records(n: int) -> list[SimpleNamespace]:
    """What ``agents.heldout.evaluate_tasks`` returns, as far as the loggers read it."""
    return [SimpleNamespace(id=f"t{i}", reward=float(i % 2), failure=None if i % 2 else "wrong_tool",
                            output=[f"call {i}", "answer"], environment=["result"]) for i in range(n)]


def test_a_resumed_run_skips_the_steps_wandb_already_holds(tmp_path: Path, wandb_offline: Path,
                                                           monkeypatch) -> None:
    """A run killed after logging steps 3 and 4 but checkpointed at 2 redoes them on resume: W&B, whose
    history cannot be cut back like metrics.jsonl, keeps its first copy and gets only the new steps; a run
    that starts over (no checkpoint: resume step 0) is a new W&B run."""
    import wandb

    from algorithms.metrics import MetricsLogger, WandbSettings

    def session(resume_step: int, steps: range) -> None:
        # W&B names an offline run's directory by the second it started and the run id: two sessions of one
        # run started within the same second would share it, so each writes under its own WANDB_DIR
        session_dir = wandb_offline / f"session-{len(list(wandb_offline.iterdir()))}"
        session_dir.mkdir()
        monkeypatch.setenv("WANDB_DIR", str(session_dir))
        logger = MetricsLogger(tmp_path, enabled=True, resume_step=resume_step, show_progress=False,
                               loggers=["wandb"], run_config={"seed": 0}, wandb=WandbSettings(tags=("t",)))
        for step in steps:
            logger.log({"step": step, "loss/total": float(step)})
            if step % 2 == 0:
                logger.log_transcripts(step, _records(3))
                logger.log({"step": step, "eval/accuracy": 0.5})
        logger.close()
        wandb.teardown()  # what the trainer's exit does: W&B's service writes the rest of the run's file

    session(0, range(0, 5))  # logged 0..4; say its last checkpoint was step 2
    session(2, range(3, 7))  # redoes 3 and 4, then 5 and 6
    first, resumed = offline_runs(wandb_offline)
    assert resumed["id"] == first["id"]
    assert sorted(first["history"]) == [0, 1, 2, 3, 4] and sorted(resumed["history"]) == [5, 6]
    assert resumed["history"][6]["loss/total"] == 6.0 and resumed["history"][6]["eval/accuracy"] == 0.5
    assert [r[0] for r in table(resumed, 6)["data"]] == ["t0", "t1", "t2"]
    assert json.loads((tmp_path / "wandb.json").read_text()) == {"id": first["id"], "step": 6}
    assert (tmp_path / "metrics.jsonl").exists() is False  # only the loggers asked for

    session(0, range(0, 1))  # trainer.resume=never, or no checkpoint yet: a new run
    assert offline_runs(wandb_offline)[-1]["id"] != first["id"]


def _cfg(**values: Any):
    return OmegaConf.create(values)


def test_logger_names_are_checked() -> None:
    assert logging_config(_cfg()).loggers == ("jsonl", "tensorboard")
    assert logging_config(_cfg(logger=["wandb", "jsonl", "wandb"])).loggers == ("wandb", "jsonl")
    assert logging_config(_cfg(logger=[])).loggers == ()
    with pytest.raises(TrainConfigError) as err:
        logging_config(_cfg(logger=["jsonl", "mlflow"]))
    assert str(err.value) == "logger: unknown logger 'mlflow' (known: jsonl, tensorboard, wandb)"
    with pytest.raises(TrainConfigError, match="^logger must be a list"):
        logging_config(_cfg(logger=[1]))


def test_wandb_without_the_package_says_how_to_install_it(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(TrainConfigError) as err:
        logging_config(_cfg(logger=["jsonl", "wandb"]))
    assert str(err.value).startswith("logger: wandb needs the wandb package")
    assert "pip install chordgym[wandb]" in str(err.value) and "\n" not in str(err.value)
    assert logging_config(_cfg(logger=["jsonl"])).loggers == ("jsonl",)  # not needed, not asked for


@pytest.mark.parametrize("section, message", [
    ({"mode": "cloud"}, "wandb.mode must be one of online, offline, disabled"),
    ({"tags": "a,b"}, "wandb.tags must be a list of strings"),
    ({"project": ""}, "wandb.project must be a non-empty string or null"),
    ({"entity": 3}, "wandb.entity must be a non-empty string or null"),
    ({"team": "x"}, "wandb.team is not a W&B setting"),
])
def test_bad_wandb_settings_name_the_key(section: dict, message: str) -> None:
    with pytest.raises(TrainConfigError, match=message.replace(".", r"\.")):
        logging_config(_cfg(logger=["jsonl"], wandb=section))


def test_wandb_mode_and_project_default_to_wandbs_variables(monkeypatch) -> None:
    from algorithms.metrics import WandbSettings

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert WandbSettings().resolved_mode() == "offline" and WandbSettings().resolved_project() == "chordgym"
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_PROJECT", "toolace")
    assert WandbSettings().resolved_mode() == "online" and WandbSettings().resolved_project() == "toolace"
    settings = WandbSettings(mode="disabled", project="mine")  # the config's own values win
    assert settings.resolved_mode() == "disabled" and settings.resolved_project() == "mine"


def test_the_shipped_config_has_the_default_loggers() -> None:
    from hydra import compose, initialize_config_dir

    from tests.helpers import REPO

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train")
    settings = logging_config(cfg)
    assert settings.loggers == ("jsonl", "tensorboard") and settings.wandb.mode is None
    assert settings.wandb.project is None and settings.wandb.name is None


def test_a_bad_logger_name_stops_the_run_before_any_work(tmp_path: Path) -> None:
    proc = run_train(tmp_path / "bad", "logger=[jsonl,nope]", timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("config error:")]
    assert errors == ["config error: logger: unknown logger 'nope' (known: jsonl, tensorboard, wandb)"]
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()
