"""tools.call_grammar: the call-list grammar (what it admits and refuses, and that whatever it admits parses and
validates), the engine's rejection sampler, and guided generation/rollouts on a tiny random model."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import torch

import envs
from agents import HFEngine, SamplingParams
from agents.rollout import rollout
from agents.sampling import admissible_token
from tests.helpers import REPO
from tools.call_grammar import CallConstraint, CallGrammar
from tools.calls import ToolCall, parse_pythonic
from tools.catalog import World, build_catalog

TOOLS = ["get_top_scorers", "compare_teams", "get_weather_now", "find_free_slots", "add_to_cart"]


@pytest.fixture(scope="module")
def toolset():
    return build_catalog(World(0)).subset(TOOLS)


@pytest.fixture(scope="module")
def grammar(toolset):
    return CallGrammar(toolset.schemas("toolace"))


def admitted(grammar: CallGrammar, text: str, mode: str = "auto") -> tuple[bool, bool]:
    """(is ``text`` a prefix the grammar admits, may the turn end after it)."""
    c = CallConstraint(grammar, mode)  # type: ignore[arg-type]
    if not c.accepts(text):
        return False, False
    c.advance(text)
    return True, c.can_end()


@pytest.mark.parametrize("text, ok, can_end", [
    ("[get_top_scorers(league='nba')]", True, True),
    ('[get_top_scorers(league="serie_a", limit=2)]', True, True),
    ("  [ get_top_scorers( league = 'nba' ) ]\n", True, True),
    ("[get_top_scorers(league='nba'", True, False),  # unfinished: the turn may not end here
    ("[get_top_scorers(league='NBA')]", False, False),  # enum values as written in the schema only
    ("[get_top_scorers(league='Premier League')]", False, False),
    ("[get_top_scorers(limit=2)]", False, False),  # ')' before the required league
    ("[get_top_scorers(league='nba', top_n=2)]", False, False),  # not a parameter of the tool
    ("[get_top_scorers(league='nba', league='nba')]", False, False),  # a parameter twice
    ("[get_top_scorers(league='nba', limit='2')]", False, False),  # integer written as a string
    ("[get_top_scorers(league='nba', limit=2.5)]", False, False),
    ("[get_top_scorer(league='nba')]", False, False),  # not an offered tool
    ("[get_league_standings(", False, False),  # a real tool, not offered in this turn
    ("[compare_teams(team_a='Roma', team_b=\"Lazio\"), get_weather_now(city='Paris')]", True, True),
    ("[compare_teams(team_a=Roma)]", False, False),  # a string must be quoted
    ("[get_weather_now(city='Paris')] and more", False, False),  # nothing after the list
    ("[add_to_cart(product_id='P-1', quantity=2)]", True, True),
    ("[]", False, False),
    ("I need the league first.", True, True),  # prose is not guided in auto mode
])
def test_grammar_admits_exactly_offered_calls(grammar, text, ok, can_end) -> None:
    assert admitted(grammar, text) == (ok, can_end)


def test_required_mode_refuses_prose_and_an_empty_turn(grammar) -> None:
    assert admitted(grammar, "I need the league first.", "required") == (False, False)
    c = CallConstraint(grammar, "required")
    assert not c.can_end() and c.accepts("  [")
    assert CallConstraint(grammar, "auto").can_end()
    with pytest.raises(ValueError, match="mode"):
        CallConstraint(grammar, "always")  # type: ignore[arg-type]


def test_values_of_any_type_are_balanced_literals() -> None:
    grammar = CallGrammar([{"name": "f", "parameters": {"type": "dict", "properties": {
        "xs": {"type": "array", "items": {"type": "integer"}}, "m": {"type": "dict"}, "b": {"type": "boolean"},
        "s": {"type": "string"}}, "required": ["xs"]}}])
    assert admitted(grammar, "[f(xs=[1, [2, 3]], m={'a': (1, ')')}, b=True, s='it\\'s')]") == (True, True)
    assert admitted(grammar, "[f(xs=[1, 2)]")[0] is False  # ')' does not close '['
    assert admitted(grammar, "[f(xs=[1], b=true)]")[0] is False  # Python booleans only
    assert admitted(grammar, "[f(xs=, b=True)]")[0] is False  # a value may not be empty


def test_bad_schemas_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one tool"):
        CallGrammar([])
    with pytest.raises(ValueError, match="without a name"):
        CallGrammar([{"parameters": {}}])


def _random_admitted_text(grammar: CallGrammar, rng: random.Random, alphabet: str) -> str | None:
    """A random walk through the grammar, one admitted character at a time, until it may end."""
    c = CallConstraint(grammar, "required")
    text = ""
    for _ in range(400):
        if c.can_end() and c.in_call_list and rng.random() < 0.5:
            return text
        choices = [ch for ch in alphabet if c.accepts(ch)]
        if not choices:  # only the end of the turn is left (after ']' and the most whitespace allowed)
            assert c.can_end(), text
            return text
        # prefer structure over endless string content, so that walks finish
        structural = [ch for ch in choices if ch in "'\",)]=("] or choices
        ch = rng.choice(structural if rng.random() < 0.4 else choices)
        c.advance(ch)
        text += ch
    return None


def test_everything_the_grammar_admits_parses_and_validates(grammar, toolset) -> None:
    alphabet = "".join(sorted(set("".join(TOOLS) + "abcdefghijklmnopqrstuvwxyz_0123456789'\"[](){}=,.-\\ ")))
    rng = random.Random(0)
    finished = 0
    for _ in range(300):
        text = _random_admitted_text(grammar, rng, alphabet)
        if text is None:
            continue
        finished += 1
        calls = parse_pythonic(text)
        assert calls, text
        for call in calls:
            assert call.name in TOOLS
            assert toolset.validate(ToolCall(call.name, call.arguments)) is None, text
    assert finished >= 100


# -- the engine ---------------------------------------------------------------------------------------------


def test_admissible_token_greedy_takes_the_best_admissible_one() -> None:
    logits = torch.tensor([5.0, 4.0, 3.0, 2.0])
    assert admissible_token(logits, SamplingParams(greedy=True), None, lambda t: t in (2, 3)) == 2
    with pytest.raises(RuntimeError, match="no token"):
        admissible_token(logits, SamplingParams(greedy=True), None, lambda t: False)


def test_admissible_token_sampling_draws_from_the_renormalised_admissible_mass() -> None:
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    gen = torch.Generator().manual_seed(0)
    draws = [admissible_token(logits, SamplingParams(temperature=1.0), gen, lambda t: t != 0) for _ in range(3000)]
    assert set(draws) == {1, 2}
    assert draws.count(1) / len(draws) == pytest.approx(2 / 3, abs=0.03)


def _prompt(tok, text: str) -> list[int]:
    return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                   return_dict=False)


@pytest.mark.parametrize("sampling", [SamplingParams(greedy=True, max_new_tokens=48),
                                      SamplingParams(temperature=1.0, max_new_tokens=48, seed=3)])
def test_required_generation_is_a_valid_call_prefix_with_policy_logprobs(tiny, grammar, toolset, sampling) -> None:
    model, tok = tiny
    engine = HFEngine(model, tok, prefix_cache=False)
    prompts = [_prompt(tok, "hi"), _prompt(tok, "weather in Paris? " * 3)]
    constraints = [CallConstraint(grammar, "required") for _ in prompts]
    gens = engine.generate(prompts, sampling, constraints=constraints)
    assert engine.stats.guided_tokens == sum(len(g.token_ids) for g in gens)
    assert 0 < engine.stats.guided_replaced <= engine.stats.guided_tokens  # a random model needs steering
    for prompt, gen, c in zip(prompts, gens, constraints, strict=True):
        body = [t for t in gen.token_ids if t not in engine.eos_token_ids]
        text = tok.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        fresh = CallConstraint(grammar, "required")
        assert fresh.accepts(text) and c.in_call_list  # every sampled token kept the text admissible
        if gen.finish_reason == "eos":
            fresh.advance(text)
            assert fresh.can_end()
            for call in parse_pythonic(text):
                assert toolset.validate(ToolCall(call.name, call.arguments)) is None
        # the recorded log-probs are the policy's own (unmasked) ones, as the trainer recomputes them
        with torch.no_grad():
            logits = model(torch.tensor([prompt + gen.token_ids])).logits[0, len(prompt) - 1:-1]
        expected = torch.log_softmax(logits / sampling.logprob_temperature, -1).gather(
            -1, torch.tensor(gen.token_ids)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(gen.logprobs), expected, atol=1e-4)


def test_auto_mode_leaves_a_plain_text_reply_unchanged(sharp, grammar) -> None:
    model, tok = sharp
    engine = HFEngine(model, tok, prefix_cache=False)
    prompts = [_prompt(tok, "hi"), _prompt(tok, "tell me a story")]
    sampling = SamplingParams(greedy=True, max_new_tokens=16)
    free = engine.generate(prompts, sampling)
    assert not any(tok.decode(g.token_ids).lstrip().startswith("[") for g in free)
    guided = engine.generate(prompts, sampling, constraints=[CallConstraint(grammar, "auto"), None])
    assert [g.token_ids for g in guided] == [g.token_ids for g in free]


def test_constraints_must_match_the_prompts(tiny, grammar) -> None:
    model, tok = tiny
    with pytest.raises(ValueError, match="constraints"):
        HFEngine(model, tok).generate([_prompt(tok, "hi")], SamplingParams(max_new_tokens=2), constraints=[])


def test_guided_toolace_rollout_makes_only_schema_valid_calls(tiny) -> None:
    """``required`` through the real ToolACE env: every finished call list names offered tools and parameters
    and passes validation (no unknown tool/parameter, no enum or type error)."""
    model, tok = tiny
    engine = HFEngine(model, tok)
    env_list = [envs.make("toolace", split="test") for _ in range(2)]
    trajectories = rollout(env_list, engine, tok, sampling=SamplingParams(temperature=1.0, max_new_tokens=40, seed=0),
                           reset_kwargs=[{"options": {"index": i}} for i in range(2)], max_turns=2,
                           guided_calls="required")
    catalog = build_catalog(World(0))

    def grammar_of(names: list[str]) -> CallGrammar:
        return CallGrammar(catalog.subset(names).schemas("toolace"))

    for traj in trajectories:
        offered = set(traj.info["tools"])
        replies = [m["content"] for m in traj.info["messages"] if m["role"] == "assistant"]
        for reply, reason in zip(replies, traj.info["finish_reasons"], strict=True):
            # the random model never starts a call list by itself; guided, every reply is one (the env's
            # offered tools reached the engine), cut by the budget or complete and valid
            assert reply.lstrip().startswith("[") and CallConstraint(grammar_of(traj.info["tools"]),
                                                                     "required").accepts(reply)
            if reason != "length":
                assert {call.name for call in parse_pythonic(reply)} <= offered
    with pytest.raises(ValueError, match="guided_calls"):
        rollout(env_list[:1], engine, tok, sampling=SamplingParams(max_new_tokens=2), guided_calls="always")


def test_evaluate_rejects_a_bad_guided_calls_value(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "agents.evaluate", "model=tiny", "suites=[toolace]",
                           "guided_calls=always", f"out_dir={tmp_path}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "guided_calls" in proc.stderr


def test_keyword_named_parameters_are_guided_and_parse() -> None:
    """Real APIs name parameters ``from``, ``class``, ``in``: the grammar lets the model write ``from=`` and the
    pythonic parser reads it back (Python's grammar alone would refuse it)."""
    grammar = CallGrammar([{"name": "convert", "parameters": {"type": "dict", "properties": {
        "from": {"type": "string"}, "to": {"type": "string", "enum": ["EUR", "USD"]}, "in": {"type": "boolean"},
        "class": {"type": "integer"}, "amount": {"type": "number"}}, "required": ["from", "to"]}}])
    text = "[convert(from='USD', to='EUR', in=True, class=2, amount=3.5)]"
    assert admitted(grammar, text) == (True, True)
    assert parse_pythonic(text) == [ToolCall("convert", {"from": "USD", "to": "EUR", "in": True, "class": 2,
                                                         "amount": 3.5})]
    assert admitted(grammar, "[convert(to='EUR')]")[0] is False  # 'from' is required
    assert admitted(grammar, "[convert(fro='USD'")[0] is False
    rng = random.Random(1)
    alphabet = "".join(sorted(set("[convert(from='USD', to='EUR', in=True, class=-2, amount=3.5)]\" \n")))
    walks = [_random_admitted_text(grammar, rng, alphabet) for _ in range(100)]
    finished = [w for w in walks if w is not None]
    assert len(finished) >= 30
    for text in finished:
        calls = parse_pythonic(text)
        assert calls and all(c.name == "convert" and {"from", "to"} <= set(c.arguments) for c in calls), text
    assert any("class=" in text or "in=" in text for text in finished)  # keywords after the first argument too
