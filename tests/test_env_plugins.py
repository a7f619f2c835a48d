"""Environments from outside the framework: an installed package's ``chordgym.envs`` entry point, a
config's ``entry_point``, and the errors that name both ways when neither provides a name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envs import EnvConfig, EnvConfigError, UnknownEnvError, make
from envs.registry import HOW_TO_REGISTER
from tests.doc_runner import REPO, doc_blocks

DOC = REPO / "docs" / "new-tool-env.md"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """The doc's bookshop module, packaged with the doc's entry-point table and pip-installed into a
    directory of its own (put on PYTHONPATH by the tests, as site-packages would be)."""
    root = tmp_path_factory.mktemp("plugin")
    blocks = doc_blocks(DOC)
    table = next(body for lang, body in blocks.other if lang == "toml")
    package = root / "src"
    package.mkdir()
    (package / "bookshop_env.py").write_text(blocks.files["bookshop_env.py"])
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "chordgym-bookshop"\nversion = "0.1"\n\n'
        '[tool.setuptools]\npy-modules = ["bookshop_env"]\n\n' + table)
    site = root / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(package)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(site.glob("chordgym_bookshop-0.1.dist-info/entry_points.txt"))
    return site


def _run(args: list[str], cwd: Path, site: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_installed_package_is_found_by_name(installed_plugin: Path, tmp_path: Path) -> None:
    probe = _run(["-c", "import envs; e = envs.make('bookshop', split='test'); "
                        "print(envs.known_env_names(), sorted({t.split for t in e.tasks}), e.num_tasks)"],
                 tmp_path, installed_plugin)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert "'bookshop'" in probe.stdout and "['test'] 8" in probe.stdout

    proc = _run(["-m", "agents.evaluate", "model=tiny", "suites=[bookshop]", "+bookshop.limit=2", "max_new_tokens=8",
                 "progress=false", f"out_dir={tmp_path / 'eval'}"], tmp_path, installed_plugin)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [e["id"] for e in results["entries"]] == ["bookshop-4", "bookshop-9"]  # no config: the test split
    assert "bookshop/test" in (tmp_path / "eval" / "results.md").read_text()


def test_unknown_suite_or_env_names_both_ways_before_any_model_loads(tmp_path: Path) -> None:
    proc = _run(["-m", "agents.evaluate", "suites=[nope]", f"out_dir={tmp_path}"], REPO, timeout=120)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("config error:") and "'nope'" in line and HOW_TO_REGISTER in line
    assert "Traceback" not in proc.stderr and not (tmp_path / "results.json").exists()

    proc = _run(["-m", "algorithms.train", "env.name=nope", "~env.id", f"run_dir={tmp_path / 'run'}"], REPO, timeout=120)
    assert proc.returncode == 2 and "env.name='nope'" in proc.stderr and HOW_TO_REGISTER in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("override, words", [
    ("+toolace.kwargs.tasks=missing/tasks.jsonl", ["config error:", "no such file", "missing/tasks.jsonl"]),
    ("+toolace.bogus=1", ["config error:", "toolace.bogus"]),
    ("+toolace.limit=0", ["config error:", "toolace.limit"]),
    ("baseline=missing.json", ["config error:", "baseline=missing.json"]),
    ("model_path=runs/missing", ["config error:", "model_path=runs/missing: no such checkpoint directory"]),
])
def test_evaluate_start_up_errors_are_one_line(tmp_path: Path, monkeypatch, capsys, override: str,
                                               words: list[str]) -> None:
    """In this process (the subprocess below runs one through the command line): exit 2 with one line, before
    the model loads (loading it fails the test)."""
    from hydra import compose, initialize_config_dir

    import agents.evaluate

    def reached(*args, **kwargs):
        raise AssertionError("the bad config reached the model loading")

    monkeypatch.setattr(agents.evaluate, "load_model", reached)
    monkeypatch.setattr(agents.evaluate, "load_tokenizer", reached)
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("evaluate", overrides=["suites=[toolace]", override, f"out_dir={tmp_path}"])
        with pytest.raises(SystemExit) as stop:  # inside: the suites are composed from their own config files
            agents.evaluate.main.__wrapped__(cfg)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1, err
    assert all(w in err for w in words), err


def test_evaluate_start_up_error_from_the_command_line(tmp_path: Path) -> None:
    proc = _run(["-m", "agents.evaluate", "suites=[toolace]", "+toolace.limit=0", f"out_dir={tmp_path}"], tmp_path,
                timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("config error: ") and "toolace.limit" in proc.stderr


def test_config_entry_point_errors_name_the_key(tmp_path: Path) -> None:
    for entry_point, words in (("no_such_module:Env", ["env.entry_point", "cannot import module 'no_such_module'"]),
                               ("envs.toolace.env:Nope", ["env.entry_point", "has no attribute 'Nope'"]),
                               ("just_a_module", ["env.entry_point", "<module>:<Class>"])):
        with pytest.raises(EnvConfigError) as err:
            EnvConfig.from_mapping({"name": "broken", "entry_point": entry_point}).register()
        assert all(w in str(err.value) for w in words), str(err.value)
    with pytest.raises(EnvConfigError, match="env.kwargs must be a mapping"):
        EnvConfig.from_mapping({"name": "toolace", "kwargs": ["split"]})
    with pytest.raises(UnknownEnvError) as unknown:
        make("nope")
    assert HOW_TO_REGISTER in str(unknown.value) and "toolace" in str(unknown.value)


def test_config_without_train_kwargs_makes_its_training_env() -> None:
    """The crash of ``env=math``: a missing, null or empty ``train_kwargs`` is no override at all."""
    for extra in ({}, {"train_kwargs": None}, {"train_kwargs": {}}):
        config = EnvConfig.from_mapping({"name": "toolace", "kwargs": {"max_turns": 3}, **extra})
        assert config.kwargs_for("train", training=True) == {"max_turns": 3, "split": "train"}
    config = EnvConfig.from_mapping({"name": "toolace", "kwargs": {"max_turns": 3}, "train_kwargs": {"max_turns": 5}})
    assert config.make("val", training=True).max_turns == 5 and config.make("val").max_turns == 3


def test_realign_registers_a_config_entry_point(tmp_path: Path) -> None:
    """The third command that reads env configs: Hinted Decoding over the doc's bookshop environment, from
    a config directory outside the framework."""
    blocks = doc_blocks(DOC)
    blocks.write_files(tmp_path)
    proc = _run(["-m", "algorithms.realign", "--config-dir", "configs", "env=bookshop", "model=tiny", "device=cpu",
                 "realign.num_samples=2", "realign.max_new_tokens=8", "realign.fallback_to_original=true",
                 "realign.measure_cll=false", "out_dir=out"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["env"] == "bookshop" and report["split"] == "train" and report["attempted"] == 2
    records = [json.loads(line) for line in (tmp_path / "out" / "realigned.jsonl").read_text().splitlines()]
    assert len(records) == 2  # rewritten or, with fallback_to_original, the original expert episode
    bad = _run(["-m", "algorithms.realign", "--config-dir", "configs", "env=bookshop", "model=tiny",
                "env.kwargs.reward_mode=bogus", "out_dir=bad"], tmp_path, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("config error: env.kwargs")
