"""Property test: no reply, however malformed, huge or deep, makes the BFCL decoder or ``BFCLEnv.step`` raise.

Two kinds of env: single-turn (the AST and relevance categories, one step per episode) and multi-turn (base,
miss_func, miss_param, long_context; episodes of up to four replies on BFCL's live backends). Replies are
mutated ground-truth call lists, call-shaped text over the entries' own function and parameter names with
hostile values (huge powers, long operator chains, deep nesting, oversized precision / exponent arguments for
BFCL's math API), long replies up to the action space's length, and random text.

Each text is decoded (only ``BFCLDecodeError`` may come out) and stepped; a step must return a float reward of
0 or 1, messages of the observation space, a tool message within the size caps, and must not be answered by
``BFCLEnv``'s safety net. The figures (texts tried, escapes, worst step time as a ratio to the median step) are
printed; the slow variant (10,000 examples per kind) writes them to ``bench/results/fuzz_bfcl.json``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import statistics
import time
import traceback
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.bfcl import data

pytestmark = pytest.mark.skipif(not data.is_available(),
                                reason="bfcl-eval not installed (pip install --no-deps bfcl-eval)")

SINGLE = data.AST_CATEGORIES + data.RELEVANCE_CATEGORIES
MULTI = data.MULTI_TURN_CATEGORIES
#: loose sanity bound on the worst step / median step: a step's time grows with the reply's length (a
#: 30,000-character reply parses in ~10-100 ms, a typical one in ~0.05 ms), but the campaign's faults ran 10^5-10^6
#: times a median step (a 9 s decode, a 24 s square root); measured worst ratios are in the hundreds. The worst
#: step is taken without the cyclic GC's pauses inside it: after thousands of examples, hypothesis's own heap
#: makes a full collection last ~1-2 s, and it falls on whichever step allocates the most (both figures are kept)
WORST_RATIO_BOUND = 20_000
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "fuzz_bfcl.json"


# -- the envs and the material the texts are made of --------------------------------------------------------
@functools.cache
def _env(category: str):
    from envs.bfcl.env import BFCLEnv

    return BFCLEnv(category=category, max_steps_per_turn=20)


@functools.cache
def _material(kind: str) -> tuple[list[str], list[str], list[str]]:
    """``(seed replies, function names, parameter names)`` of one kind, from the ground truth and the docs."""
    from envs.bfcl.ground_truth import answer_text
    from envs.bfcl.multi_turn import entry_functions, ground_truth_replies

    seeds: list[str] = []
    functions: list[dict] = []
    for category in SINGLE if kind == "single" else MULTI:
        env = _env(category)
        for entry in env.entries[:60]:
            if kind == "single":
                functions.extend(entry["function"])
                if category in data.AST_CATEGORIES:
                    seeds.append(answer_text(entry["function"], env.answers[entry["id"]]))
            else:
                functions.extend(entry_functions(entry)[0])
                for turn in ground_truth_replies(entry, env.answers[entry["id"]]):
                    seeds.extend(turn)
    names = sorted({f["name"] for f in functions})
    keys = sorted({k for f in functions for k in f["parameters"].get("properties", {})})
    return sorted(set(seeds)), names, keys


# source fragments of argument values: ordinary, type-confused, oversized, undecodable
POOL = [
    "1", "-1", "0", "1.5", "-0.0", "True", "None", "''", "'x'", "'document'", "[]", "{}", "[1, 2]", "{'a': 1}", "(1, 2)",
    "1e308", "1e308*10", "-1e308*10", "1e-320", "float('nan')", "2**4095", "2**4096", "10**1000", "10**5000", "-(10**1000)",
    "(7**1458)**9999", "7**(10**1000)", "3**3**3**3", "2**2**2**2**2", "2**-10000", "10**-(10**1000)", "0**-1", "1/0",
    "1%0", "5//0", "1j", "1j%2", "(1+1j)**(10**300)", "2.5**1e6", "0x" + "f" * 1100, "0x" + "f" * 8000, "9" * 4300,
    "9" * 4301, "'a'+'b'", "'a'*3", "[1]*3", "-'x'", "+[]", "not 1", "lambda: 1", "x.y.z", "x[0]", "f()", "f(g(h=1))",
    "{**x}", "{[1]: 2}", "{1: 2, [3]: 4}", "{'a': {'b': {'c': []}}}", "*x", "...", "b'x'", "f'{x}'", "1 if 1 else 2",
    "3000000", "20000", "1000", "500", "501", "-10**9", "10**9", "'3000000'", "'2e4'", "'1e999999'", "'nan'", "'inf'",
    "'1e' + '9' * 3", "'9' * 30", "10**300", "1e300", "2**1000", "[2**4095] * 2", "[2**4095, 2**4095]",
    "'" + "9" * 2000 + "'", "'1e" + "9" * 500 + "'", "'/'", "'..'", "'../../..'",
]


def _chain(op: str, n: int) -> str:
    return op.join(["1" if op != "**" else "2"] * n)


def _nest(kind: str, n: int, core: str = "1") -> str:
    return {"list": "[" * n + core + "]" * n, "paren": "(" * n + core + ")" * n, "unary": "-" * n + core,
            "call": "f(x=" * n + core + ")" * n, "dict": "{'k': " * n + core + "}" * n, "not": "not " * n + core}[kind]


hostile = st.one_of(
    st.builds(_chain, st.sampled_from(["+", "-", "*", "/", "**", "%"]), st.integers(2, 12_000)),
    st.builds(_nest, st.sampled_from(["list", "paren", "unary", "call", "dict", "not"]), st.integers(1, 6_000),
              st.sampled_from(["1", "2**4095", "'x'", "10**5000"])),
    st.builds(lambda d: "9" * d, st.integers(1, 6_000)),
    st.builds(lambda d: "0x" + "f" * d, st.integers(1, 9_000)),
    st.builds(lambda a, b: f"({a}**{b})**{b}", st.integers(-10**4, 10**4), st.integers(-10**4, 10**4)),
)
values = st.one_of(st.sampled_from(POOL), st.integers().map(repr), st.floats().map(repr), st.text(max_size=12).map(repr),
                   hostile)


@st.composite
def call_text(draw, kind: str):
    _, names, keys = _material(kind)
    extra = ["precision", "exponent", "base", "value", "number", "decimal_places", "numbers", "content", "a", "b"]
    calls = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(names + ["x", "os.system", "__import__", "_load_scenario", "a.b.c", "power",
                                             "square_root", "logarithm", "round_number"]))
        args = [f"{k}={draw(values)}" for k in draw(st.lists(st.sampled_from(keys + extra), max_size=4))]
        if draw(st.booleans()) and draw(st.booleans()):
            args.insert(0, draw(values))  # a positional argument (dropped by BFCL's decoder)
        calls.append(f"{name}({', '.join(args)})")
    text = "[" + ", ".join(calls) + "]"
    wrap = draw(st.sampled_from(["", "", "", "strip", "fence", "prose", "quote"]))
    return {"": text, "strip": text[1:-1], "fence": f"```\n{text}\n```", "prose": f"Sure: {text} done",
            "quote": f"'{text}'"}[wrap]


@st.composite
def mutated(draw, kind: str):
    base = draw(st.sampled_from(_material(kind)[0]))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("delete", "insert", "swap", "truncate", "duplicate", "replace", "value", "wrap")))
        i = draw(st.integers(0, max(0, len(base) - 1)))
        if op == "delete":
            base = base[:i] + base[i + 1:]
        elif op == "insert":
            base = base[:i] + draw(st.sampled_from(list("[](){}=,'\"\\:.0 -_aZ\n#*+%"))) + base[i:]
        elif op == "swap" and len(base) > i + 1:
            base = base[:i] + base[i + 1] + base[i] + base[i + 2:]
        elif op == "truncate":
            base = base[:i]
        elif op == "duplicate":
            base = base[:i] + base[i:] * draw(st.integers(2, 40))
        elif op == "replace":
            base = base.replace(draw(st.sampled_from(["'", "=", "(", "True", "[", ",", "1", "0"])),
                                draw(st.sampled_from(["\"", ":", "", "1", "{", "**", "10**5000", "2**4096"])), 1)
        elif op == "value":  # replace one argument value with a generated one
            at = base.find("=", i)
            if at >= 0:
                end = min([j for j in (base.find(",", at), base.find(")", at)) if j >= 0], default=len(base))
                base = base[:at + 1] + draw(values) + base[end:]
        else:
            base = _nest(draw(st.sampled_from(["list", "paren"])), draw(st.integers(1, 300)), base)
    return base


@st.composite
def long_reply(draw, kind: str):
    """Replies near the action space's length: many calls, one long literal, a long chain."""
    seeds = _material(kind)[0]
    unit = draw(st.sampled_from(seeds)).strip("[]") or "f(x=1)"
    shape = draw(st.sampled_from(["calls", "literal", "chain", "echo"]))
    if shape == "calls":
        return "[" + ", ".join([unit] * draw(st.integers(60, 4_000))) + "]"
    if shape == "literal":
        return f"[{draw(st.sampled_from(_material(kind)[1]))}(x='" + "y" * draw(st.integers(1_000, 32_700)) + "')]"
    if shape == "chain":
        return f"[f(x={_chain(draw(st.sampled_from(['+', '*', '**'])), draw(st.integers(100, 16_000)))})]"
    return "[" + ", ".join([f"echo(content='{'z' * 400}')"] * draw(st.integers(1, 75))) + "]"


def replies(kind: str):
    return st.one_of(mutated(kind), mutated(kind), call_text(kind), call_text(kind), long_reply(kind),
                     st.text(max_size=300))


# -- running texts and keeping the figures --------------------------------------------------------------------
class Figures:
    def __init__(self):
        self.tried = 0
        self.escapes: list[str] = []
        self.times: list[float] = []
        self.own_times: list[float] = []  # minus the cyclic GC's pauses inside the step
        self.longest_message = 0
        self.worst_text_chars = 0
        self.worst_text = ""
        self.worst_gc = 0.0
        self._gc_seconds = 0.0
        self._gc_start = 0.0

    def gc_callback(self, phase: str, _info: dict) -> None:
        """Time spent in the cyclic garbage collector, so that a step's figure can be told from a GC pause."""
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self._gc_seconds += time.perf_counter() - self._gc_start

    def attempt(self, env, text: str) -> bool:
        """Decode and step one text; True when the episode ended."""
        from envs.bfcl.backends import MESSAGE_RESULTS
        from envs.bfcl.decode import BFCLDecodeError, decode
        from envs.bfcl.env import ENV_ERROR
        from envs.bfcl.multi_turn import MAX_CALLS_PER_STEP

        text = text[: env.action_space.max_length]
        self.tried += 1
        try:
            try:
                decode(text)
            except BFCLDecodeError:
                pass
            self._gc_seconds = 0.0
            t0 = time.perf_counter()
            new, reward, terminated, truncated, info = env.step(text)
            seconds = time.perf_counter() - t0
            gc_seconds = self._gc_seconds
        except BaseException:
            self.escapes.append(f"{text[:300]!r}\n{traceback.format_exc(limit=-6)}")
            raise
        if not self.own_times or seconds - gc_seconds > max(self.own_times):
            self.worst_text_chars, self.worst_text, self.worst_gc = len(text), text[:120], gc_seconds
        self.times.append(seconds)
        self.own_times.append(seconds - gc_seconds)
        assert info.get("error_type") != ENV_ERROR, (text[:300], info["reason"])
        assert type(reward) is float and reward in (0.0, 1.0)
        assert env.observation_space.contains(new)
        if env.multi_turn:
            cap = env.episode.model.max_result_chars
            limit = (MESSAGE_RESULTS + 1) * cap + (MAX_CALLS_PER_STEP + 1) * 250
            for m in new:
                if m["role"] == "tool":
                    assert isinstance(json.loads(m["content"]), list)
                    assert len(m["content"]) <= limit, (text[:300], len(m["content"]))
                    self.longest_message = max(self.longest_message, len(m["content"]))
        return terminated or truncated

    def summary(self, label: str) -> dict:
        median = statistics.median(self.times) if self.times else 0.0
        worst = max(self.own_times, default=0.0)
        worst_raw = max(self.times, default=0.0)
        out = {"kind": label, "texts_tried": self.tried, "escapes": len(self.escapes),
               "median_step_ms": round(median * 1e3, 4),
               "worst_step_ms": round(worst * 1e3, 3),
               "worst_step_ratio_to_median": round(worst / median, 1) if median else None,
               "worst_step_text_chars": self.worst_text_chars, "worst_step_text_start": self.worst_text,
               "worst_step_gc_ms": round(self.worst_gc * 1e3, 3),
               "worst_step_with_gc_ms": round(worst_raw * 1e3, 3),
               "worst_step_with_gc_ratio_to_median": round(worst_raw / median, 1) if median else None,
               "longest_tool_message_chars": self.longest_message,
               "escape_examples": self.escapes[:3]}
        print(f"\nBFCL fuzz {label}: " + json.dumps({k: v for k, v in out.items() if k != "escape_examples"}))
        return out


@contextlib.contextmanager
def _static_heap_frozen(kind: str):
    """Build the envs and the material first, then ``gc.freeze()`` them: with every category loaded, one full
    collection of that static heap takes ~200 ms, and whichever step happens to trigger it would be the "worst
    step" of the run. Frozen, a step's time is its own work (plus collections of what it allocated)."""
    for category in SINGLE if kind == "single" else MULTI:
        _env(category)
    _material(kind)
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _gc_timed(figures: Figures):
    gc.callbacks.append(figures.gc_callback)
    try:
        yield
    finally:
        gc.callbacks.remove(figures.gc_callback)


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                    derandomize=True)


def run_single(n: int) -> dict:
    figures = Figures()

    @fuzz_settings(n)
    @given(st.sampled_from(SINGLE), st.integers(0, 10_000), replies("single"))
    def one(category, index, text):
        env = _env(category)
        env.reset(options={"index": index % env.num_tasks})
        figures.attempt(env, text)

    try:
        with _static_heap_frozen("single"), _gc_timed(figures):
            one()
    finally:
        result = figures.summary("single-turn")
    return result


def run_multi(n: int) -> dict:
    figures = Figures()

    @fuzz_settings(n)
    @given(st.sampled_from(MULTI), st.integers(0, 10_000), st.lists(replies("multi"), min_size=1, max_size=4))
    def episode(category, index, texts):
        env = _env(category)
        env.reset(options={"index": index % env.num_tasks})
        for text in texts:
            if figures.attempt(env, text):
                break

    try:
        with _static_heap_frozen("multi"), _gc_timed(figures):
            episode()
    finally:
        result = figures.summary("multi-turn")
    return result


def _state_unchanged():
    import decimal

    import mpmath

    return mpmath.mp.dps, mpmath.mp.prec, decimal.getcontext().prec


def test_fuzz_single_turn():
    result = run_single(250)
    assert result["texts_tried"] >= 250 and result["escapes"] == 0
    assert result["worst_step_ratio_to_median"] < WORST_RATIO_BOUND


def test_fuzz_multi_turn():
    before = _state_unchanged()
    result = run_multi(150)
    assert result["texts_tried"] >= 150 and result["escapes"] == 0
    assert result["worst_step_ratio_to_median"] < WORST_RATIO_BOUND
    assert _state_unchanged() == before


@pytest.mark.slow
def test_fuzz_slow_writes_figures():
    """10,000 examples per kind (a multi-turn example is up to four replies); minutes."""
    before = _state_unchanged()
    t0 = time.perf_counter()
    results = []
    try:
        results.append(run_single(10_000))
        results.append(run_multi(10_000))
    finally:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"wall_s": round(time.perf_counter() - t0, 1), "kinds": results}, indent=2) + "\n")
    assert all(r["escapes"] == 0 and r["texts_tried"] >= 10_000 for r in results)
    assert all(r["worst_step_ratio_to_median"] < WORST_RATIO_BOUND for r in results)
    assert _state_unchanged() == before
