"""agents.hf_engine.HFEngine on tiny random models: padding, log-probs, stopping, reproducibility,
finished-row compaction, prefix-cache reuse; plus the vLLM engine's missing-extra error.

``tiny`` is the ``tiny-random`` spec in fp32 (log-prob checks). Its greedy output just repeats "\n", so the
exact-equality checks use ``sharp``: the same architecture with ``initializer_range=0.5`` (peaked,
non-repeating output) in float64, where batching, padding and cache reuse must not change a single token
(in fp32 they change log-probs by ~1e-4 through round-off, which can flip a sampled token).
"""

from __future__ import annotations

import os
import random
import sys

import pytest
import torch

from agents.hf_engine import HFEngine
from agents.models import load_model
from agents.sampling import (
    GenerationEngine,
    RepetitionDetector,
    SamplingParams,
    choose_tokens,
    repeated_window,
)

TOOL_TURN = "\n<|im_start|>tool\n[{{\"name\": \"calc\", \"results\": {}}}]<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def prompts(tiny):
    _, tok = tiny
    return [tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                    return_dict=False)
            for text in ("hi", "what is 2+2? " * 4, "a b c", "tell me about tools " * 9)]


def engine(tiny, **kw) -> HFEngine:
    model, tok = tiny
    return HFEngine(model, tok, **kw)


def teacher_forced_logprobs(model, prompt: list[int], tokens: list[int], temperature: float) -> torch.Tensor:
    """log_softmax(logits / T) at ``tokens`` from one plain fp32 forward over prompt + tokens."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1:-1].float()
    return torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(tokens)[:, None])[:, 0]


def test_choose_tokens_top_p_and_greedy():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)

    def draw(sp: SamplingParams) -> int:
        return int(choose_tokens(logits, sp, torch.rand((1,), generator=g))[0][0])

    assert {draw(SamplingParams(top_p=0.7)) for _ in range(300)} == {0, 1}  # the nucleus of mass 0.7 is {0, 1}
    assert draw(SamplingParams(temperature=0.0, top_p=0.95)) == 0
    assert {draw(SamplingParams(top_p=1.0)) for _ in range(500)} == {0, 1, 2, 3}


def test_repeated_window_and_detector_agree():
    assert repeated_window([1, 2, 3] * 5, 3, 5) and not repeated_window([1, 2, 3] * 5, 3, 6)
    assert repeated_window([7] * 6, 3, 4) and not repeated_window([7] * 5, 3, 4)  # overlapping windows
    assert not repeated_window([1, 2], 3, 1)
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(3) for _ in range(rng.randrange(1, 40))]
        window, count = rng.randrange(1, 5), rng.randrange(1, 5)
        det = RepetitionDetector(window, count)
        fired = next((k + 1 for k, t in enumerate(ids) if det.push(t)), None)
        first = next((k for k in range(1, len(ids) + 1) if repeated_window(ids[:k], window, count)), None)
        assert fired == first


@pytest.mark.parametrize("sp", [SamplingParams(greedy=True, max_new_tokens=10),
                                SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10, seed=7)])
def test_left_padded_batch_equals_single_prompt(sharp, prompts, sp):
    eng = engine(sharp, prefix_cache=False)
    assert len({len(p) for p in prompts}) == len(prompts)  # different lengths -> real left padding
    batch = eng.generate(prompts, sp)
    assert len({tuple(g.token_ids) for g in batch}) == len(prompts)  # not a degenerate repeat
    unbatched = HFEngine(*sharp, prefix_cache=False, max_batch_size=1).generate(prompts, sp)  # one row per batch
    for got, alone in zip(batch, unbatched, strict=True):
        assert got.token_ids == alone.token_ids
        assert got.logprobs == pytest.approx(alone.logprobs, abs=1e-6)
        assert got.finish_reason == "length" and len(got.token_ids) == 10


def test_fp32_batch_greedy_equals_single_prompt(tiny, prompts):
    eng = engine(tiny, prefix_cache=False)
    sp = SamplingParams(greedy=True, max_new_tokens=6)
    for prompt, got in zip(prompts, eng.generate(prompts, sp), strict=True):
        alone = eng.generate([prompt], sp)[0]
        assert got.token_ids == alone.token_ids
        assert got.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9), (1.3, 1.0)])
def test_logprobs_equal_teacher_forced_log_softmax(tiny, prompts, temperature, top_p):
    model, _ = tiny
    gens = engine(tiny, prefix_cache=False).generate(
        prompts, SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=12, seed=5))
    for prompt, gen in zip(prompts, gens, strict=True):
        assert len(gen.logprobs) == len(gen.token_ids) == 12
        ref = teacher_forced_logprobs(model, prompt, gen.token_ids, temperature)
        assert torch.allclose(torch.tensor(gen.logprobs), ref, atol=1e-3)


def test_greedy_logprobs_and_tiny_top_p_match_greedy(sharp, prompts):
    ref_model, _ = sharp
    eng = engine(sharp, prefix_cache=False)
    greedy = eng.generate(prompts, SamplingParams(greedy=True, max_new_tokens=6))
    narrow = eng.generate(prompts, SamplingParams(temperature=1.0, top_p=1e-9, max_new_tokens=6, seed=0))
    assert [g.token_ids for g in greedy] == [g.token_ids for g in narrow]
    ref = teacher_forced_logprobs(ref_model, prompts[0], greedy[0].token_ids, 1.0)
    assert torch.allclose(torch.tensor(greedy[0].logprobs), ref, atol=1e-5)
    for n, g in zip(narrow, greedy, strict=True):
        assert n.logprobs == pytest.approx(g.logprobs, abs=1e-5)  # recorded before top-p truncation


def test_seeded_sampling_is_reproducible(tiny, prompts):
    eng = engine(tiny, prefix_cache=False)
    sp = SamplingParams(temperature=1.0, max_new_tokens=8, seed=123)
    first = eng.generate(prompts, sp)
    again = eng.generate(prompts, sp)
    other = eng.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=8, seed=124))
    assert [g.token_ids for g in first] == [g.token_ids for g in again]
    assert [g.token_ids for g in first] != [g.token_ids for g in other]


def test_eos_ends_row_and_is_kept_with_logprob(sharp, prompts):
    free = engine(sharp, prefix_cache=False).generate(prompts[:1], SamplingParams(greedy=True, max_new_tokens=12))[0]
    eos = free.token_ids[4]
    first = free.token_ids.index(eos)
    got = engine(sharp, prefix_cache=False, eos_token_ids=[eos]).generate(
        prompts[:1], SamplingParams(greedy=True, max_new_tokens=12))[0]
    assert got.finish_reason == "eos"
    assert got.token_ids == free.token_ids[: first + 1] and got.token_ids[-1] == eos
    assert got.logprobs == pytest.approx(free.logprobs[: first + 1], abs=1e-5)


def test_default_eos_is_im_end(tiny):
    eng = engine(tiny)
    assert eng.eos_token_ids == {tiny[1].convert_tokens_to_ids("<|im_end|>")}


def test_stop_token_ids_and_stop_strings(sharp, prompts):
    _, tok = sharp
    eng = engine(sharp, prefix_cache=False)
    free = eng.generate(prompts[:1], SamplingParams(greedy=True, max_new_tokens=12))[0]
    by_id = eng.generate(prompts[:1], SamplingParams(greedy=True, max_new_tokens=12, stop=[free.token_ids[3]]))[0]
    assert by_id.finish_reason == "stop" and by_id.token_ids == free.token_ids[: free.token_ids.index(
        free.token_ids[3]) + 1]
    text = tok.decode(free.token_ids[3:6], skip_special_tokens=False)
    stop = text[len(text) // 2:][:4] or text
    expected = next(k for k in range(1, 13) if stop in tok.decode(free.token_ids[:k], skip_special_tokens=False))
    by_str = eng.generate(prompts[:1], SamplingParams(greedy=True, max_new_tokens=12, stop=(stop,)))[0]
    assert by_str.finish_reason == "stop"
    assert by_str.token_ids == free.token_ids[:expected]  # cut right after the token completing the string
    assert len(by_str.logprobs) == expected


def test_max_new_tokens_respected(tiny, prompts):
    for n in (1, 5):
        gens = engine(tiny).generate(prompts, SamplingParams(max_new_tokens=n, seed=0))
        assert all(len(g.token_ids) == n and g.finish_reason == "length" for g in gens)


def test_finished_rows_are_dropped_and_results_unchanged(sharp, prompts):
    eng = engine(sharp, prefix_cache=False)
    free = eng.generate(prompts, SamplingParams(greedy=True, max_new_tokens=14))
    stops = (free[0].token_ids[1], free[2].token_ids[6])  # rows end at different steps
    sp = SamplingParams(greedy=True, max_new_tokens=14, stop=stops)
    batch = eng.generate(prompts, sp)
    assert eng.stats.compactions > 0
    for prompt, got in zip(prompts, batch, strict=True):
        alone = eng.generate([prompt], sp)[0]
        assert got.token_ids == alone.token_ids and got.finish_reason == alone.finish_reason
        assert got.logprobs == pytest.approx(alone.logprobs, abs=1e-6)
    assert batch[0].finish_reason == "stop" and len(batch[0].token_ids) <= 2


def test_chunks_by_max_batch_size(sharp, prompts):
    sp = SamplingParams(greedy=True, max_new_tokens=5)
    full = engine(sharp, prefix_cache=False).generate(prompts, sp)
    chunked = engine(sharp, prefix_cache=False, max_batch_size=3).generate(prompts, sp)
    assert [g.token_ids for g in full] == [g.token_ids for g in chunked]


def _multi_turn(eng: HFEngine, tok, prompts, turns: int = 3):
    convs = [list(p) for p in prompts]
    outputs = []
    for turn in range(turns):
        gens = eng.generate(convs, SamplingParams(greedy=True, max_new_tokens=6 + 4 * turn,
                                                  stop=(convs[0][-1],)))
        outputs.append(gens)
        for conv, gen in zip(convs, gens, strict=True):
            conv.extend(gen.token_ids)
            conv.extend(tok.encode(TOOL_TURN.format(turn)))
    return outputs


def test_prefix_cache_reuse_equals_fresh_prefill(sharp, prompts):
    _, tok = sharp
    fresh = engine(sharp, prefix_cache=False)
    cached = engine(sharp, prefix_cache=True)
    a = _multi_turn(fresh, tok, prompts)
    b = _multi_turn(cached, tok, prompts)
    for turn_a, turn_b in zip(a, b, strict=True):
        for ga, gb in zip(turn_a, turn_b, strict=True):
            assert ga.token_ids == gb.token_ids and ga.finish_reason == gb.finish_reason
            assert ga.logprobs == pytest.approx(gb.logprobs, abs=1e-6)
    assert cached.stats.reused_tokens > 0 and fresh.stats.reused_tokens == 0
    assert (cached.stats.prefilled_tokens - cached.stats.shared_prefix_tokens + cached.stats.reused_tokens
            == fresh.stats.prefilled_tokens)
    assert cached.stats.prefilled_tokens < fresh.stats.prefilled_tokens / 2


def test_group_prompts_are_prefilled_once(sharp, prompts):
    group = [prompts[1]] * 4 + [prompts[3]] * 3 + [prompts[0]]
    sp = SamplingParams(temperature=1.0, max_new_tokens=6, seed=11)
    fresh = engine(sharp, prefix_cache=False)
    shared = engine(sharp, prefix_cache=True)
    a, b = fresh.generate(group, sp), shared.generate(group, sp)
    for ga, gb in zip(a, b, strict=True):
        assert ga.token_ids == gb.token_ids
        assert ga.logprobs == pytest.approx(gb.logprobs, abs=1e-6)
    assert len({tuple(g.token_ids) for g in b[:4]}) > 1  # the group's samples differ
    # every distinct prompt is prefilled once, its copies share the pass (with or without the prefix store);
    # with the store, the 3 distinct prompts' common prefix (the template's system turn) is computed once
    distinct = len(prompts[1]) + len(prompts[3]) + len(prompts[0])
    assert fresh.stats.prefilled_tokens == distinct
    assert shared.stats.prefilled_tokens == distinct - 2 * shared.stats.shared_prefix_tokens
    assert fresh.stats.prompt_tokens == sum(len(p) for p in group)


def test_prefix_cache_dropped_when_weights_change(prompts):
    model, tok = load_model("tiny-random", dtype="fp32")  # a private copy: this test edits weights
    eng = HFEngine(model, tok, prefix_cache=True)
    sp = SamplingParams(greedy=True, max_new_tokens=4)
    gen = eng.generate(prompts[:2], sp)
    assert len(eng.store) == 2
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.add_(0.05)  # an optimizer step, in place
    follow = [p + g.token_ids + tok.encode(TOOL_TURN.format(1)) for p, g in zip(prompts[:2], gen, strict=True)]
    reused_before, shared_before = eng.stats.reused_tokens, eng.stats.shared_prefix_tokens
    got = eng.generate(follow, sp)
    # stale KV was not used: the only reuse is of the shared prefix computed afresh in this call
    assert eng.stats.reused_tokens - reused_before == 2 * (eng.stats.shared_prefix_tokens - shared_before)
    assert [g.token_ids for g in got] == [g.token_ids for g in HFEngine(model, tok, prefix_cache=False).generate(
        follow, sp)]
    eng.update_weights(model)
    assert len(eng.store) == 0


def test_bf16_autocast_generation_runs(prompts):
    model, tok = load_model("tiny-random", dtype="bf16")
    gens = HFEngine(model, tok).generate(prompts, SamplingParams(temperature=0.8, max_new_tokens=4, seed=0))
    assert all(len(g.token_ids) == 4 and all(lp <= 0 and lp == lp for lp in g.logprobs) for g in gens)


def test_engine_satisfies_protocol_and_validates(tiny):
    assert isinstance(engine(tiny), GenerationEngine)
    assert SamplingParams(stop=["x", 2]).stop == ("x", 2)
    assert SamplingParams(stop="x").stop_strings == ("x",)
    for bad in (dict(temperature=-1), dict(top_p=0), dict(max_new_tokens=0), dict(stop=("",))):
        with pytest.raises(ValueError):
            SamplingParams(**bad)
    with pytest.raises(ValueError, match="at least one token"):
        engine(tiny).generate([[]], SamplingParams())
    assert engine(tiny).generate([], SamplingParams()) == []


def test_vllm_engine_names_the_extra_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    from agents.vllm_engine import VLLMEngine

    with pytest.raises(ImportError, match=r"chordgym\[vllm\]"):
        VLLMEngine("/some/model")


def test_vllm_engine_refuses_the_repetition_stop():
    from agents.vllm_engine import VLLMEngine

    eng = object.__new__(VLLMEngine)  # no vLLM needed: the check comes before any call into it
    with pytest.raises(ValueError, match="repetition stop"):
        eng.generate([[1]], SamplingParams(repeat_window=3, repeat_count=2))


def test_row_seeds_make_a_row_independent_of_its_batch(tiny, prompts):
    """A row named by its own seed samples the same tokens alone, in a batch, or at another position."""
    model, tok = tiny
    sp = dict(temperature=1.0, max_new_tokens=8)
    together = engine(tiny).generate(prompts[:3], SamplingParams(**sp, row_seeds=(11, 22, 33)))
    alone = engine(tiny).generate([prompts[1]], SamplingParams(**sp, row_seeds=(22,)))
    reordered = engine(tiny).generate([prompts[2], prompts[1]], SamplingParams(**sp, row_seeds=(33, 22)))
    assert alone[0].token_ids == together[1].token_ids == reordered[1].token_ids
    assert reordered[0].token_ids == together[2].token_ids
    with pytest.raises(ValueError, match="row_seeds"):
        engine(tiny).generate(prompts[:2], SamplingParams(**sp, row_seeds=(1,)))


def test_shared_prefix_of_distinct_prompts_is_prefilled_once(sharp, prompts):
    """Distinct prompts sharing a system prompt: the shared part is computed once, outputs unchanged."""
    _, tok = sharp
    system = {"role": "system", "content": "You call tools. " * 12}
    convs = [tok.apply_chat_template([system, {"role": "user", "content": q}], add_generation_prompt=True,
                                     tokenize=True, return_dict=False)
             for q in ("first question", "a second, longer question", "third")]
    shared = len(os.path.commonprefix(convs))
    sp = SamplingParams(greedy=True, max_new_tokens=6)
    fresh = engine(sharp, prefix_cache=False)
    cached = engine(sharp, prefix_cache=True)
    for ga, gb in zip(fresh.generate(convs, sp), cached.generate(convs, sp), strict=True):
        assert ga.token_ids == gb.token_ids
        assert ga.logprobs == pytest.approx(gb.logprobs, abs=1e-9)
    assert cached.stats.shared_prefix_tokens == shared >= 16
    assert cached.stats.prefilled_tokens == fresh.stats.prefilled_tokens - 2 * shared


def test_stored_conversation_serves_the_shared_prefix_of_new_prompts(sharp):
    """A stored row that covers the system prompt serves every new prompt of a call: nothing is computed
    twice, no shared prefix is prefilled again, and the outputs equal a fresh prefill's."""
    _, tok = sharp
    system = {"role": "system", "content": "You call tools. " * 12}
    convs = [tok.apply_chat_template([system, {"role": "user", "content": q}], add_generation_prompt=True,
                                     tokenize=True, return_dict=False)
             for q in ("first question", "a second, longer question", "third")]
    sp = SamplingParams(greedy=True, max_new_tokens=6)
    cached = engine(sharp, prefix_cache=True)
    row = convs[0] + cached.generate(convs[:1], sp)[0].token_ids
    follow = [row + tok.encode(TOOL_TURN.format(1)), convs[1], convs[2]]
    before = cached.stats.reused_tokens
    got = cached.generate(follow, sp)
    want = engine(sharp, prefix_cache=False).generate(follow, sp)
    assert [g.token_ids for g in got] == [g.token_ids for g in want]
    for ga, gb in zip(got, want, strict=True):
        assert ga.logprobs == pytest.approx(gb.logprobs, abs=1e-9)
    assert cached.stats.shared_prefix_tokens == 0
    # the stored row lacks its last sampled token's KV (that token was never fed to the model)
    assert cached.stats.reused_tokens - before == len(row) - 1 + sum(
        len(os.path.commonprefix([row, c])) for c in convs[1:])
