"""An environment whose tools come from a real MCP server, built from a config as a user would write it
(``kwargs.mcp``: a server command over stdio, or a Streamable HTTP URL on 127.0.0.1), playing episodes
with a valid call, an invalid one (stopped by local validation) and a tool error (the server's)."""

from __future__ import annotations

import json
import sys

import pytest

from envs import EnvConfig
from envs.toolace import Task
from tests.test_tools_mcp import SERVER, start_http_server, stop
from tools import ToolCall


def _tasks(path) -> str:
    task = Task(id="fx-0", kind="single", domain="money", tools=["convert", "fail"], split="test",
                user_messages=["How many euros are 2 dollars?"],
                ground_truth=[[[{"name": "convert", "arguments": {"amount": 2, "currency": "EUR"}}]]],
                expert=[], world_seed=0)
    path.write_text(task.to_json() + "\n")
    return str(path)


@pytest.fixture(scope="module")
def http_url():
    proc, url = start_http_server()
    yield url
    stop(proc)


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_config_named_mcp_server_plays_episodes(transport, tmp_path, request) -> None:
    server = {"command": [sys.executable, SERVER, "stdio"]} if transport == "stdio" else {
        "url": request.getfixturevalue("http_url")}
    config = EnvConfig.from_mapping({"name": f"mcp_{transport}", "entry_point": "envs.toolace.env:ToolACEEnv",
                                     "eval_split": "test",
                                     "kwargs": {"tasks": _tasks(tmp_path / "tasks.jsonl"), "mcp": server}})
    env = config.make(config.eval_split)
    messages, info = env.reset(options={"index": 0})
    assert '"convert"' in messages[0]["content"] and '"fail"' in messages[0]["content"]
    assert '"echo"' not in messages[0]["content"]  # only the task's tools are offered
    assert env.toolset.timeout_s == 2.0  # the environment's tool_timeout_s caps the server's 5 s

    out, *_ = env.step("[convert(amount='two', currency='EUR')]")  # wrong type: never reaches the server
    invalid = json.loads(out[0]["content"])[0]
    assert invalid["name"] == "convert" and "amount" in invalid["error"]
    out, *_ = env.step("[fail(reason='the bank is closed')]")  # the server's own tool error
    assert json.loads(out[0]["content"]) == [{"name": "fail", "error": "fail: Error executing tool fail: the bank is closed"}]
    out, *_ = env.step("[convert(amount=2, currency='EUR')]")
    assert json.loads(out[0]["content"]) == [{"name": "convert", "results": {"amount": 1.0, "currency": "EUR"}}]
    _, reward, terminated, _, info = env.step("2 dollars are 1 euro.")
    assert terminated and reward == 0.0 and info["errors"] == 2  # strict: the failed calls count against it

    env.reset(options={"index": 0})
    env.step("[convert(amount=2, currency='EUR')]")
    _, reward, terminated, _, info = env.step("2 dollars are 1 euro.")
    assert terminated and reward == 1.0 and info["failure"] is None
    again = config.make(config.eval_split)  # a second environment of the same config: the same connection
    assert again.toolset_factory(env.task).execute(ToolCall("convert", {"amount": 4, "currency": "EUR"})).ok
    from envs.toolace.env import _MCP_TOOLSETS

    assert sum(json.dumps(server, sort_keys=True) == key for key in _MCP_TOOLSETS) == 1
