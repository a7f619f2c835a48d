"""Token-exactness of multi-turn rollouts on the tiny random model.

The checks below are independent of the rollout code: the expected text is built by hand from ChatML, the
masked spans are read off ``loss_mask`` (not ``turn_spans``), and the log-probs are recomputed with a plain
fp32 forward pass. ``test_checks_catch_a_one_token_shift`` shows that each check fails when the mask (or
the log-probs with it) is shifted by one token.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch

from agents import (
    ChatRenderer,
    Generation,
    HFEngine,
    SamplingParams,
    Trajectory,
    expert_trajectory,
    gather_token_logprobs,
    group_rollout,
    load_model,
    rollout,
    rollout_with_stats,
)
from envs import ChatEnv

EOT_TEXT = "<|im_end|>"
EOT_BIAS = 8.0  # added to <|im_end|>'s logit: the tiny random model then ends a turn at ~5% per token


# ----------------------------------------------------------------------------------------- test env
class EchoToolEnv(ChatEnv):
    """Three turns: a tool result echoing the assistant's text, a user follow-up, then the end (reward 1).

    Non-ASCII text in every role, and the expert continuation in ``info["expert"]`` like ToolACE's.
    """

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.index = 0

    def _reset_task(self, options: dict[str, Any]) -> tuple[list[dict[str, str]], dict[str, Any]]:
        self.index = int(options.get("index", 0))
        i = self.index
        messages = [
            {"role": "system", "content": f"You are agent #{i}. Tools: echo(text: str)."},
            {"role": "user", "content": f"Echo 'héllo wörld {i}' then tell me 日本 {i}."},
        ]
        call = f'[echo(text="héllo wörld {i}")]'
        expert = [
            {"role": "assistant", "content": call},
            {"role": "tool", "content": self.echo(call)},
            {"role": "assistant", "content": f"It said: héllo wörld {i}."},
            {"role": "user", "content": "Thanks! And 日本?"},
            {"role": "assistant", "content": "Japan.\n\nDone."},
        ]
        return messages, {"task_id": f"echo-{i}", "expert": expert}

    @staticmethod
    def echo(text: str) -> str:
        return json.dumps([{"name": "echo", "results": {"text": text[:30]}}])

    def _step_turn(self, assistant_text: str) -> tuple[list[dict[str, str]], float, bool, dict[str, Any]]:
        if self.turn == 1:
            return [{"role": "tool", "content": self.echo(assistant_text)}], 0.25, False, {}
        if self.turn == 2:
            return [{"role": "user", "content": "Thanks! And 日本?"}], 0.0, False, {}
        return [], 1.0, True, {"solved": True}


class ScriptedEngine:
    """Returns given token sequences turn by turn (the real engine cannot be made to emit a chosen
    non-canonical tokenisation); used only where a test needs exact control of the sampled tokens."""

    def __init__(self, script: list[list[int]]):
        self.script = script
        self.calls = 0

    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Generation]:
        ids = self.script[self.calls]
        self.calls += 1
        out = []
        for _ in prompts:
            toks = ids[:sampling.max_new_tokens]
            finish = "stop" if toks and toks[-1] in sampling.stop else "length"
            out.append(Generation(token_ids=list(toks), logprobs=[-1.0] * len(toks), finish_reason=finish))
        return out


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_model("tiny-random", dtype="fp32")
    eot = tokenizer.convert_tokens_to_ids(EOT_TEXT)

    def bias_eot(module, inputs, output):
        output = output.clone()
        output[..., eot] += EOT_BIAS
        return output

    model.lm_head.register_forward_hook(bias_eot)
    return model, tokenizer


@pytest.fixture(scope="module")
def engine(tiny):
    model, tokenizer = tiny
    return HFEngine(model, tokenizer)


@pytest.fixture(scope="module")
def renderer(tiny):
    return ChatRenderer(tiny[1])


def sampling(**kw: Any) -> SamplingParams:
    base = dict(temperature=1.0, top_p=1.0, max_new_tokens=12, stop=None, greedy=False, seed=1234)
    base.update(kw)
    return SamplingParams(**base)


@pytest.fixture(scope="module")
def sampled(tiny, engine):
    """8 episodes of EchoToolEnv (3 turns each, unless cut), sampled at T=0.9."""
    envs = [EchoToolEnv() for _ in range(8)]
    trajs, stats = rollout_with_stats(
        envs, engine, tiny[1], sampling=sampling(temperature=0.9),
        reset_kwargs=[{"options": {"index": i % 4}} for i in range(8)], group_ids=[i % 4 for i in range(8)])
    return trajs, stats


# ----------------------------------------------------------------------------------------- checks
def chatml_text(messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    """ChatML written out by hand (SmolLM2's template), independent of the renderer under test."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if generation_prompt else "")


def masked_runs(mask: list[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for t, m in enumerate([*mask, 0]):
        if m and start is None:
            start = t
        elif not m and start is not None:
            runs.append((start, t))
            start = None
    return runs


def decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def check_text_and_mask(traj: Trajectory, tokenizer: Any) -> None:
    """The mask covers exactly each assistant message's tokens + <|im_end|> (or, for a turn cut by length,
    its tokens, followed by an unmasked <|im_end|>), right after an unmasked generation prompt."""
    messages = traj.info["messages"]
    generation_prompt = not traj.turn_spans  # only an episode cut before its first turn ends with the prompt
    assert decode(tokenizer, traj.input_ids) == chatml_text(messages, generation_prompt)
    runs = masked_runs(traj.loss_mask)
    assert runs == [tuple(s) for s in traj.turn_spans]
    contents = [m["content"] for m in messages if m["role"] == "assistant"]
    assert len(runs) == len(contents)
    gen_prompt = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    eot = tokenizer.convert_tokens_to_ids(EOT_TEXT)
    for (start, end), content, finish in zip(runs, contents, traj.info["finish_reasons"], strict=True):
        assert traj.input_ids[start - len(gen_prompt):start] == gen_prompt
        span_text = decode(tokenizer, traj.input_ids[start:end])
        if traj.input_ids[end - 1] == eot:
            assert span_text == content + EOT_TEXT
        else:  # cut by length: the end-of-turn token is the environment's
            assert finish == "length"
            assert span_text == content
            assert traj.input_ids[end] == eot and traj.loss_mask[end] == 0
    assert all(lp == 0.0 for lp, m in zip(traj.logprobs, traj.loss_mask, strict=True) if not m)


def check_logprobs(traj: Trajectory, model: Any, temperature: float, atol: float = 1e-3) -> None:
    """A plain fp32 forward over the trajectory gives the sampler's log-probs at every masked position."""
    ids = torch.tensor([traj.input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    recomputed = gather_token_logprobs(logits, ids, temperature)[0]
    mask = torch.tensor(traj.loss_mask, dtype=torch.bool)
    old = torch.tensor(traj.logprobs)
    assert mask.any()
    diff = (recomputed[mask] - old[mask]).abs().max().item()
    assert diff < atol, f"max |logprob diff| = {diff}"


def check_render(traj: Trajectory, renderer: ChatRenderer) -> None:
    """ids == the template's rendering of the final conversation, or every difference is counted and explained."""
    full = renderer.render(traj.info["messages"])
    if traj.info["render_mismatch"] == 0:
        assert traj.input_ids == full
        assert traj.info["render_match"]
        return
    for d in traj.info["render_mismatch_detail"]:
        assert d["reason"] in {"non_canonical_tokenization", "template_changes_text", "foreign_stop_token",
                               "template_boundary_merge"}
        assert d["sampled"] != d["canonical"]
        start, end = traj.turn_spans[d["turn"]]
        assert traj.input_ids[start:end] == d["sampled"][:end - start]  # the sampled tokens were kept


# ----------------------------------------------------------------------------------------- tests
def test_sampled_episodes_are_token_exact(tiny, renderer, sampled):
    model, tokenizer = tiny
    trajs, stats = sampled
    assert len(trajs) == 8 and stats.turns == sum(len(t.turn_spans) for t in trajs)
    finish = [f for t in trajs for f in t.info["finish_reasons"]]
    assert {"eos", "length"} <= set(finish), finish  # both turn endings are exercised
    for t in trajs:
        t.validate()
        assert len(t.turn_spans) == 3 and t.info["terminated"] and t.info["truncation"] is None
        assert t.reward == pytest.approx(1.25)
        assert t.input_ids[:t.prompt_len] == renderer.render_prompt(t.info["messages"][:2])
        check_text_and_mask(t, tokenizer)
        check_render(t, renderer)
    assert stats.render_mismatch_turns == sum(t.info["render_mismatch"] for t in trajs)
    assert stats.generated_tokens == sum(t.num_generated for t in trajs)


def test_logprobs_match_a_forward_pass(tiny, sampled):
    model, _ = tiny
    for t in sampled[0]:
        check_logprobs(t, model, temperature=0.9)


def test_checks_catch_a_one_token_shift(tiny, sampled):
    model, tokenizer = tiny
    traj = next(t for t in sampled[0] if t.num_generated > 6)
    for shift in (1, -1):
        def roll(xs, fill, shift=shift):
            return [fill] * shift + xs[:-shift] if shift > 0 else xs[-shift:] + [fill] * -shift
        mask, lps = roll(traj.loss_mask, 0), roll(traj.logprobs, 0.0)
        spans = masked_runs(mask)
        shifted = dataclasses.replace(traj, loss_mask=mask, logprobs=lps, turn_spans=spans)
        with pytest.raises(AssertionError):
            check_text_and_mask(shifted, tokenizer)
        with pytest.raises(AssertionError):
            check_logprobs(shifted, model, temperature=0.9)
        # the mask alone shifted (log-probs left in place) is caught by the log-prob check too
        only_mask = dataclasses.replace(traj, loss_mask=mask, logprobs=[lp if m else 0.0 for lp, m in zip(
            traj.logprobs, mask, strict=True)], turn_spans=spans)
        with pytest.raises(AssertionError):
            check_logprobs(only_mask, model, temperature=0.9)


def test_group_rollout_groups_and_orders(tiny, engine):
    trajs, stats = group_rollout(EchoToolEnv, [3, 5], 2, engine, tiny[1], sampling=sampling(max_new_tokens=6))
    assert [t.group_id for t in trajs] == [3, 3, 5, 5]
    assert [t.info["task_id"] for t in trajs] == ["echo-3", "echo-3", "echo-5", "echo-5"]
    assert trajs[0].input_ids[:trajs[0].prompt_len] == trajs[1].input_ids[:trajs[1].prompt_len]
    assert stats.generate_calls == 3  # one batched call per turn


def test_turn_cap_truncates(tiny, engine):
    envs = [EchoToolEnv() for _ in range(3)]
    trajs, stats = rollout_with_stats(envs, engine, tiny[1], sampling=sampling(), max_turns=1)
    for t in trajs:
        assert len(t.turn_spans) == 1 and t.info["truncation"] == "max_turns"
        assert t.info["messages"][-1]["role"] == "tool"  # the env's answer to the last turn is kept
        check_text_and_mask(t, tiny[1])
    assert stats.truncated == {"max_turns": 3} and stats.generate_calls == 1


def test_env_turn_cap_is_reported(tiny, engine):
    trajs = rollout([EchoToolEnv(max_turns=2)], engine, tiny[1], sampling=sampling())
    assert trajs[0].info["truncation"] == "env" and len(trajs[0].turn_spans) == 2


def test_per_turn_budget_cuts_and_closes_turns(tiny, engine, renderer):
    trajs, stats = rollout_with_stats([EchoToolEnv() for _ in range(4)], engine, tiny[1],
                                      sampling=sampling(max_new_tokens=50), max_tokens_per_turn=3)
    eot = renderer.eot_id
    for t in trajs:
        for (s, e), finish in zip(t.turn_spans, t.info["finish_reasons"], strict=True):
            assert e - s <= 3
            if finish == "length":
                assert t.input_ids[e - 1] != eot and t.input_ids[e] == eot and t.loss_mask[e] == 0
        check_text_and_mask(t, tiny[1])
        check_render(t, renderer)
    assert stats.length_cut_turns == sum(f == "length" for t in trajs for f in t.info["finish_reasons"]) > 0


def test_episode_token_cap(tiny, engine, renderer):
    env = EchoToolEnv()
    prompt_len = len(renderer.render_prompt(env.reset(options={"index": 0})[0]))
    cap = prompt_len + 20
    trajs, stats = rollout_with_stats([EchoToolEnv() for _ in range(4)], engine, tiny[1],
                                      sampling=sampling(max_new_tokens=12), max_episode_tokens=cap)
    for t in trajs:
        assert t.num_generated <= 20
        last_start, last_end = t.turn_spans[-1]
        assert last_start < cap and last_end <= cap  # generation never runs past the cap
        assert t.info["truncation"] in ("max_episode_tokens", None)
        check_text_and_mask(t, tiny[1])
    assert stats.truncated.get("max_episode_tokens", 0) >= 1


def test_prompt_longer_than_cap_gives_an_empty_episode(tiny, engine, renderer):
    trajs = rollout([EchoToolEnv()], engine, tiny[1], sampling=sampling(), max_episode_tokens=5)
    t = trajs[0]
    assert t.turn_spans == [] and t.num_generated == 0 and t.info["truncation"] == "max_episode_tokens"
    assert t.input_ids == renderer.render_prompt(t.info["messages"]) and t.info["render_match"]


def test_a_prompt_past_the_engines_context_ends_only_its_episode(tiny, engine, renderer):
    """vLLM refuses a prompt as long as its ``max_model_len`` (BFCL's live_multiple has prompts of 6,247 and
    7,382 tokens); the rollout ends that episode (reward 0, failure ``context_length``) without calling the
    engine on it, cuts the others where their context is full, and the batch goes on."""
    class Padded(EchoToolEnv):
        def _reset_task(self, options):
            messages, info = super()._reset_task(options)
            messages[0]["content"] += " filler" * int(options.get("pad", 0))
            return messages, info

    context = len(renderer.render_prompt(Padded().reset(options={"index": 0})[0])) + 30

    class Strict:
        """HFEngine under VLLMEngine's contract: every prompt shorter than ``max_context``."""
        max_context = context

        def generate(self, prompts, sampling, **kw):
            if any(len(p) >= context for p in prompts):
                raise ValueError(f"prompt does not fit max_model_len={context}")
            return engine.generate(prompts, sampling, **kw)

    trajs, stats = rollout_with_stats([Padded(), Padded()], Strict(), tiny[1], sampling=sampling(),
                                      reset_kwargs=[{"options": {"index": 0}}, {"options": {"index": 1, "pad": 40}}])
    fits, too_long = trajs
    assert too_long.num_generated == 0 and too_long.reward == 0.0 and too_long.turn_spans == []
    assert too_long.info["truncation"] == too_long.info["failure"] == "context_length"
    assert too_long.input_ids == renderer.render_prompt(too_long.info["messages"])
    # the other episode played its first turn, then the tool's reply filled its context
    assert fits.num_generated > 0 and fits.turn_spans[-1][1] <= context and fits.reward == 0.25
    assert fits.info["truncation"] == fits.info["failure"] == "context_length"
    check_text_and_mask(fits, tiny[1])
    assert stats.truncated == {"context_length": 2}
    assert engine.max_context == tiny[0].config.max_position_embeddings


def test_env_exception_ends_that_episode_only(tiny, engine, capsys):
    """An environment that raises on a reply ends that episode with reward 0 and its cause; the other
    episodes of the batch, and the run, go on."""
    class Broken(EchoToolEnv):
        def _step_turn(self, assistant_text):
            raise KeyError("bug in the env")

    trajs, stats = rollout_with_stats([EchoToolEnv(), Broken()], engine, tiny[1], sampling=sampling())
    assert trajs[1].reward == 0.0 and trajs[1].info["failure"] == "env_error"
    assert "KeyError" in trajs[1].info["env_error"] and "bug in the env" in trajs[1].info["env_error"]
    assert trajs[1].num_generated > 0 and "failure" not in trajs[0].info
    assert stats.env_errors == 1 and "warning: env.step raised" in capsys.readouterr().err


def test_non_canonical_tokenisation_is_counted_not_retokenised(tiny, renderer):
    tokenizer = tiny[1]
    hello = tokenizer("hello", add_special_tokens=False)["input_ids"]
    split = tokenizer("he", add_special_tokens=False)["input_ids"] + tokenizer("llo", add_special_tokens=False)["input_ids"]
    assert split != hello and decode(tokenizer, split) == "hello"
    eot = renderer.eot_id
    engine = ScriptedEngine([split + [eot], hello + [eot], hello + [eot]])
    trajs, stats = rollout_with_stats([EchoToolEnv()], engine, tokenizer, sampling=sampling())
    t = trajs[0]
    s, e = t.turn_spans[0]
    assert t.input_ids[s:e] == split + [eot]  # kept as sampled
    assert t.info["render_mismatch"] == 1 and not t.info["render_match"]
    assert t.info["render_mismatch_detail"][0]["reason"] == "non_canonical_tokenization"
    assert t.info["render_mismatch_detail"][0]["turn"] == 0
    assert stats.render_mismatch_turns == 1 and stats.render_mismatch_episodes == 1
    check_text_and_mask(t, tokenizer)


def test_expert_trajectory_masks_exactly_the_assistant_turns(tiny, renderer):
    tokenizer = tiny[1]
    env = EchoToolEnv()
    opening, info = env.reset(options={"index": 2})
    t = expert_trajectory(opening, info["expert"], tokenizer, group_id=2)
    t.validate()
    assert t.is_expert and t.group_id == 2 and all(lp == 0.0 for lp in t.logprobs)
    assert t.input_ids == renderer.render(opening + info["expert"])
    assert len(t.turn_spans) == 3
    check_text_and_mask(dataclasses.replace(t, info={**t.info, "finish_reasons": ["stop"] * 3}), tokenizer)


def test_expert_equals_a_rollout_that_samples_the_expert_tokens(tiny, renderer):
    """A model that samples exactly the expert's canonical tokens yields the expert trajectory."""
    tokenizer = tiny[1]
    env = EchoToolEnv()
    opening, info = env.reset(options={"index": 1})
    expert = expert_trajectory(opening, info["expert"], tokenizer)
    script = [expert.input_ids[s:e] for s, e in expert.turn_spans]
    trajs = rollout([EchoToolEnv()], ScriptedEngine(script), tokenizer, sampling=sampling(max_new_tokens=64),
                    reset_kwargs=[{"options": {"index": 1}}])
    assert trajs[0].input_ids == expert.input_ids
    assert trajs[0].loss_mask == expert.loss_mask
    assert trajs[0].info["render_mismatch"] == 0


def test_foreign_stop_id_is_kept_closed_and_counted(tiny, renderer):
    """A turn that ends on a caller's stop id (not <|im_end|>) keeps it as sampled, gets <|im_end|> from the
    environment side, and is counted as a mismatch."""
    tokenizer = tiny[1]
    other = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    hello = tokenizer("hello", add_special_tokens=False)["input_ids"]
    engine = ScriptedEngine([hello + [other], hello + [renderer.eot_id], hello + [renderer.eot_id]])
    trajs = rollout([EchoToolEnv()], engine, tokenizer, sampling=sampling(stop=(other,)))
    t = trajs[0]
    s, e = t.turn_spans[0]
    assert t.input_ids[s:e] == hello + [other] and t.input_ids[e] == renderer.eot_id and t.loss_mask[e] == 0
    assert t.info["messages"][2]["content"] == "hello"
    assert [d["reason"] for d in t.info["render_mismatch_detail"]] == ["foreign_stop_token"]


def test_turn_caps_per_episode(tiny, engine):
    trajs = rollout([EchoToolEnv() for _ in range(3)], engine, tiny[1], sampling=sampling(), max_turns=[1, 2, None])
    assert [len(t.turn_spans) for t in trajs] == [1, 2, 3]
    assert [t.info["truncation"] for t in trajs] == ["max_turns", "max_turns", None] and trajs[2].info["terminated"]
    with pytest.raises(ValueError, match="max_turns"):
        rollout([EchoToolEnv()], engine, tiny[1], sampling=sampling(), max_turns=[1, 2])


class HintedScript(ScriptedEngine):
    """A scripted engine that takes per-row hints (records them) and reports every turn as cut by the
    repetition stop."""

    def __init__(self, script: list[list[int]]):
        super().__init__(script)
        self.hints: list[list[Any]] = []

    def generate(self, prompts: list[list[int]], sampling: SamplingParams, hints: Any = None) -> list[Generation]:
        self.hints.append(list(hints))
        return [dataclasses.replace(g, finish_reason="repetition") for g in super().generate(prompts, sampling)]


def test_hints_are_asked_per_turn_and_a_repetition_cut_is_a_length_cut(tiny, renderer):
    """``hints(i, turn, conversation)`` is asked for every live episode's next turn and its answer reaches the
    engine row by row; a turn cut by the repetition stop is closed like one cut by the budget, and the
    environment hears ``finish_reason="length"``."""
    tokenizer = tiny[1]
    hello = tokenizer("hello", add_special_tokens=False)["input_ids"]
    engine = HintedScript([hello, hello])
    asked: list[tuple[int, int, list[str]]] = []

    def hints(i: int, turn: int, conversation: list[dict[str, Any]]) -> Any:
        asked.append((i, turn, [m["role"] for m in conversation]))
        return None if i == 0 else f"hint {i}.{turn}"

    envs = [EchoToolEnv(), EchoToolEnv()]
    trajs, stats = rollout_with_stats(envs, engine, tokenizer, sampling=sampling(), max_turns=2, hints=hints)
    opening = ["system", "user"]
    assert asked == [(0, 0, opening), (1, 0, opening), (0, 1, opening + ["assistant", "tool"]),
                     (1, 1, opening + ["assistant", "tool"])]
    assert engine.hints == [[None, "hint 1.0"], [None, "hint 1.1"]]
    for t, env in zip(trajs, envs, strict=True):
        assert t.info["finish_reasons"] == ["repetition", "repetition"] and env.finish_reason == "length"
        for s, e in t.turn_spans:
            assert t.input_ids[s:e] == hello and t.input_ids[e] == renderer.eot_id and t.loss_mask[e] == 0
        assert [m["content"] for m in t.info["messages"] if m["role"] == "assistant"] == ["hello", "hello"]
        assert t.info["render_match"]
    assert stats.length_cut_turns == 4


# ----------------------------------------------------------------------------------------- ToolACE
class PerPromptScript:
    """Scripted engine over several episodes: row ``i`` of every call gets ``scripts[episode][turn]``.
    Rows are matched to episodes by their prompt prefix (the opening prompt of each episode)."""

    def __init__(self, prefixes: list[list[int]], scripts: list[list[list[int]]]):
        self.prefixes, self.scripts = prefixes, scripts
        self.turn = [0] * len(scripts)

    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Generation]:
        out = []
        for p in prompts:
            e = next(k for k, pre in enumerate(self.prefixes) if p[:len(pre)] == pre)
            toks = self.scripts[e][self.turn[e]]
            self.turn[e] += 1
            out.append(Generation(token_ids=list(toks), logprobs=[-1.0] * len(toks), finish_reason="eos"))
        return out


TOOLACE_INDICES = list(range(12))


@pytest.fixture(scope="module")
def toolace_tasks():
    import envs

    env = envs.make("toolace", split="train")
    return [env.reset(options={"index": i}) for i in TOOLACE_INDICES]


def test_toolace_expert_trajectories(tiny, renderer, toolace_tasks):
    tokenizer = tiny[1]
    for i, (opening, info) in zip(TOOLACE_INDICES, toolace_tasks, strict=True):
        t = expert_trajectory(opening, info["expert"], tokenizer, group_id=i)
        t.validate()
        assert t.input_ids == renderer.render(opening + info["expert"])
        n_assistant = sum(m["role"] == "assistant" for m in info["expert"])
        check_text_and_mask(dataclasses.replace(t, info={**t.info, "finish_reasons": ["eos"] * n_assistant}),
                            tokenizer)


def test_toolace_replaying_the_expert_tokens_reproduces_the_expert(tiny, renderer, toolace_tasks):
    """Sampling exactly the expert's tokens through the real ToolACEEnv gives the expert's trajectory
    token for token (same tool results, same deltas) and the full reward."""
    import envs

    tokenizer = tiny[1]
    experts = [expert_trajectory(opening, info["expert"], tokenizer) for opening, info in toolace_tasks]
    prefixes = [renderer.render_prompt(opening) for opening, _ in toolace_tasks]
    scripts = [[e.input_ids[s:end] for s, end in e.turn_spans] for e in experts]
    engine = PerPromptScript(prefixes, scripts)
    trajs, stats = rollout_with_stats(
        [envs.make("toolace", split="train") for _ in TOOLACE_INDICES], engine, tokenizer,
        sampling=sampling(max_new_tokens=512), reset_kwargs=[{"options": {"index": i}} for i in TOOLACE_INDICES])
    for t, e in zip(trajs, experts, strict=True):
        assert t.input_ids == e.input_ids and t.loss_mask == e.loss_mask
        assert t.info["messages"] == e.info["messages"]
        assert t.info["terminated"] and t.reward == pytest.approx(1.0)
    assert stats.render_mismatch_turns == 0


def test_toolace_sampled_rollout_is_token_exact(tiny, engine, renderer):
    import envs

    model, tokenizer = tiny
    trajs, stats = group_rollout(lambda: envs.make("toolace", split="train"), [0, 7], 2, engine, tokenizer,
                                 sampling=sampling(max_new_tokens=10), max_turns=2)
    assert [t.group_id for t in trajs] == [0, 0, 7, 7] and stats.generate_calls <= 2
    for t in trajs:
        check_text_and_mask(t, tokenizer)
        check_render(t, renderer)
        check_logprobs(t, model, temperature=1.0)
