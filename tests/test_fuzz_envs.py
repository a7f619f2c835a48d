"""The hostile-reply campaign as a test: whatever an assistant writes, ``env.step`` of ToolACE and Math
returns messages and a reward, never raises, takes no step far longer than a typical one, and ends an
episode with its ``failure`` (``envs.episode``): ``None`` exactly when solved.

Texts: the known triggers (a code fence with thousands of blanks, 3,000 calls in one reply, a 329-term
``1+1+...``, ``(7**1458)**9999``, keyword-named arguments, deep nesting, a text at the action-size limit),
mutations of the expert call strings, call-shaped text with random arguments, random unicode, and
episodes of several such turns. The default suite tries a sample; ``-m slow`` tries 10,000+ per
environment and writes its figures (texts tried, escapes, worst step time as a ratio to the median step)
to ``bench/results/fuzz_<env>.json`` for docs/reliability.md.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.math.env import MathEnv
from envs.toolace import ToolACEEnv, load_split

TASKS = load_split("val")
EXPERT_CALLS = sorted({m["content"] for t in TASKS for m in t.expert if m["role"] == "assistant" and m["content"].startswith("[")})
KEYS = sorted({k for t in TASKS for turn in t.ground_truth for cl in turn for c in cl for k in c["arguments"]}) + ["from", "class", "x"]
NAMES = sorted({n for t in TASKS for n in t.tools}) + ["calculator", "x", "os.system", "__import__"]
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"

TRIGGERS = [
    "```" + " " * 3000 + "a",                                   # cubic backtracking in the old fence pattern
    "```python\n" + "\t" * 3000 + "\n```",
    "[" + ", ".join(f"get_weather(city='c{i}')" for i in range(3000)) + "]",  # 3,000 calls in one reply
    "[" + "+".join(["1"] * 329) + "]",                         # RecursionError in BFCL's decoder
    "[calculator(expression='(7**1458)**9999')]",
    "[calculator(expression='" + "+".join(["1"] * 329) + "')]",
    "[convert(from='USD', to='EUR', amount=3), f(class=1, lambda=[], import=None)]",
    "[f(a=" + "[" * 5000 + "]" * 5000 + ")]",
    "[" * 20000,
    "\\boxed{" * 3000,
    "x" * 32_768,
    "<tool_call>" * 2000,
    "[f(a='\x00\ud800\U0001f600')]",
]


def toolace_env() -> ToolACEEnv:
    return ToolACEEnv(tasks=TASKS, tool_timeout_s=None)  # catalog calls inline: the test times the env, not threads


def math_env() -> MathEnv:
    return MathEnv(split="val", size=50, tools=True)


ENVS = {"toolace": toolace_env, "math": math_env}


class Campaign:
    """Plays texts through one environment, counting texts, escapes and step times. A step's time is this
    thread's CPU time (``time.thread_time``): what parsing and scoring a reply cost here, not the wall time a
    busy machine or a tool worker's start-up adds (a CI run beside an evaluation once saw a 7.5 s step)."""

    def __init__(self, make):
        self.env = make()
        self.texts = 0
        self.escapes: list[str] = []
        self.times: list[float] = []
        self.worst_text = ""

    def play(self, index: int, texts: list[str]) -> None:
        env = self.env
        env.reset(options={"index": index % env.num_tasks})
        for text in texts:
            self.texts += 1
            start = time.thread_time()
            try:
                out, reward, terminated, truncated, info = env.step(text)
            except Exception as e:  # noqa: BLE001 - counted; the test fails on any
                self.escapes.append(f"{type(e).__name__}: {e} <- {text[:80]!r}")
                return
            elapsed = time.thread_time() - start
            if not self.times or elapsed > max(self.times):
                self.worst_text = text[:80]
            self.times.append(elapsed)
            assert env.observation_space.contains(out) and isinstance(reward, float)
            for m in out:
                if m["role"] == "tool":
                    json.loads(m["content"])
            if terminated or truncated:
                failure = info["failure"]  # every ending names its failure, None exactly when solved
                assert (failure is None) == (reward >= 1.0), (failure, reward, text[:80])
                assert failure is None or (isinstance(failure, str) and failure), failure
                return

    def figures(self) -> dict:
        median = max(statistics.median(self.times), 1e-6)
        return {"texts": self.texts, "escapes": len(self.escapes), "median_step_s": median,
                "worst_step_ratio": max(self.times) / median, "worst_text": self.worst_text}


@st.composite
def mutated(draw):
    base = draw(st.sampled_from(EXPERT_CALLS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("delete", "insert", "swap", "truncate", "duplicate", "replace")))
        i = draw(st.integers(0, max(0, len(base) - 1)))
        if op == "delete":
            base = base[:i] + base[i + 1:]
        elif op == "insert":
            base = base[:i] + draw(st.sampled_from(list("[](){}=,'\"\\:.0 -_aZ\n#*`"))) + base[i:]
        elif op == "swap" and len(base) > i + 1:
            base = base[:i] + base[i + 1] + base[i] + base[i + 2:]
        elif op == "truncate":
            base = base[:i]
        elif op == "duplicate":
            base = base[:i] + base[i:] * 2
        else:
            base = base.replace(draw(st.sampled_from(["'", "=", "(", "True", "[", ","])),
                                draw(st.sampled_from(["\"", ":", "", "1", "{", "**", "from="])), 1)
    return base


POOL = [None, True, False, 0, -1, 7, 10**30, 1.5, -0.0, 1e308, float("nan"), float("inf"), "", "Paris", "2025-06-20",
        "USD", [], [1, 2], {}, {"street": "1 Main St"}, [[1], {}], "(7**1458)**9999", "1+1+1"]
VALUES = st.sampled_from(POOL) | st.integers() | st.text(max_size=8)


@st.composite
def call_shaped(draw):
    calls = []
    for _ in range(draw(st.integers(0, 4))):
        args = draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4))
        calls.append(f"{draw(st.sampled_from(NAMES))}({', '.join(f'{k}={v!r}' for k, v in args.items())})")
    wrap = draw(st.sampled_from(["[{}]", "```\n[{}]\n```", "{}", "[{}", "Sure: [{}]"]))
    return wrap.format(", ".join(calls))


TEXT = st.sampled_from(TRIGGERS) | mutated() | call_shaped() | st.text(max_size=300) | st.sampled_from(EXPERT_CALLS)
# (name, strategy of (task index, turns), examples in the default suite, in the slow one)
STRATEGIES = [
    ("triggers", st.tuples(st.integers(0, 10_000), st.lists(st.sampled_from(TRIGGERS), min_size=1, max_size=3)), 40, 400),
    ("mutated expert calls", st.tuples(st.integers(0, 10_000), mutated().map(lambda t: [t])), 150, 3000),
    ("call-shaped", st.tuples(st.integers(0, 10_000), call_shaped().map(lambda t: [t])), 150, 2500),
    ("random unicode", st.tuples(st.integers(0, 10_000), st.text(max_size=300).map(lambda t: [t])), 100, 2500),
    ("episodes", st.tuples(st.integers(0, 10_000), st.lists(TEXT, min_size=1, max_size=6)), 60, 2000),
]


def run_campaign(env_name: str, slow: bool) -> dict:
    campaign = Campaign(ENVS[env_name])
    for _, strategy, default_n, slow_n in STRATEGIES:
        @settings(max_examples=slow_n if slow else default_n, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def play(case):
            campaign.play(*case)

        play()
    for text in TRIGGERS:  # every trigger at least once, whatever hypothesis drew
        campaign.play(0, [text])
    assert campaign.escapes == [], campaign.escapes[:5]
    figures = campaign.figures()
    print(f"{env_name}: {figures}")
    return figures


@pytest.mark.parametrize("env_name", sorted(ENVS))
def test_no_reply_escapes_env_step(env_name: str) -> None:
    figures = run_campaign(env_name, slow=False)
    assert figures["texts"] >= 500
    # a bound on the worst step relative to a typical one, never in seconds: the triggers must not cost
    # what they did (the fence: 7.8 s, about 70,000 median steps of 0.1 ms; parsing 3,000 calls is ~500)
    assert figures["worst_step_ratio"] < 20_000, figures


@pytest.mark.slow
@pytest.mark.parametrize("env_name", sorted(ENVS))
def test_ten_thousand_replies_escape_no_env_step(env_name: str) -> None:
    figures = run_campaign(env_name, slow=True)
    assert figures["texts"] >= 10_000
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"fuzz_{env_name}.json").write_text(json.dumps(figures, indent=1))
