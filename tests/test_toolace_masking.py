"""Function masking (``mask_tool_names``): random tool names per task, consistent across prompt, expert,
tool messages and scoring; off by default."""

from __future__ import annotations

import json
import re

import pytest

from envs.toolace import ToolACEEnv, load_split
from envs.toolace.masking import mask_messages, masked_names
from tools import ToolCall, Toolset, tool

NAME = re.compile(r"^[a-z]+_[a-z]+$")


def _listed(system: str) -> list[str]:
    return [f["name"] for f in json.loads(system.split("invoke.\n", 1)[1])]


def _replay(env: ToolACEEnv, index: int) -> float:
    """Play the expert continuation that reset hands out; every observation must equal the expert's."""
    _, info = env.reset(options={"index": index})
    expert, i, reward = info["expert"], 0, 0.0
    while i < len(expert):
        out, reward, term, trunc, _ = env.step(expert[i]["content"])
        assert out == expert[i + 1:i + 1 + len(out)], (index, out)
        i += 1 + len(out)
        if term or trunc:
            break
    return reward


def test_masked_names_are_a_pure_function_of_seed_and_task():
    names = ["get_weather_now", "convert_currency", "send_message"]
    a = masked_names("train-00001", names, 1.0)
    assert a == masked_names("train-00001", names, 1.0)
    assert set(a) == set(names) and len(set(a.values())) == 3
    assert all(NAME.match(v) and v not in names for v in a.values())
    assert a != masked_names("train-00001", names, 1.0, seed=1)
    assert masked_names("train-00001", names, 0.0) == {}
    drawn = sum(bool(masked_names(f"train-{i:05d}", names, 0.5)) for i in range(1000))
    assert 430 < drawn < 570  # Binomial(1000, 0.5): 4.4 standard deviations either side
    with pytest.raises(ValueError, match="probability"):
        masked_names("t", names, 1.5)
    with pytest.raises(ValueError, match="mask_tool_names"):
        ToolACEEnv(tasks=[], mask_tool_names=-0.1)


def test_off_by_default_and_at_zero():
    plain, zero = ToolACEEnv(split="val"), ToolACEEnv(split="val", mask_tool_names=0.0)
    for i in range(20):
        assert plain.reset(options={"index": i}) == zero.reset(options={"index": i})
        _, info = plain.reset(options={"index": i})
        assert info["tool_aliases"] == {} and info["expert"] == [dict(m) for m in plain.tasks[i].expert]


def test_masked_episode_is_consistent_end_to_end():
    env = ToolACEEnv(split="train", mask_tool_names=1.0)
    for index in range(150):
        messages, info = env.reset(options={"index": index})
        aliases = info["tool_aliases"]
        task = env.tasks[index]
        assert _listed(messages[0]["content"]) == [aliases[t] for t in task.tools]
        assert [s["name"] for s in env.call_schemas()] == [aliases[t] for t in task.tools]
        calls_text = " ".join(m["content"] for m in info["expert"] if m["role"] in ("assistant", "tool"))
        assert not any(re.search(rf"\b{t}\b", calls_text) for t in task.tools)
        assert _replay(env, index) == 1.0


def test_the_real_name_is_an_unknown_tool_in_a_masked_episode():
    env = ToolACEEnv(split="val", mask_tool_names=1.0)
    index = next(i for i, t in enumerate(env.tasks) if t.kind == "single")
    aliases = env.reset(options={"index": index})[1]["tool_aliases"]
    real = env.tasks[index].ground_truth[0][0][0]
    args = ", ".join(f"{k}={v!r}" for k, v in real["arguments"].items())
    out, *_ = env.step(f"[{real['name']}({args})]")
    assert "unknown tool" in json.loads(out[0]["content"])[0]["error"]
    *_, info = env.step("Done.")
    assert info["success"] is False and info["failure"] == "wrong_tool"
    env.reset(options={"index": index})
    out, *_ = env.step(f"[{aliases[real['name']]}({args})]")
    assert "results" in json.loads(out[0]["content"])[0]


def test_mask_messages_leaves_text_alone():
    messages = [{"role": "assistant", "content": "[f(x=1), g(y='f')]"},
                {"role": "tool", "content": json.dumps([{"name": "f", "results": 1}, {"name": "g", "results": "f"}])},
                {"role": "assistant", "content": "f is done."}]
    out = mask_messages(messages, {"f": "aa_bb"})
    assert out[0]["content"] == "[aa_bb(x=1), g(y='f')]"
    assert json.loads(out[1]["content"]) == [{"name": "aa_bb", "results": 1}, {"name": "g", "results": "f"}]
    assert out[2] == messages[2] and messages[0]["content"] == "[f(x=1), g(y='f')]"


def test_toolset_renamed_shares_schemas_and_checks_names():
    @tool
    def area(width: float, height: float) -> float:
        """Area of a rectangle.

        Args:
            width: Width.
            height: Height.
        """
        return width * height

    @tool
    def echo(text: str) -> str:
        """Echo.

        Args:
            text: Text.
        """
        return text

    ts = Toolset([area, echo])
    new = ts.renamed({"area": "qq_rr"})
    assert new.names == ["qq_rr", "echo"] and ts.names == ["area", "echo"]
    assert new.execute(ToolCall("qq_rr", {"width": 2, "height": 3})).content == 6
    assert "qq_rr" in new.validate(ToolCall("qq_rr", {"width": 2}))
    assert "unknown tool" in new.validate(ToolCall("area", {"width": 2, "height": 3}))
    with pytest.raises(KeyError, match="unknown tools"):
        ts.renamed({"nope": "x"})
    with pytest.raises(ValueError, match="duplicate"):
        ts.renamed({"area": "echo"})
    with pytest.raises(ValueError, match="identifier"):
        ts.renamed({"area": "class"})


def test_masking_draws_about_the_asked_share_of_train_tasks():
    env = ToolACEEnv(split="train", mask_tool_names=0.5)
    masked = sum(bool(env.reset(options={"index": i})[1]["tool_aliases"]) for i in range(400))
    assert 150 < masked < 250
    assert len(load_split("train")) == env.num_tasks


def test_an_evaluation_can_score_every_task_under_masked_names(tmp_path):
    """docs/toolace.md's command: agents.evaluate with +toolace.kwargs.mask_tool_names=1.0 offers every val task's
    tools under random names only (the real names appear nowhere in the prompt) and scores the renamed calls."""
    import subprocess
    import sys

    from tests.helpers import REPO

    proc = subprocess.run([sys.executable, "-m", "agents.evaluate", "model=tiny", "rollout.engine=hf", "suites=[toolace]",
                           "toolace.split=val", "toolace.limit=3", "+toolace.kwargs.mask_tool_names=1.0",
                           "max_new_tokens=4", "progress=false", f"out_dir={tmp_path}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    entries = json.loads((tmp_path / "results.json").read_text())["entries"]
    assert len(entries) == 3
    for entry in entries:
        aliases = entry["verdict"]["tool_aliases"]
        assert aliases and set(aliases) == set(entry["verdict"]["tools"])
        prompt = json.dumps(entry["prompt"])
        assert all(alias in prompt for alias in aliases.values())
        assert not any(re.search(rf"\b{re.escape(real)}\b", prompt) for real in aliases)
