"""Hinted Decoding (algorithms.hinted, decoded by agents.HFEngine with per-row hints) and the realign
pipeline (algorithms.realign, played through agents.rollout) on tiny-random, fp32.

The reference everywhere is a naive sampler: one full forward of the unpadded sequence per token (no KV
cache, no batch), ``log_softmax``, ``choose_tokens`` with one uniform of a fresh generator per token.
Hinted Decoding must reproduce it exactly where the method reduces to plain sampling (beta = 0; identical
streams; after the switch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from agents.chat_render import ChatRenderer
from agents.hf_engine import HFEngine
from agents.models import load_model, tiny_random_model
from agents.sampling import Generation, choose_tokens, repeated_window
from algorithms.hinted import (
    HintedParams,
    HintedStream,
    Marker,
    boxed_marker,
    call_list_marker,
    hint_messages,
    mix_logprobs,
)
from algorithms.realign import RealignConfig, realign
from algorithms.realigned import load_realigned, write_realigned
from envs.base import ChatEnv


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One CPU thread: the machine is shared, and two threads oversubscribe it badly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_model("tiny-random", dtype="fp32")
    return model, tokenizer, ChatRenderer(tokenizer)


def _conv(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}]


def naive_sample(model: Any, prompt: Sequence[int], n: int, seed: int, params: HintedParams,
                 eos: Sequence[int] = (), skip_draws: int = 0) -> list[int]:
    """Plain sampling by full recompute; ``skip_draws`` advances the generator first."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(skip_draws):
        torch.rand((), generator=g)
    ids, out = list(prompt), []
    for _ in range(n):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        u = torch.rand((), generator=g)
        tok = int(choose_tokens(torch.log_softmax(logits, -1)[None], params.sampling(), u[None])[0][0])
        out.append(tok)
        ids.append(tok)
        if tok in eos:
            break
    return out


# ----------------------------------------------------------------------------------------------- formulas


def test_mix_logprobs_formula():
    logp_p = torch.log_softmax(torch.tensor([[2.0, 0.0, -1.0, 0.5]]), -1)
    logp_q = torch.log_softmax(torch.tensor([[0.0, 1.0, 0.0, 0.0]]), -1)
    mixed, lam = mix_logprobs(logp_p, logp_q, beta=1.5)
    h = -(logp_p.exp() * logp_p).sum()
    expect_lam = min(1.0, 1.5 * float(h) / torch.log(torch.tensor(4.0)).item())
    assert lam.item() == pytest.approx(expect_lam, rel=1e-6)
    assert torch.allclose(mixed, logp_p * (1 - expect_lam) + logp_q * expect_lam, atol=1e-6)
    mixed0, lam0 = mix_logprobs(logp_p, logp_q, beta=0.0)
    assert lam0.item() == 0.0 and torch.equal(mixed0, logp_p)
    _, lam_big = mix_logprobs(logp_p, logp_q, beta=100.0)
    assert lam_big.item() == 1.0
    # -inf in q (a masked token) must not turn into NaN when lam = 0
    q_inf = logp_q.clone()
    q_inf[0, 2] = float("-inf")
    assert torch.isfinite(mix_logprobs(logp_p, q_inf, 0.0)[0]).all()


def test_markers():
    assert boxed_marker("so the answer is \\boxed{4") and not boxed_marker("boxed 4")
    assert call_list_marker('[get_weather(city="Paris")]') and call_list_marker("Sure.\n[a.b (x=1)")
    assert not call_list_marker("a list [1, 2] of numbers") and not call_list_marker("[")


def test_hint_messages_keep_env_prompt():
    conv = _conv("What is 2+2?")
    hinted = hint_messages(conv, "2+2=4, \\boxed{4}", instruction="INSTR")
    assert hinted[0]["content"].startswith("Answer briefly.") and hinted[0]["content"].endswith("INSTR")
    assert hinted[1]["content"].startswith("What is 2+2?") and hinted[1]["content"].endswith("\\boxed{4}")
    assert conv[1]["content"] == "What is 2+2?"  # the student's conversation is untouched
    assert hint_messages(conv[1:], "r", instruction="I")[0] == {"role": "system", "content": "I"}
    with pytest.raises(ValueError):
        hint_messages(conv + [{"role": "assistant", "content": "x"}], "r")


# ----------------------------------------------------------------------------------------------- decoding


def hinted_decode(model: Any, tokenizer: Any, student: Sequence[Sequence[int]],
                  hinted: Sequence[Sequence[int]] | None, seeds: Sequence[int], params: HintedParams,
                  marker: str | Marker | None = None, eos_ids: Sequence[int] = ()
                  ) -> tuple[list[Generation], list[HintedStream | None]]:
    """One reply per problem, student row ``student[i]`` hinted by ``hinted[i]`` (plain sampling when
    ``hinted`` is None), as ``algorithms.realign`` decodes a turn; the generations and the hint traces."""
    engine = HFEngine(model, tokenizer, dtype="fp32", prefix_cache=False, eos_token_ids=eos_ids)
    hints: list[HintedStream | None] = [None] * len(student) if hinted is None else [
        HintedStream(list(p), beta=params.beta, marker=marker) for p in hinted]
    sampling = dataclasses.replace(params.sampling(), row_seeds=tuple(seeds))
    return engine.generate([list(p) for p in student], sampling, hints=hints), hints


# ----------------------------------------------------------------------------------------------- equivalences


class _LogitsHook(torch.nn.Module):
    """Wraps a model and edits its logits: ``edit(logits, step)`` returns the new logits, where ``step`` is 0
    for prefill calls (prompts) and k for the k-th one-token decode step."""

    def __init__(self, inner: Any, edit: Any):
        super().__init__()
        self.inner, self.edit, self.steps = inner, edit, 0

    @property
    def config(self) -> Any:
        return self.inner.config

    def forward(self, **kwargs: Any) -> Any:
        out = self.inner(**kwargs)
        is_step = kwargs["input_ids"].shape[1] == 1 and kwargs.get("past_key_values") is not None
        self.steps += int(is_step)
        out.logits = self.edit(out.logits, self.steps if is_step else 0)
        return out


def _forced(model: Any, token: int, start: int) -> _LogitsHook:
    """From decode step ``start`` on (prefill = step 0), ``token`` is overwhelmingly likely."""
    def edit(logits: torch.Tensor, call: int) -> torch.Tensor:
        if call >= start:
            logits[..., token] += 1e4
        return logits
    return _LogitsHook(model, edit)


def _sharpened(model: Any, live: int = 300, scale: float = 10.0) -> _LogitsHook:
    """tiny-random's next-token distribution is nearly uniform over 49k tokens, so a sampled token depends
    on float rounding (near-ties in the nucleus). This keeps ``live`` tokens, spreads their logits by
    ``scale`` and pushes the rest down by 60: a well-conditioned, still random, distribution."""
    bias = torch.full((model.config.vocab_size,), -60.0)
    bias[torch.randperm(model.config.vocab_size, generator=torch.Generator().manual_seed(0))[:live]] = 0.0
    return _LogitsHook(model, lambda logits, call: logits * scale + bias)




def test_beta_zero_samples_the_hinted_stream(tiny):
    model, tokenizer, renderer = tiny
    model = _sharpened(model)
    params = HintedParams(beta=0.0, max_new_tokens=24)
    convs = [_conv("What is 2+3?"), _conv("Name a colour.")]
    student = [renderer.render_prompt(c) for c in convs]
    hinted = [renderer.render_prompt(hint_messages(c, ref)) for c, ref in zip(convs, ["\\boxed{5}", "Blue."], strict=True)]
    out, streams = hinted_decode(model, tokenizer, student, hinted, [11, 12], params, eos_ids=[])
    for sample, stream, prompt, seed in zip(out, streams, hinted, [11, 12], strict=True):
        assert sample.token_ids == naive_sample(model, prompt, 24, seed, params)
        assert sample.finish_reason == "length" and stream.switch_pos is None
        assert stream.lams == [0.0] * 23  # every step after the first is mixed, with lam = 0


def test_identical_streams_equal_plain_sampling(tiny):
    model, tokenizer, renderer = tiny
    model = _sharpened(model)
    params = HintedParams(beta=1.0, max_new_tokens=24)
    prompts = [renderer.render_prompt(_conv("Tell me a joke.")), renderer.render_prompt(_conv("Hi"))]
    out, streams = hinted_decode(model, tokenizer, prompts, prompts, [5, 6], params, eos_ids=[])
    plain, _ = hinted_decode(model, tokenizer, prompts, None, [5, 6], params, eos_ids=[])
    for sample, stream, own, prompt, seed in zip(out, streams, plain, prompts, [5, 6], strict=True):
        assert sample.token_ids == naive_sample(model, prompt, 24, seed, params) == own.token_ids
        assert len(stream.lams) == 23 and all(0.0 < lam <= 1.0 for lam in stream.lams)
        # the recorded log-probs are the student's own (T = 0.3), as for any sampled row
        assert sample.logprobs == pytest.approx(own.logprobs, abs=1e-4)


def test_switch_to_student_at_marker(tiny):
    model, tokenizer, renderer = tiny
    model = _sharpened(model)
    params = HintedParams(beta=1.0, max_new_tokens=20)
    conv = _conv("What is 2+3?")
    student = renderer.render_prompt(conv)
    hinted = renderer.render_prompt(hint_messages(conv, "2+3 = 5"))
    seen: list[str] = []

    def marker(text: str) -> bool:  # fires once six tokens' worth of text exists
        seen.append(text)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= 6 or len(seen) >= 6

    [sample], [stream] = hinted_decode(model, tokenizer, [student], [hinted], [3], params, marker=marker, eos_ids=[])
    k = stream.switch_pos
    assert k is not None and 1 <= k <= 6 and len(seen) == k  # checked after every token until it fired
    assert len(stream.lams) == k - 1  # mixed steps: after the first token, up to the switch
    # after the switch: plain sampling from q given the prefix, the generator advanced k draws
    rest = naive_sample(model, student + sample.token_ids[:k], 20 - k, 3, params, skip_draws=k)
    assert sample.token_ids[k:] == rest
    # without a marker the same seed keeps mixing, so the tails differ
    [mixed], [mixed_stream] = hinted_decode(model, tokenizer, [student], [hinted], [3], params, eos_ids=[])
    assert mixed.token_ids[:k] == sample.token_ids[:k] and mixed_stream.switch_pos is None


def test_hinted_row_is_independent_of_its_batch(tiny):
    """A hinted row samples the same tokens alone, next to plain rows and other hinted rows, and at another
    position of the batch (its own seed; the hint rows draw nothing); float64, so no padding round-off."""
    _, tokenizer, renderer = tiny
    model = tiny_random_model(tokenizer, seed=0, dtype=torch.float64, initializer_range=0.5).eval()
    params = HintedParams(beta=1.0, max_new_tokens=10)
    convs = [_conv("What is 2+3?"), _conv("Name a colour, any colour you like."), _conv("Hi")]
    student = [renderer.render_prompt(c) for c in convs]
    hinted = [renderer.render_prompt(hint_messages(c, f"Reference {i}.")) for i, c in enumerate(convs)]
    [alone], [alone_stream] = hinted_decode(model, tokenizer, [student[0]], [hinted[0]], [7], params)
    engine = HFEngine(model, tokenizer, prefix_cache=False, eos_token_ids=[])
    streams = [None, HintedStream(hinted[2]), HintedStream(hinted[0])]
    batch = engine.generate([student[1], student[2], student[0]],
                            dataclasses.replace(params.sampling(), row_seeds=(8, 9, 7)), hints=streams)
    assert batch[2].token_ids == alone.token_ids and streams[2].lams == alone_stream.lams
    assert batch[2].logprobs == pytest.approx(alone.logprobs, abs=1e-9)
    assert len(set(map(tuple, (g.token_ids for g in batch)))) == 3


# ----------------------------------------------------------------------------------------------- stop rules


def test_stop_rules(tiny):
    model, tokenizer, renderer = tiny
    prompt = renderer.render_prompt(_conv("Hello"))
    hinted = renderer.render_prompt(hint_messages(_conv("Hello"), "Hi there!"))
    eot = renderer.eot_id
    # EOS at the 4th token (prefill = call 0 gives token 1); it stays in token_ids (agents.rollout leaves it
    # out of the text it hands to the environment)
    [s], _ = hinted_decode(_forced(model, eot, 3), tokenizer, [prompt], [hinted], [0], HintedParams(max_new_tokens=50),
                           eos_ids=[eot])
    assert s.finish_reason == "eos" and len(s.token_ids) == 4 and s.token_ids[-1] == eot
    # length cap
    [s], _ = hinted_decode(model, tokenizer, [prompt], [hinted], [0], HintedParams(max_new_tokens=7), eos_ids=[])
    assert s.finish_reason == "length" and len(s.token_ids) == 7
    # repetition: a constant token from the 2nd step: the 3-token window (t, t, t) is seen twice at length 5
    t = tokenizer("x", add_special_tokens=False)["input_ids"][0]
    params = HintedParams(max_new_tokens=50, repeat_window=3, repeat_count=2)
    for hints in (None, [hinted]):
        [s], _ = hinted_decode(_forced(model, t, 1), tokenizer, [prompt], hints, [0], params, eos_ids=[eot])
        assert s.finish_reason == "repetition" and s.token_ids[1:] == [t] * 4
        assert repeated_window(s.token_ids, 3, 2) and not repeated_window(s.token_ids[:-1], 3, 2)
    # rows stop independently in one batch
    out, _ = hinted_decode(model, tokenizer, [prompt, prompt], [hinted, hinted], [0, 1], HintedParams(max_new_tokens=5),
                           eos_ids=[])
    assert [len(o.token_ids) for o in out] == [5, 5]


# ----------------------------------------------------------------------------------------------- acceptance


class _EchoEnv(ChatEnv):
    """Tasks ``index`` with an expert; ``turns`` assistant turns (a tool message between them); the reward
    of the last turn is ``verify(text)``."""

    def __init__(self, verify: Any, turns: int = 1):
        super().__init__(max_turns=turns)
        self.verify, self.turns, self.texts = verify, turns, []

    def __len__(self) -> int:
        return 10

    def _reset_task(self, options: dict[str, Any]) -> tuple[list[dict[str, str]], dict[str, Any]]:
        i = int(options["index"])
        self.texts = []
        expert: list[dict[str, str]] = []
        for k in range(self.turns):
            if k:
                expert.append({"role": "tool", "content": f"result {k}"})
            expert.append({"role": "assistant", "content": f"answer {i}.{k}"})
        info: dict[str, Any] = {"index": i} if i == 3 else {"index": i, "expert": expert}
        return _conv(f"Question {i}?"), info

    def _step_turn(self, text: str) -> tuple[list[dict[str, str]], float, bool, dict[str, Any]]:
        self.texts.append(text)
        if len(self.texts) < self.turns:
            return [{"role": "tool", "content": f"result {len(self.texts)}"}], 0.0, False, {}
        return [], float(self.verify(text)), True, {}


def test_realign_keeps_only_verified(tiny, tmp_path):
    model, tokenizer, _ = tiny
    cfg = RealignConfig(params=HintedParams(max_new_tokens=6), marker=None, batch_size=2, measure_cll=True)
    records, report = realign(model, tokenizer, lambda: _EchoEnv(lambda text: 0.0), [0, 1, 2, 3], cfg)
    assert records == [] and report["accepted"] == 0 and report["attempted"] == 3
    assert report["skipped_no_expert"] == 1 and report["sources"] == {"rejected": 3}
    assert report["cll"]["original_all"]["sequences"] == 3 and report["cll"]["rewritten_accepted"]["sequences"] == 0

    # reward 0.5 is not the maximum: still rejected
    records, report = realign(model, tokenizer, lambda: _EchoEnv(lambda text: 0.5), [0, 1], cfg)
    assert records == [] and report["acceptance_rate"] == 0.0

    # fallback keeps the original expert episode, marked as such
    cfg_fb = RealignConfig(params=HintedParams(max_new_tokens=6), marker=None, batch_size=2, fallback_to_original=True)
    records, _ = realign(model, tokenizer, lambda: _EchoEnv(lambda text: 0.0), [0], cfg_fb)
    assert [r["source"] for r in records] == ["original"] and records[0]["expert"] == records[0]["original_expert"]


def test_realign_multi_turn_accepts_and_round_trips(tiny, tmp_path):
    model, tokenizer, _ = tiny
    cfg = RealignConfig(params=HintedParams(max_new_tokens=6), marker=None, batch_size=3, seed=1)
    records, report = realign(model, tokenizer, lambda: _EchoEnv(lambda text: 1.0, turns=2), [0, 1, 2], cfg)
    assert report["accepted"] == 3 and report["acceptance_rate"] == 1.0 and report["sources"] == {"hinted": 3}
    for r in records:
        roles = [m["role"] for m in r["expert"]]
        assert roles == ["assistant", "tool", "assistant"] and r["expert"][1]["content"] == "result 1"
        assert r["expert"] != r["original_expert"] and len(r["turns"]) == 2 and r["reward"] == 1.0
        assert r["cll_rewritten"]["count"] > 0
    assert report["cll"]["rewritten_accepted"]["sequences"] == 3 and report["hinted_turns"]["turns"] == 6
    assert report["generation"]["tokens"] == 36
    # same seed, same records
    again, _ = realign(model, tokenizer, lambda: _EchoEnv(lambda text: 1.0, turns=2), [0, 1, 2], cfg)
    assert [r["expert"] for r in again] == [r["expert"] for r in records]

    path = tmp_path / "realigned.jsonl"
    write_realigned(path, records)
    pairs = load_realigned(path)
    assert [p[0] for p in pairs] == [r["opening"] for r in records]
    assert [p[1] for p in pairs] == [r["expert"] for r in records]
    assert load_realigned(path, sources=["self"]) == []


def test_self_rollout_first(tiny):
    model, tokenizer, _ = tiny
    cfg = RealignConfig(params=HintedParams(max_new_tokens=5), marker=None, batch_size=2, self_rollout_first=True,
                        measure_cll=False)
    records, report = realign(model, tokenizer, lambda: _EchoEnv(lambda text: 1.0), [0, 1], cfg)
    assert report["sources"] == {"self": 2} and all(r["turns"][0]["mode"] == "self" for r in records)
    # the model's own rollout fails -> hinted decoding; here the verifier fails everything
    records, report = realign(model, tokenizer, lambda: _EchoEnv(lambda text: 0.0), [0, 1], cfg)
    assert records == [] and report["sources"] == {"rejected": 2} and report["hinted_turns"]["turns"] == 2
