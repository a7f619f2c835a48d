"""Property test: no assistant text, however malformed, makes ToolACEEnv.step raise.

Four tests of 2,500-3,000 examples each (>= 10,000 texts in all): mutations of expert call strings,
random printable text, call-shaped text with random arguments, and sequences of texts in one episode.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.toolace import ToolACEEnv, load_split

TASKS = load_split("val")
ENV = ToolACEEnv(tasks=TASKS, tool_timeout_s=None)
EXPERT_CALLS = sorted({m["content"] for t in TASKS for m in t.expert if m["role"] == "assistant" and m["content"].startswith("[")})
KEYS = sorted({k for t in TASKS for turn in t.ground_truth for cl in turn for c in cl for k in c["arguments"]}) + ["x", "_"]
NAMES = sorted({n for t in TASKS for n in t.tools}) + ["x", "os.system", "__import__"]
def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _check(index: int, texts: list[str]) -> None:
    messages, info = ENV.reset(options={"index": index % len(TASKS)})
    for text in texts:
        out, reward, terminated, truncated, info = ENV.step(text)
        assert ENV.observation_space.contains(out)
        assert reward in (0.0, 1.0)
        for m in out:
            if m["role"] == "tool":
                json.loads(m["content"])
        if terminated or truncated:
            break


@st.composite
def mutated(draw):
    base = draw(st.sampled_from(EXPERT_CALLS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("delete", "insert", "swap", "truncate", "duplicate", "replace")))
        i = draw(st.integers(0, max(0, len(base) - 1)))
        if op == "delete":
            base = base[:i] + base[i + 1:]
        elif op == "insert":
            base = base[:i] + draw(st.sampled_from(list("[](){}=,'\"\\:.0 -_aZ\n#*"))) + base[i:]
        elif op == "swap" and len(base) > i + 1:
            base = base[:i] + base[i + 1] + base[i] + base[i + 2:]
        elif op == "truncate":
            base = base[:i]
        elif op == "duplicate":
            base = base[:i] + base[i:] * 2
        else:
            base = base.replace(draw(st.sampled_from(["'", "=", "(", "True", "[", ","])), draw(st.sampled_from(["\"", ":", "", "1", "{", "**"])), 1)
    return base


POOL = [None, True, False, 0, -1, 7, 10**30, 1.5, -0.0, 1e308, float("nan"), float("inf"), "", "Paris", "2025-06-20", "10:30",
        "EVT-501", "P-2004", "USD", "celsius", [], [1, 2], ["a@example.com"], {}, {"street": "1 Main St", "city": "X"}, [[1], {}]]
values = st.sampled_from(POOL) | st.integers() | st.text(max_size=8)


@st.composite
def call_shaped(draw):
    calls = []
    for _ in range(draw(st.integers(0, 4))):
        args = draw(st.dictionaries(st.sampled_from(KEYS), values, max_size=4))
        calls.append(f"{draw(st.sampled_from(NAMES))}({', '.join(f'{k}={v!r}' for k, v in args.items())})")
    return "[" + ", ".join(calls) + "]"


@fuzz(3000)
@given(st.integers(0, 10_000), mutated())
def test_mutated_expert_calls(index, text):
    _check(index, [text])


@fuzz(2500)
@given(st.integers(0, 10_000), st.text(max_size=300))
def test_random_text(index, text):
    _check(index, [text])


@fuzz(2500)
@given(st.integers(0, 10_000), call_shaped())
def test_call_shaped_text(index, text):
    _check(index, [text])


@fuzz(2000)
@given(st.integers(0, 10_000), st.lists(st.sampled_from(EXPERT_CALLS) | mutated() | st.text(max_size=40), min_size=1, max_size=6))
def test_episodes_of_random_turns(index, texts):
    _check(index, texts)
