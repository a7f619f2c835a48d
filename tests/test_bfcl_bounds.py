"""BFCLEnv.step is total and bounded: the fault campaign's triggers, each through ``env.step`` of a real env.

Time bounds are ratios to a normal step of the same env on the same machine, never absolute seconds: a
trigger step must take less than ``RATIO`` times a normal one. Both are the best of several runs (a step's cost
is deterministic; what a loaded machine adds is noise, and the baselines are tens of microseconds).
"""

from __future__ import annotations

import decimal
import json
import sys
import time

import pytest

from envs.bfcl import data
from envs.bfcl.env import ENV_ERROR

pytestmark = pytest.mark.skipif(not data.is_available(),
                                reason="bfcl-eval not installed (pip install --no-deps bfcl-eval)")

RATIO = 50
#: the fault campaign's reply: 329 terms, deeper than the old decoder's recursion could follow
SUM_CHAIN = "[" + "+".join(["1"] * 329) + "]"


def _env(**kw):
    from envs.bfcl.env import BFCLEnv

    return BFCLEnv(**kw)


def _timed(env, text: str, reset: dict | None = None):
    if reset is not None:
        env.reset(options=reset)
    t0 = time.perf_counter()
    out = env.step(text)
    seconds = time.perf_counter() - t0
    assert out[4].get("error_type") != ENV_ERROR, out[4]["reason"]  # the safety net must not be what answered
    return seconds, out


def _best_step(env, text: str, reset: dict | None, n: int = 9) -> float:
    return min(_timed(env, text, reset)[0] for _ in range(n))


def _tool_results(out) -> list[dict]:
    new, reward, terminated, truncated, _ = out
    assert not terminated and reward == 0.0 and new[0]["role"] == "tool"
    return json.loads(new[0]["content"])


# -- 1. the decoder: a long operator chain in every category ---------------------------------------------
def _baseline_text(env) -> str:
    if env.multi_turn:
        return "Nothing to call."  # like the trigger, ends the user turn (runs the reference chain and checks)
    if env.category in data.RELEVANCE_CATEGORIES:
        # a reply with one call, which the decoder walks; a plain-text reply fails to parse in ~10 us, which
        # made the sum chain's 0.7 ms a 58x "normal step" on a quiet machine (a flaky bound, not a slow decoder)
        return f"[{env.functions[0]['name']}(x=1)]"
    from envs.bfcl.ground_truth import answer_text

    return answer_text(env.functions, env.answers[env.entry["id"]])


@pytest.mark.parametrize("category", data.CATEGORIES)
def test_long_sum_chain_is_a_decode_failure_in_every_category(category):
    env = _env(category=category, limit=2)
    env.reset(options={"index": 0})
    baseline = _best_step(env, _baseline_text(env), {"index": 0})
    times = []
    for _ in range(5):
        seconds, (new, reward, terminated, truncated, info) = _timed(env, SUM_CHAIN, {"index": 0})
        times.append(seconds)
        assert isinstance(reward, float) and info["decoded"] is None
        if not env.multi_turn and category not in data.RELEVANCE_CATEGORIES:
            assert terminated and reward == 0.0 and info["error_type"] == "ast_decoder:decoder_failed"
        if category in ("irrelevance", "live_irrelevance"):
            assert reward == 1.0  # nothing decodes to a call
        if env.multi_turn:  # no decodable call: the turn ends, as BFCL ends it
            assert info["turn"] == 1 or terminated
    assert min(times) < RATIO * baseline, (times, baseline)


def _with_stack_headroom(frames: int, fn):
    """Call ``fn`` with only ``frames`` frames left below the recursion limit (a deep caller, e.g. a rollout)."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back

    def down(n):
        return fn() if n <= 0 else down(n - 1)

    return down(sys.getrecursionlimit() - frames - depth)


@pytest.mark.parametrize("text", [SUM_CHAIN, "[f(x=" + "+".join(["1"] * 329) + ")]", "[f(x=g(" + "-".join(["1"] * 2000) + "))]",
                                  "[f(x=" + "[" * 150 + "]" * 150 + ")]", "[f(x=" + "-" * 5000 + "1)]"])
def test_decoder_is_total_with_little_stack_left(text):
    from envs.bfcl.decode import BFCLDecodeError, decode

    env = _env(category="simple_python", limit=1)

    def run():
        env.reset(options={"index": 0})
        with pytest.raises(BFCLDecodeError):
            decode(text)
        return env.step(text)

    _, reward, terminated, _, info = _with_stack_headroom(150, run)
    assert terminated and reward == 0.0 and info["error_type"] == "ast_decoder:decoder_failed"
    env.reset(options={"index": 0})  # a real answer still decodes at that depth
    assert _with_stack_headroom(150, lambda: env.step(_baseline_text(env)))[1] == 1.0


# -- 3. the decoder's arithmetic bounds ---------------------------------------------------------------------
@pytest.mark.parametrize("expr", ["(7**1458)**9999", "7**(1458*9999)", "2**4097", "(2**4000)*(2**4000)", "3**3**3**3",
                                  "0x" + "f" * 1100, "(-7)**(10**1000)", "10**-(10**1000)*2**4000"])
def test_oversized_arithmetic_fails_to_decode_fast(expr):
    env = _env(category="simple_python", limit=1)
    env.reset(options={"index": 0})
    baseline = _best_step(env, _baseline_text(env), {"index": 0})
    text = f"[calculate_triangle_area(base={expr}, height=5)]"
    _, reward, terminated, _, info = _timed(env, text, {"index": 0})[1]
    assert terminated and reward == 0.0 and info["error_type"] == "ast_decoder:decoder_failed"
    seconds = _best_step(env, text, {"index": 0}, n=5)
    assert seconds < RATIO * baseline, (seconds, baseline)


def test_small_constant_arithmetic_still_computed():
    from envs.bfcl.decode import MAX_INT_BITS, decode

    (call,) = decode("[f(a=5/100, b=2**10, c=-3*4+1, d='ab'+'c', e=(7**1458), f=2**4095+(2**4095-1), g=10**-3)]")
    assert call.arguments["a"] == 0.05 and call.arguments["b"] == 1024 and call.arguments["c"] == -11
    assert call.arguments["d"] == "abc" and call.arguments["e"] == 7**1458 and call.arguments["g"] == 0.001
    assert call.arguments["f"].bit_length() == MAX_INT_BITS
    env = _env(category="simple_python", limit=1)
    env.reset(options={"index": 0})  # base=10, height=5
    assert env.step("[calculate_triangle_area(base=2*5, height=10//2, unit='u'+'nits')]")[1] == 1.0


# -- 2. the multi-turn backends (BFCL's MathAPI) ------------------------------------------------------------
@pytest.fixture(scope="module")
def math_env():
    env = _env(category="multi_turn_base", max_steps_per_turn=10_000)
    index = next(i for i, e in enumerate(env.entries) if "MathAPI" in e["involved_classes"])
    env.reset(options={"index": index})
    baseline = _best_step(env, "[add(a=1, b=2)]", None, n=21)
    return env, baseline


@pytest.mark.parametrize("call, error", [
    ("power(base=10, exponent=5000)", "result too large"),  # was: ValueError (int-to-str limit) out of step
    ("power(base=7, exponent=10**1000)", "result too large"),  # was: past 60 s
    ("power(base=-3, exponent=2**4000)", "result too large"),
    ("square_root(number=2, precision=3000000)", "precision must be at most"),  # was: 24 s, 3 MB message
    ("square_root(number=2, precision='3000000')", "precision must be at most"),
    ("logarithm(value=10, base=3, precision=20000)", "precision must be at most"),  # was: mp.dps left at 20000
    ("logarithm(value=10, base=3, precision='2e4')", "precision must be at most"),
    ("logarithm(value='1e" + "9" * 4000 + "', base=3, precision=5)", "value must be a number"),  # mpmath: 40 s
    ("logarithm(value=10, base='1e-" + "9" * 300 + "', precision=5)", "base must be a number"),
    ("round_number(number=5, decimal_places=-10**9)", "decimal_places must be"),
])
def test_math_api_arguments_are_bounded(math_env, call, error):
    import mpmath

    env, baseline = math_env
    dps, prec = mpmath.mp.dps, decimal.getcontext().prec
    seconds, out = _timed(env, f"[{call}]")
    (result,) = _tool_results(out)
    assert error in result["results"]["error"]
    seconds = min(seconds, _best_step(env, f"[{call}]", None, n=4))
    assert seconds < RATIO * baseline, (seconds, baseline)
    assert (mpmath.mp.dps, decimal.getcontext().prec) == (dps, prec)


@pytest.mark.parametrize("call", [
    "logarithm(value=10, base=3, precision=100)", "logarithm(value=-(2**4095), base=-1.5e-300+2j, precision=100)",
    "square_root(number=2, precision=100)", "square_root(number=2**4095, precision=100)",
    "power(base=3, exponent=2584)", "power(base=2**4095, exponent=1)", "multiply(a=2**4095, b=-(2**4095))",
    "round_number(number=2**4095, decimal_places=-1000)", "mean(numbers=[2**4095, 1])",
    "logarithm(value='1e' + '9' * 3, base=3, precision=5)", "logarithm(value=-1, base=0, precision=5)",
    "logarithm(value='1e" + "9" * 22 + "', base='-1e-" + "9" * 20 + "', precision=100)",
    "square_root(number=2, precision=0)", "power(base=1.5, exponent=10**300)", "add(a=[1], b='x')",
])
def test_math_api_calls_at_the_bounds_answer_in_time(math_env, call):
    import mpmath

    env, baseline = math_env
    dps, prec = mpmath.mp.dps, decimal.getcontext().prec
    times = []
    for _ in range(5):
        seconds, out = _timed(env, f"[{call}]")
        times.append(seconds)
        if out[0] and out[0][0]["role"] == "tool":  # the call decoded and ran (a failure is an error result)
            (result,) = _tool_results(out)
            assert set(result) in ({"name", "results"}, {"name", "error"})
            assert len(out[0][0]["content"]) <= 4_096 + 200
        else:  # "'1e' + '9' * 3": not a decodable value, so the reply ends the turn
            env.reset(options={"id": env.entry["id"]})
    assert min(times) < RATIO * baseline, (times, baseline)
    assert (mpmath.mp.dps, decimal.getcontext().prec) == (dps, prec)


def test_numeric_state_does_not_leak_but_results_keep_their_precision(math_env):
    import mpmath

    env, _ = math_env
    dps, prec = mpmath.mp.dps, decimal.getcontext().prec
    (log,) = _tool_results(env.step("[logarithm(value=10, base=3, precision=90)]"))
    assert len(log["results"]["result"]) >= 90  # printed at the precision it asked for
    assert mpmath.mp.dps == dps and mpmath.mp.prec == 53
    (root,) = _tool_results(env.step("[square_root(number=2, precision=80)]"))
    assert len(root["results"]["result"]) == 81 and decimal.getcontext().prec == prec
    (small,) = _tool_results(env.step("[logarithm(value=10, base=3, precision=20000)]"))
    assert "error" in small["results"] and mpmath.mp.dps == dps


def test_backend_exceptions_become_error_results(math_env):
    env, _ = math_env
    results = _tool_results(env.step("[mean(numbers=[2**4000, 1]), si_unit_conversion(value=1e308, unit_in='km', "
                                      "unit_out='nm'), power(base=2.5, exponent=1e6), cd(folder=[1]), _x(a=1)]"))
    assert [r["name"] for r in results] == ["mean", "si_unit_conversion", "power", "cd", "_x"]
    assert "error" in results[0] and "too large" in results[0]["error"]  # OverflowError, caught
    assert "error" in results[2]


# -- the tool message's size --------------------------------------------------------------------------------
def test_tool_message_is_capped(math_env):
    from envs.bfcl.backends import MAX_RESULT_CHARS, MESSAGE_RESULTS
    from envs.bfcl.multi_turn import MAX_CALLS_PER_STEP

    env, baseline = math_env
    long = "y" * 20_000
    (echo,) = _tool_results(env.step(f"[echo(content='{long}')]"))
    full = json.dumps({"terminal_output": long})
    assert echo["results"].startswith('{"terminal_output": "yyy') and f"[cut: {len(full)} characters in all]" in echo["results"]
    assert len(echo["results"]) < MAX_RESULT_CHARS + 100
    assert env.episode.records[env.episode.turn].executions[-1].text == full  # what the response check compares
    echoes = "[" + ", ".join([f"echo(content='{'z' * 5000}')"] * 6) + "]"
    out = env.step(echoes)
    results = _tool_results(out)
    assert len(out[0][0]["content"]) <= (MESSAGE_RESULTS + 1) * (MAX_RESULT_CHARS + 200)
    assert "limited to" in results[-1]["error"]
    six = _best_step(env, "[" + ", ".join(["echo(content='z')"] * 6) + "]", None)  # six ordinary calls
    assert _best_step(env, echoes, None, n=5) < RATIO * six
    many = "[" + ", ".join(["add(a=1, b=2)"] * 2_000) + "]"  # 30,001 characters: within the action space
    seconds, out = _timed(env, many)
    results = _tool_results(out)
    assert len(results) == MAX_CALLS_PER_STEP + 1 and "not executed: 1936 calls" in results[-1]["error"]


def test_long_context_results_are_not_cut():
    """long_context's listings are long on purpose (up to 31,745 characters): its cap is higher."""
    from envs.bfcl.backends import MAX_RESULT_CHARS

    env = _env(category="multi_turn_long_context")
    env.reset(options={"id": "multi_turn_long_context_125"})  # a TradingBot entry
    (result,) = _tool_results(env.step("[get_stock_info(symbol='ALPH')]"))
    assert "[cut:" not in json.dumps(result) and len(json.dumps(result)) > 30_000 > MAX_RESULT_CHARS


def test_deep_directory_tree_does_not_escape():
    """A model can nest directories as deep as it likes, one level per call; recursive backends (find, du)
    and the state check must still answer."""
    env = _env(category="multi_turn_base", limit=1, max_steps_per_turn=100)
    env.reset(options={"index": 0})
    for _ in range(40):  # 40 steps x 32 levels: deeper than the recursion limit
        results = _tool_results(env.step("[" + ", ".join(["mkdir(dir_name='d'), cd(folder='d')"] * 32) + "]"))
        assert all("error" not in r for r in results)
    results = _tool_results(env.step("[find(path='/'), cd(folder='/'), du(), pwd()]"))
    assert [r["name"] for r in results] == ["find", "cd", "du", "pwd"]
    assert "error" in results[0] and "error" in results[2] and len(json.dumps(results)) < 4 * 4_096 + 200
    new, reward, terminated, truncated, info = env.step("Done.")  # the state check compares the deep tree
    assert reward == 0.0 and (terminated or new[0]["role"] == "user") and info.get("error_type") != ENV_ERROR


def test_file_system_walks_are_bounded():
    """``cp`` of a directory shares its children, so 4 calls per level build a tree whose walk doubles with every
    level (22 levels: ``du`` took 8 s), and copying a directory into itself makes a cycle: find / du refuse."""
    env = _env(category="multi_turn_base", limit=1, max_steps_per_turn=100)
    walk = "[du(), find(path='/')]"
    env.reset(options={"index": 0})
    baseline = _best_step(env, walk, None)
    end_baseline = _best_step(env, "Done.", {"index": 0})
    end_times = []
    for _ in range(3):
        env.reset(options={"index": 0})
        env.step("[mkdir(dir_name='x0'), touch(file_name='f')]")
        for step in range(2):
            calls = []
            for k in range(11 * step, 11 * step + 11):
                calls += [f"cp(source='x{k}', destination='y{k}')", f"mkdir(dir_name='x{k + 1}')",
                          f"mv(source='x{k}', destination='x{k + 1}')", f"mv(source='y{k}', destination='x{k + 1}')"]
            assert not any("error" in json.dumps(r) for r in _tool_results(env.step("[" + ", ".join(calls) + "]")))
        out = env.step(walk)
        assert all("directory tree too large" in r["results"]["error"] for r in _tool_results(out))
        seconds = _best_step(env, walk, None, n=5)
        assert seconds < RATIO * baseline, (seconds, baseline)
        seconds, (_, reward, *_rest) = _timed(env, "Done.")  # the state check compares the shared tree
        assert reward == 0.0
        end_times.append(seconds)
    assert min(end_times) < RATIO * end_baseline, (end_times, end_baseline)

    env.reset(options={"index": 0})
    results = _tool_results(env.step("[mkdir(dir_name='c'), cp(source='c', destination='c'), find(path='/'), "
                                     "cd(folder='c'), du()]"))
    assert "too large" in results[2]["results"]["error"] and "too large" in results[4]["results"]["error"]
