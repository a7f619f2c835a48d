"""BFCL's function-calling mode: the functions through the chat template, replies in the model's own format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from envs.bfcl.env import BFCLEnv
from tools import ToolCall
from tools.call_formats import get_call_format

REPO = Path(__file__).resolve().parents[1]


def gold_call(env: BFCLEnv) -> ToolCall:
    """The first possible answer of the current entry, each parameter at its first accepted value."""
    answer = env.answers[env.entry["id"]][0]
    name = next(iter(answer))
    return ToolCall(name, {k: v[0] for k, v in answer[name].items() if v and v[0] != ""})


@pytest.mark.parametrize("call_format", ["hermes", "llama3_json"])
def test_function_calling_mode_scores_the_models_own_format(call_format):
    env = BFCLEnv("simple_python", limit=5, call_format=call_format)
    fmt = get_call_format(call_format)
    for i in range(5):
        messages, info = env.reset(options={"index": i})
        assert all(m["role"] != "system" for m in messages)  # no BFCL system prompt: the template has the tools
        assert [t["function"]["name"] for t in info["tools"]] == [f["name"] for f in env.functions]
        assert info["tools"][0]["function"]["parameters"]["type"] == "object"  # BFCL's "dict" as JSON schema
        assert env.call_schemas() is None
        _, reward, _, _, verdict = env.step(fmt.render([gold_call(env)]))
        assert reward == 1.0, verdict
    env.reset(options={"index": 0})
    assert env.step("The area is 25 square units.")[4]["failure"] == "ast_decoder:decoder_failed"
    env.reset(options={"index": 0})
    wrong = gold_call(env)
    wrong = ToolCall(wrong.name, {**wrong.arguments, "base": "ten"})
    assert env.step(fmt.render([wrong]))[1] == 0.0
    env.reset(options={"index": 0})
    assert env.step('<tool_call>\n{"name": \n</tool_call>')[4]["failure"] == "ast_decoder:decoder_failed"


def test_irrelevance_in_function_calling_mode_passes_a_reply_without_calls():
    env = BFCLEnv("irrelevance", limit=2, call_format="hermes")
    env.reset(options={"index": 0})
    assert env.step("None of the functions can answer this.")[1] == 1.0
    env.reset(options={"index": 0})
    name = env.functions[0]["name"]
    assert env.step(get_call_format("hermes").render([ToolCall(name, {})]))[1] == 0.0


def test_function_calling_mode_refuses_multi_turn_and_unknown_formats():
    with pytest.raises(ValueError, match="single-turn categories"):
        BFCLEnv("multi_turn_base", limit=1, call_format="hermes")
    with pytest.raises(ValueError, match="call_format must be pythonic"):
        BFCLEnv("simple_python", limit=1, call_format="xml")


def test_evaluate_runs_bfcl_in_function_calling_mode(tmp_path):
    cmd = [sys.executable, "-m", "agents.evaluate", "model=tiny", "model.chat_template=hermes", "suites=[bfcl]",
           "bfcl.categories=[simple_python,irrelevance]", "bfcl.limit=2", "bfcl.call_format=native",
           "max_new_tokens=8", "device=cpu", "progress=false", f"out_dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["summary"]["counts"]["bfcl/simple_python"]["n"] == 2
    assert results["summary"]["config"]["bfcl"]["call_format"] == "native"
    # the untouched SmolLM2 template renders no tools: native is a start-up error naming the key
    cmd = [c for c in cmd if c != "model.chat_template=hermes"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "bfcl.call_format=native" in proc.stderr
