"""MathEnv: reward table, math-verify equivalence and time limits, splits, experts, tools, retries, JSONL."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.math.answer import last_boxed
from envs.math.arith import ArithmeticExpressionError, evaluate, format_number, solution_steps
from envs.math.env import FEEDBACK, MathEnv
from envs.math.problems import load_jsonl, normalize_question, reasoning_gym_problems
from envs.math.reward import score_response
from envs.math.verify import Verifier, default_verifier

PATHOLOGICAL = r"The answer is \boxed{9^{9^{9^{9^9}}}}"


def custom(question: str = "What is 17 * 23?", answer: str = "391") -> dict:
    return {"options": {"problem": {"question": question, "answer": answer}}}


@pytest.fixture(scope="module")
def env() -> MathEnv:
    return MathEnv(size=30, seed=0)


# -- reward ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, reward, outcome, failure", [
    (r"17 * 23 = 391, so \boxed{391}", 1.0, "correct", None),
    (r"17 * 23 = 381, so \boxed{381}", 0.0, "wrong", "wrong_answer"),
    ("17 * 23 = 391", -0.1, "format", "no_boxed_answer"),
    ("x" * 200 + " still thinking", -1.0, "overlong", "overlong"),
])
def test_reward_table(text: str, reward: float, outcome: str, failure: str | None) -> None:
    e = MathEnv(size=3, max_response_chars=100)
    e.reset(**custom())
    _, r, terminated, truncated, info = e.step(text)
    assert (r, info["outcome"], terminated, truncated) == (reward, outcome, True, False)
    assert info["failure"] == failure  # None exactly when solved (envs.episode)


def test_length_cut_is_overlong_and_long_boxed_answer_is_graded() -> None:
    e = MathEnv(size=3, max_response_chars=100)
    e.reset(**custom())
    assert e.step("17 * 23 is", finish_reason="length")[1] == -1.0
    e.reset(**custom())
    _, r, _, _, info = e.step("y" * 300 + r" \boxed{391}")
    assert r == 1.0 and info["overlong"]


@pytest.mark.parametrize("gold", ["1/2", "0.5", r"\frac{1}{2}"])
@pytest.mark.parametrize("answer", ["1/2", "0.5", r"\frac{1}{2}", r"\dfrac{1}{2}", "\\frac12"])
def test_equivalent_forms(gold: str, answer: str) -> None:
    v = default_verifier()
    assert score_response(rf"so \boxed{{{answer}}}", gold, v).reward == 1.0
    assert score_response(r"so \boxed{0.25}", gold, v).reward == 0.0


def test_only_the_last_balanced_box_counts() -> None:
    v = default_verifier()
    assert score_response(r"\boxed{391} or maybe \boxed{390}", "391", v).reward == 0.0  # hedging earns nothing
    assert score_response(r"\boxed{390} no, \boxed{391}", "391", v).reward == 1.0
    assert score_response(r"\boxed{391} \boxed{391", "391", v).reward == -0.1  # last box never closes
    assert score_response(r"\boxed{\boxed{\boxed{", "391", v).reward == -0.1
    assert score_response(r"\boxed{}", "391", v).reward == -0.1
    assert last_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert last_boxed(r"\boxed{\frac{1}{2}} end") == r"\frac{1}{2}"


# -- time limits -----------------------------------------------------------------------------------

def test_pathological_answer_cannot_hang_env_even_from_a_thread() -> None:
    e = MathEnv(size=3, verify_timeout_s=2.0)
    out: dict = {}

    def run() -> None:
        e.reset(**custom("What is 2 + 2?", "4"))
        t0 = time.monotonic()
        out["step"] = e.step(PATHOLOGICAL)
        out["elapsed"] = time.monotonic() - t0

    worker = threading.Thread(target=run)  # math-verify's signal timeouts would raise here
    worker.start()
    worker.join(20)
    assert not worker.is_alive()
    _, reward, terminated, _, info = out["step"]
    assert out["elapsed"] < 5 and reward == 0.0 and terminated
    assert info["timed_out"] and info["outcome"] == "wrong" and info["failure"] == "verify_timeout"


def test_hard_timeout_kills_a_stuck_worker(tmp_path) -> None:
    script = tmp_path / "stuck.py"  # speaks the protocol's greeting, then never answers (like a C-level hang)
    script.write_text("import json, time\nprint(json.dumps({'ready': True}), flush=True)\ntime.sleep(3600)\n")
    v = Verifier(timeout_s=1.0, worker_script=script)
    t0 = time.monotonic()
    verdict = v.verify("4", r"\frac{a}{b}")
    assert time.monotonic() - t0 < 4
    assert not verdict.correct and verdict.timed_out
    assert not v._all  # killed and forgotten; the next check starts a fresh worker
    v.close()


# -- Gymnasium ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"tools": True, "retries": 1}])
def test_check_env(kwargs: dict) -> None:
    check_env(MathEnv(size=10, **kwargs), skip_render_check=True)


def test_registered_and_deterministic() -> None:
    a = envs.make("math", size=20, seed=3)
    b = envs.make("chordgym/Math-v0", size=20, seed=3)
    assert isinstance(a, MathEnv) and a.num_tasks == 20
    assert a.reset(seed=7)[0] == b.reset(seed=7)[0]
    assert a.reset(options={"index": 5})[1]["task_id"] == a.problems[5].uid


def test_system_prompt(env: MathEnv) -> None:
    messages, _ = env.reset(seed=0)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert r"\boxed{}" in messages[0]["content"] and "calculator" not in messages[0]["content"]
    assert "calculator(expression=" in MathEnv(size=3, tools=True).system_prompt


# -- experts ---------------------------------------------------------------------------------------

def test_expert_trajectories_score_one() -> None:
    e = MathEnv(size=45, seed=1)
    sources = set()
    for i in range(e.num_tasks):
        _, info = e.reset(options={"index": i})
        expert = info["expert"]
        assert len(expert) == 1 and expert[0]["role"] == "assistant"
        assert last_boxed(expert[0]["content"]) is not None
        assert e.step(expert[0]["content"])[1] == 1.0
        sources.add(info["source"])
    assert sources == {"basic_arithmetic", "chain_sum", "gsm_symbolic"}


def test_expert_with_wrong_gold_is_withheld() -> None:
    e = MathEnv(size=3)
    _, info = e.reset(options={"problem": {"question": "1 + 1?", "answer": "3", "expression": "1 + 1"}})
    assert "expert" not in info and "scored" in info["expert_error"]
    _, info = e.reset(options={"problem": {"question": "1 + 1?", "answer": "3", "solution": "1 + 1 = 2\n#### 2"}})
    assert "expert" not in info
    _, info = e.reset(options={"problem": {"question": "1 + 1?", "answer": "2", "solution": "1 + 1 = 2\n#### 2"}})
    assert info["expert"][0]["content"] == "1 + 1 = 2\n\nThe final answer is \\boxed{2}."


def test_arithmetic_steps_are_exact_and_safe() -> None:
    steps, value = solution_steps("( 56 + -33 ) - 84 * -( 2 - 5 )")
    assert value == -229 and [s.value for s in steps][-1] == "-229"
    assert format_number(evaluate("1/3*3")) == "1" and format_number(evaluate("7/4")) == "1.75"
    for bad in ['__import__("os").system("true")', "a + 1", "9**9**9**9", "1/0", "(lambda: 1)()", "1 < 2"]:
        with pytest.raises(ArithmeticExpressionError):
            evaluate(bad)


# -- multi-turn ------------------------------------------------------------------------------------

def test_calculator_episode_end_to_end() -> None:
    e = MathEnv(size=3, tools=True, max_turns=4)
    e.reset(**custom())
    msgs, r, term, trunc, info = e.step('[calculator(expression="17 * 23")]')
    assert (r, term, trunc, info["outcome"]) == (0.0, False, False, "tool")
    assert msgs[0]["role"] == "tool" and json.loads(msgs[0]["content"]) == [{"name": "calculator", "results": "391"}]
    msgs, r, term, trunc, info = e.step(r"The calculator says 391, so \boxed{391}")
    assert (msgs, r, term, trunc, info["tool_calls"]) == ([], 1.0, True, False, 1)
    assert [m["role"] for m in e.messages] == ["system", "user", "assistant", "tool", "assistant"]


def test_calculator_errors_come_back_as_tool_results() -> None:
    e = MathEnv(size=3, tools=True, max_turns=4)
    e.reset(**custom())
    msgs, *_ = e.step('[calculator(expression="__import__(\'os\')"), calculator(expression="2**99999")]')
    items = json.loads(msgs[0]["content"])
    assert all("error" in item for item in items) and len(items) == 2
    msgs, r, term, _, info = e.step("[calculator(expression=")
    assert msgs[0]["role"] == "tool" and "error" in json.loads(msgs[0]["content"])[0] and not term


def test_turn_cap_without_answer_is_a_format_error() -> None:
    e = MathEnv(size=3, tools=True, max_turns=2)
    e.reset(**custom())
    e.step('[calculator(expression="17 * 23")]')
    _, r, term, trunc, info = e.step('[calculator(expression="17 * 23")]')
    assert (r, term, trunc, info["outcome"], info["failure"]) == (-0.1, False, True, "no_answer", "no_answer")


def test_turn_cap_after_a_wrong_answer_fails_as_that_answer() -> None:
    e = MathEnv(size=3, tools=True, retries=1, max_turns=2)
    e.reset(**custom())
    assert "failure" not in e.step(r"\boxed{390}")[4]  # a retry follows: the episode goes on
    _, r, term, trunc, info = e.step('[calculator(expression="17 * 23")]')
    assert (r, term, trunc, info["failure"]) == (0.0, False, True, "wrong_answer")


def test_retry_after_wrong_answer() -> None:
    e = MathEnv(size=3, retries=2, max_turns=3)
    e.reset(**custom())
    msgs, r, term, _, info = e.step(r"\boxed{390}")
    assert msgs == [{"role": "user", "content": FEEDBACK["wrong"]}] and (r, term) == (0.0, False)
    msgs, r, term, _, _ = e.step("no box")
    assert msgs[0]["content"] == FEEDBACK["format"] and not term
    _, r, term, _, info = e.step(r"\boxed{391}")
    assert (r, term, info["retries_used"], info["failure"]) == (1.0, True, 2, None)
    e.reset(**custom())  # out of retries: the last answer's reward ends the episode
    e.step(r"\boxed{1}")
    e.step(r"\boxed{2}")
    _, r, term, trunc, info = e.step("no box")
    assert (r, term, trunc, info["failure"]) == (-0.1, True, False, "no_boxed_answer")


# -- sources and splits ------------------------------------------------------------------------------

def test_jsonl_source(tmp_path) -> None:
    rows = [{"question": "What is half of one?", "answer": "1/2", "solution": "One divided by two is 0.5."},
            {"question": "What is 3 + 4?", "answer": 7}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    e = MathEnv(source="jsonl", jsonl_path=str(tmp_path / "{split}.jsonl"))
    assert e.num_tasks == 2
    _, info = e.reset(options={"index": 0})
    assert e.step(info["expert"][0]["content"])[1] == 1.0
    _, info = e.reset(options={"index": 1})
    assert "expert" not in info and e.step(r"\boxed{7}")[1] == 1.0


@pytest.mark.parametrize("line, message", [
    ('{"question": "q", "answer": ', "invalid JSON"),
    ('{"question": "q"}', "'answer'"),
    ('["q", "a"]', "JSON object"),
])
def test_jsonl_broken_line_names_file_and_line(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "ok", "answer": "1"}\n\n' + line + "\n")
    with pytest.raises(ValueError, match=rf"bad\.jsonl:3: .*{message}"):
        load_jsonl(path)


def test_train_and_heldout_splits_are_disjoint() -> None:
    train = reasoning_gym_problems(None, "train", 600, 0)
    for split, seed in [("val", 0), ("test", 0), ("test", 1)]:
        held = reasoning_gym_problems(None, split, 150, seed)
        assert not {normalize_question(p.question) for p in train} & {normalize_question(p.question) for p in held}
        train_templates = {p.metadata["template_id"] for p in train if p.source == "gsm_symbolic"}
        held_templates = {p.metadata["template_id"] for p in held if p.source == "gsm_symbolic"}
        assert held_templates and not train_templates & held_templates
    assert len({p.question for p in train}) == len(train)  # no duplicates inside a split


def test_generator_config_and_weights() -> None:
    problems = reasoning_gym_problems({"chain_sum": {"weight": 3, "max_terms": 2, "max_digits": 2},
                                       "gsm_symbolic": 1}, "train", 40, 0)
    sources = [p.source for p in problems]
    assert sources.count("chain_sum") == 30 and sources.count("gsm_symbolic") == 10
    assert all(p.metadata["num_terms"] == 2 for p in problems if p.source == "chain_sum")


def test_worker_script_needs_no_chordgym_on_path() -> None:
    v = Verifier(timeout_s=10)
    assert v.verify("x + 1", "1 + x").correct  # goes through the worker (not a quick verdict)
    assert sys.executable  # the worker runs with the same interpreter
    v.close()
