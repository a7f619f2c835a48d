"""ToolACEEnv in the model's own tool format: tools through the template, calls parsed in its format,
executed, and each result fed back as a ``tool`` message, token-exact over multi-turn episodes."""

from __future__ import annotations

import copy
import json

import pytest

from agents.call_format import renderer_for, resolve_call_format, set_chat_template
from agents.models import load_tokenizer
from agents.rollout import expert_trajectory, rollout
from envs.toolace.env import ToolACEEnv
from envs.toolace.prompt import PLAIN_TEXT
from tests.test_rollout import ScriptedEngine, sampling
from tools import ToolCall
from tools.call_formats import get_call_format


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def test_tasks():
    return ToolACEEnv(split="test").tasks


def native_env(call_format: str, tasks, **kw) -> ToolACEEnv:
    return ToolACEEnv(tasks=tasks, call_format=call_format, tool_timeout_s=None, **kw)


def reply_text(call_format: str, message: dict) -> str:
    """What a model writing ``call_format`` says for an expert assistant message."""
    calls = [ToolCall(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or []]
    return get_call_format(call_format).render(calls) if calls else message["content"]


@pytest.mark.parametrize("call_format", ["hermes", "llama3_json"])
def test_every_expert_replays_natively_to_reward_one(call_format, test_tasks):
    """The expert, written in the native format, gets back exactly the tool messages its trajectory holds
    (one per result, linked by tool_call_id) and scores 1.0: the native results are the same executions."""
    tasks = test_tasks[:120]
    env = native_env(call_format, tasks)
    for index, task in enumerate(tasks):
        opening, info = env.reset(options={"index": index})
        assert opening[0] == {"role": "system", "content": PLAIN_TEXT} and "Python 3" not in json.dumps(opening)
        assert [t["function"]["name"] for t in info["tools"]] == info["tool_names"] == list(task.tools)
        expert, i, reward = info["expert"], 0, 0.0
        while i < len(expert):
            out, reward, terminated, _, step_info = env.step(reply_text(call_format, expert[i]))
            assert out == expert[i + 1:i + 1 + len(out)], (task.id, i)
            i += 1 + len(out)
            if terminated:
                break
        assert i == len(expert) and reward == 1.0, (task.id, step_info.get("failure"))


def test_native_tool_messages_name_each_result_and_its_call(test_tasks):
    task = next(t for t in test_tasks if len(t.turn_calls(0)) >= 2)
    env = native_env("hermes", [task])
    _, info = env.reset(options={"index": 0})
    call_turn = next(m for m in info["expert"] if m.get("tool_calls"))
    out, *_ = env.step(reply_text("hermes", call_turn))
    assert [m["tool_call_id"] for m in out] == [c["id"] for c in call_turn["tool_calls"]]
    assert [m["name"] for m in out] == [c["function"]["name"] for c in call_turn["tool_calls"]]
    assert all(m["role"] == "tool" and isinstance(json.loads(m["content"]), dict | list | str | int | float)
               for m in out)


@pytest.mark.parametrize("reply", [
    "<tool_call>\n{\"name\": \"x\", \"arguments\": {\"a\": 1}\n</tool_call>",  # unbalanced JSON
    "<tool_call>\n[1, 2]\n</tool_call>",                                      # not a call object
    "<tool_call>\n{\"name\": \"__import__('os').system('true')\", \"arguments\": {}}\n</tool_call>",
])
def test_a_malformed_or_hostile_native_reply_is_fed_back_not_raised(reply, test_tasks):
    env = native_env("hermes", test_tasks[:1])
    env.reset(options={"index": 0})
    out, reward, terminated, truncated, info = env.step(reply)
    assert not terminated and not truncated and reward == 0.0
    assert len(out) == 1 and out[0]["role"] == "tool" and "error" in json.loads(out[0]["content"])
    assert info["errors"] == 1


def test_masked_tool_names_reach_the_template_and_the_expert(test_tasks):
    env = native_env("hermes", test_tasks[:20], mask_tool_names=1.0)
    _, info = env.reset(options={"index": 0})
    offered = {t["function"]["name"] for t in info["tools"]}
    assert offered == set(info["tool_aliases"].values()) and offered.isdisjoint(test_tasks[0].tools)
    called = {c["function"]["name"] for m in info["expert"] for c in m.get("tool_calls") or []}
    assert called <= offered


def test_an_unknown_call_format_names_the_choices():
    with pytest.raises(ValueError, match="call_format must be one of pythonic, hermes, llama3_json"):
        ToolACEEnv(tasks=[], call_format="xml")


@pytest.mark.parametrize("template", ["hermes", "llama3_json", "qwen3_thinking"])
def test_native_rollouts_execute_tools_token_exact_over_turns(tokenizer, template, test_tasks):
    """Render with tools, sample, parse, execute, render the tool result: a model that samples the expert's
    tokens in the template's format reproduces the expert trajectory token for token over 3+ assistant turns
    of a two-request task, and scores 1.0. The thinking template drops earlier <think> blocks, so its deltas
    are rendered against a fixed base."""
    tok = set_chat_template(copy.deepcopy(tokenizer), template)
    call_format = resolve_call_format("native", tok)
    renderer = renderer_for(tok, call_format)
    task = next(t for t in test_tasks if t.n_turns >= 2 and sum(m["role"] == "assistant" for m in t.expert) >= 3
                and any(t.turn_calls(u) for u in range(t.n_turns)))
    env = native_env(call_format, [task])
    opening, info = env.reset(options={"index": 0})
    expert = info["expert"]
    if template == "qwen3_thinking":
        expert = [dict(m, content=f"<think>\nstep {k}\n</think>\n\n{m.get('content') or ''}".rstrip() + "\n"
                       if m.get("tool_calls") else f"<think>\nstep {k}\n</think>\n\n{m.get('content') or ''}")
                  if m["role"] == "assistant" else m for k, m in enumerate(expert)]
    want = expert_trajectory(opening, expert, renderer, tools=info["tools"])
    assert len(want.turn_spans) >= 3
    prompt = tok.decode(want.input_ids[:want.prompt_len])
    assert task.tools[0] in prompt and "Python 3" not in prompt  # the template's tool list, not BFCL's prompt
    script = [want.input_ids[s:e] for s, e in want.turn_spans]
    got = rollout([native_env(call_format, [task])], ScriptedEngine(script), renderer,
                  sampling=sampling(max_new_tokens=512), reset_kwargs=[{"options": {"index": 0}}])[0]
    assert got.input_ids == want.input_ids and got.loss_mask == want.loss_mask
    assert got.reward == 1.0
    if template != "llama3_json":  # Llama's header merges with a call's "{" in a whole-text render (see test_toolcalls_env)
        assert got.info["render_mismatch"] == 0
