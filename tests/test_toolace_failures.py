"""Failure categories of ToolACE episodes (``envs.toolace.failures``): per turn by hand, then through the env."""

from __future__ import annotations

import pytest

from envs.toolace import ToolACEEnv, load_split
from envs.toolace.failures import FAILURES, classify_episode, classify_turn
from tools import ToolCall

SCHEMAS = {
    "f": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer", "default": 3}},
          "required": ["a"]},
    "g": {"type": "object", "properties": {"c": {"type": "number"}}, "required": ["c"]},
}


def _c(name: str, **arguments) -> ToolCall:
    return ToolCall(name, arguments)


@pytest.mark.parametrize("expected,actual,errors,unparsed,category", [
    ([], [], 0, 0, None),
    ([], [_c("f", a="x")], 1, 0, "call_on_no_tool"),
    ([], [], 1, 1, "call_on_no_tool"),                                # an unparsable attempt is an attempt
    ([_c("f", a="x")], [], 0, 0, "no_call"),
    ([_c("f", a="x")], [], 1, 1, "unparsable"),
    ([_c("f", a="x")], [_c("f", a="x")], 1, 1, "unparsable"),          # a right call next to a broken list
    ([_c("f", a="x"), _c("g", c=1)], [_c("f", a="x")], 0, 0, "missing_call"),
    ([_c("f", a="x")], [_c("f", a="x"), _c("g", c=1)], 0, 0, "extra_call"),
    ([_c("f", a="x")], [_c("f", a="x"), _c("f", a="x")], 0, 0, "extra_call"),
    ([_c("f", a="x")], [_c("g", c=1)], 0, 0, "wrong_tool"),
    ([_c("f", a="x"), _c("f", a="y")], [_c("f", a="x"), _c("g", c=1)], 0, 0, "wrong_tool"),
    ([_c("f", a="x", b=5)], [_c("f", a="x")], 0, 0, "missing_argument"),  # b's default is 3, not 5
    ([_c("f", a="x")], [_c("f", a="x", b=3)], 0, 0, None),               # the default, spelled out
    ([_c("g", c=1)], [_c("g", c=1, d=2)], 1, 0, "unexpected_argument"),
    ([_c("f", a="x")], [_c("f", a="y")], 0, 0, "wrong_value"),
    ([_c("f", a="x", b=5)], [_c("f", a="x", b="5")], 0, 0, "wrong_value"),  # type-aware: "5" is not 5
    ([_c("f", a="x"), _c("f", a="y")], [_c("f", a="y"), _c("f", a="z")], 0, 0, "wrong_value"),
    ([_c("g", c=1)], [_c("g", c=1.0)], 0, 0, None),                       # number: 1 == 1.0
    ([_c("g", c=1)], [_c("g", c=1)], 1, 0, "call_error"),
])
def test_classify_turn(expected, actual, errors, unparsed, category):
    assert classify_turn(expected, actual, errors, unparsed, SCHEMAS.get) == category
    assert category is None or category in FAILURES


def test_classify_episode_takes_the_first_failing_turn_then_the_ending():
    assert classify_episode([None, "wrong_value", "no_call"], reached=2, answered=True, cut=False) == ("wrong_value", 1)
    assert classify_episode([None, None], reached=1, answered=True, cut=False) is None
    assert classify_episode([None, None], reached=1, answered=False, cut=False) == ("no_answer", 1)
    assert classify_episode([None, None], reached=0, answered=True, cut=False) == ("no_answer", 0)
    assert classify_episode([None], reached=0, answered=False, cut=True) == ("turn_cap", 0)
    assert classify_episode(["extra_call"], reached=0, answered=False, cut=True) == ("extra_call", 0)


def _task(kind: str, pred=lambda t: True):
    return next(t for t in load_split("val") if t.kind == kind and pred(t))


def _play(env: ToolACEEnv, task, texts: list[str]) -> dict:
    env.reset(options={"task": task})
    for text in texts:
        _, _, term, trunc, info = env.step(text)
        if term or trunc:
            return info
    raise AssertionError("episode did not end")


def _text(call: dict) -> str:
    return f"{call['name']}({', '.join(f'{k}={v!r}' for k, v in call['arguments'].items())})"


def test_the_environment_reports_the_failure_of_each_episode():
    env = ToolACEEnv(tasks=[])
    par = _task("parallel")
    gt = par.ground_truth[0][0]
    calls = [_text(c) for c in gt]
    answer = [m["content"] for m in par.expert if m["role"] == "assistant"][-1]

    def failure(texts, task=par):
        info = _play(env, task, texts)
        return info["failure"], info["failure_turn"], info["success"]

    assert failure(["[" + ", ".join(calls) + "]", answer]) == (None, None, True)
    assert failure(["[" + calls[0] + "]", answer])[0] == "missing_call"
    assert failure(["[" + ", ".join(calls + [calls[0]]) + "]", answer])[0] == "extra_call"
    assert failure(["[" + ", ".join(["not_a_tool(x=1)"] + calls[1:]) + "]", answer])[0] == "wrong_tool"
    assert failure([answer])[0] == "no_call"
    assert failure(["[broken(", answer])[0] == "unparsable"
    assert failure(["[" + ", ".join(calls) + "]", ""]) == ("no_answer", 0, False)

    wrong = dict(gt[0]["arguments"])
    key = next(k for k, v in wrong.items() if isinstance(v, str))
    wrong[key] += "x"
    assert failure(["[" + ", ".join([_text({"name": gt[0]["name"], "arguments": wrong})] + calls[1:]) + "]",
                    answer])[0] == "wrong_value"

    no_tool = _task("no_tool", pred=lambda t: t.meta["subkind"] == "irrelevant")
    assert failure([f"[{no_tool.tools[0]}()]", "Sorry."], no_tool)[0] == "call_on_no_tool"

    multi = _task("multi_turn", pred=lambda t: t.meta["style"] == "next")
    texts = [m["content"] for m in multi.expert if m["role"] == "assistant"]
    assert failure(texts, multi) == (None, None, True)
    second_call = next(i for i, t in enumerate(texts) if i > 0 and t.startswith("[") and not texts[i - 1].startswith("["))
    assert failure(texts[:second_call] + ["I cannot help with that."], multi)[:2] == ("no_call", 1)

    single = _task("single")
    capped = ToolACEEnv(tasks=[single], max_turns=2)
    call = [m["content"] for m in single.expert if m["role"] == "assistant"][0]
    capped.reset(options={"index": 0})
    capped.step(call)
    *_, trunc, info = capped.step(call)
    assert trunc and info["failure"] == "extra_call"  # the repeat is the first thing wrong
    once = ToolACEEnv(tasks=[single], max_turns=1)
    once.reset(options={"index": 0})
    *_, trunc, info = once.step(call)
    assert trunc and (info["failure"], info["failure_turn"]) == ("turn_cap", 0)
