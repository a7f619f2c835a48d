"""``trainer.padding_free`` (``algorithms.packed``): a micro-batch's rows packed into one sequence give the same
logits, losses and gradients as the padded / row-by-row pass, and nothing attends across rows."""

from __future__ import annotations

import pytest
import torch

from agents import Trajectory, collate, load_model
from algorithms.chord import StepContext, chord_step, expert_micro_loss, on_policy_micro_loss, preset
from algorithms.forward import completion_logprobs, plan_micro_batches
from algorithms.packed import PACKED_ATTENTION, packed_forward, packed_logprobs


@pytest.fixture(scope="module")
def model():
    m, _ = load_model("tiny-random", dtype="fp32", seed=3)
    return m


def trajectories(specs: list[tuple[int, int]], seed: int = 0) -> list[Trajectory]:
    """Rows of length ``n`` whose tokens from ``first`` on are trainable (``first == n``: none is)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for k, (n, first) in enumerate(specs):
        ids = torch.randint(5, 2000, (n,), generator=gen).tolist()
        mask = [0] * first + [1] * (n - first)
        out.append(Trajectory(ids, mask, [-1.0 if m else 0.0 for m in mask], reward=float(k % 3), group_id=k // 2))
    return out


# rows of different lengths and prompt lengths; the last has no trainable token
MIXED = [(30, 12), (25, 20), (18, 9), (41, 33), (10, 10)]


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                      for p in model.parameters()]).clone()


def test_packed_logits_equal_each_row_run_on_its_own(model):
    batch = collate(trajectories(MIXED[:4]), pad_token_id=0)
    rows = [(b, 3, int(n)) for b, n in enumerate(batch["attention_mask"].sum(1).tolist())]
    logits, targets = packed_forward(model, batch["input_ids"], rows)
    offset = 0
    for b, cut, n in rows:
        alone = model(input_ids=batch["input_ids"][b:b + 1, :n]).logits[0, cut:]
        assert torch.allclose(logits[0, offset:offset + n - cut], alone, atol=1e-5)
        assert torch.equal(targets[0, offset:offset + n - cut], batch["input_ids"][b, cut:n])
        offset += n - cut
    assert logits.shape[1] == offset
    assert model.config._attn_implementation == "sdpa"  # switched for the packed call only


def test_attention_across_rows_would_change_the_logits(model, monkeypatch):
    """The negative control: the same packed call with the row boundaries dropped (one causal pass over the
    whole pack, as a packed sequence through a plain causal kernel would be) changes every row but the first,
    so the equality above rests on the per-row split."""
    import algorithms.packed as packed

    batch = collate(trajectories(MIXED[:3]), pad_token_id=0)
    rows = [(b, 0, int(n)) for b, n in enumerate(batch["attention_mask"].sum(1).tolist())]
    good, _ = packed_forward(model, batch["input_ids"], rows)
    original = packed.packed_sdpa_attention

    def one_row(module, q, k, v, mask, *, packed_lengths=None, **kw):
        return original(module, q, k, v, mask, packed_lengths=(sum(packed_lengths),), **kw)

    monkeypatch.setitem(packed.AttentionInterface._global_mapping, PACKED_ATTENTION, one_row)
    leaked, _ = packed_forward(model, batch["input_ids"], rows)
    first = rows[0][2]
    assert torch.allclose(leaked[0, :first], good[0, :first], atol=1e-5)
    assert (leaked[0, first:] - good[0, first:]).abs().max() > 1e-3


def test_position_ids_restart_at_every_row(model, monkeypatch):
    """RoPE sees each row at positions 0..n-1. (Within a row attention depends only on position differences,
    so a per-row offset would not show in the logits: the ids themselves are checked.)"""
    seen = {}
    forward = type(model).forward

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", spy)
    batch = collate(trajectories([(7, 3), (5, 2), (9, 4)]), pad_token_id=0)
    packed_forward(model, batch["input_ids"], [(0, 2, 7), (1, 1, 5), (2, 3, 9)])
    expected = list(range(7)) + list(range(5)) + list(range(9))
    assert seen["position_ids"].tolist() == [expected]
    assert seen["packed_lengths"] == (7, 5, 9)
    assert seen["logits_to_keep"].tolist() == list(range(2, 7)) + list(range(8, 12)) + list(range(15, 21))


def test_packed_logprobs_equal_the_padded_pass_on_every_trainable_token(model):
    batch = collate(trajectories(MIXED), pad_token_id=0)
    logp, entropy, window = packed_logprobs(model, batch)
    ref_logp, ref_entropy, ref_window = completion_logprobs(model, batch)
    mask, ref_mask = window["loss_mask"].bool(), ref_window["loss_mask"].bool()
    assert mask.sum() == ref_mask.sum() == batch["loss_mask"].sum()
    assert torch.allclose(logp[mask], ref_logp[ref_mask], atol=1e-5)
    assert torch.allclose(entropy[mask], ref_entropy[ref_mask], atol=1e-5)
    assert torch.equal(window["input_ids"][mask], ref_window["input_ids"][ref_mask])
    assert (logp[~mask] == 0).all()  # padding and prompt positions of the window: exactly 0
    assert window["loss_mask"][4].sum() == 0 and window["loss_mask"].shape[1] == max(n - f + 1 for n, f in MIXED[:4])


@pytest.mark.parametrize("algo_name,agg", [("chord_mu", "token-mean"), ("chord_phi", "token-mean"),
                                           ("idft", "token-mean"), ("chord_mu", "seq-mean-token-mean"),
                                           ("chord_mu", "seq-mean-token-sum-norm")])
def test_losses_and_gradients_equal_the_padded_path(model, algo_name, agg):
    """Both terms, packed against padded: losses, metrics and every parameter's gradient to 1e-5 (fp32)."""
    algo = preset(algo_name, loss_agg=agg, entropy_coef=0.01 if algo_name == "idft" else 0.0)
    batch = collate(trajectories(MIXED), pad_token_id=0)
    adv = torch.tensor([1.0, -0.5, 0.25, 0.7, -1.0])
    max_len = 41 if agg == "seq-mean-token-sum-norm" else None
    out = {}
    for padding_free in (False, True):
        model.zero_grad(set_to_none=True)
        pg = on_policy_micro_loss(model, batch, adv, algo, 1.0, False, max_len, padding_free=padding_free)
        pg.loss.backward()
        g_pg = grads(model)
        model.zero_grad(set_to_none=True)
        sft = expert_micro_loss(model, batch, algo, 5, 10, max_len, padding_free=padding_free)
        sft.loss.backward()
        out[padding_free] = (pg, g_pg, sft, grads(model))
    (pg0, g_pg0, sft0, g_sft0), (pg1, g_pg1, sft1, g_sft1) = out[False], out[True]
    assert pg1.loss.item() == pytest.approx(pg0.loss.item(), abs=1e-5)
    assert sft1.loss.item() == pytest.approx(sft0.loss.item(), rel=1e-5, abs=1e-7)
    assert g_pg0.abs().max() > 0 and g_sft0.abs().max() > 0
    assert torch.allclose(g_pg1, g_pg0, atol=1e-5, rtol=1e-5)
    assert torch.allclose(g_sft1, g_sft0, atol=1e-5, rtol=1e-5)
    for new, old in ((pg1.metrics, pg0.metrics), (sft1.metrics, sft0.metrics)):
        assert new.keys() == old.keys()
        assert all(new[k] == pytest.approx(old[k], rel=1e-4, abs=1e-5) for k in old)


def test_a_single_row_and_a_micro_batch_without_trainable_tokens(model):
    algo = preset("chord_mu")
    single = collate(trajectories([(23, 11)]), pad_token_id=0)
    losses = {}
    for padding_free in (False, True):
        model.zero_grad(set_to_none=True)
        out = expert_micro_loss(model, single, algo, 1, 10, None, padding_free=padding_free)
        out.loss.backward()
        losses[padding_free] = (out.loss.item(), grads(model))
    assert losses[True][0] == pytest.approx(losses[False][0], rel=1e-6)
    assert torch.allclose(losses[True][1], losses[False][1], atol=1e-6)

    nothing = collate(trajectories([(12, 12), (9, 9)]), pad_token_id=0)
    model.zero_grad(set_to_none=True)
    out = on_policy_micro_loss(model, nothing, torch.tensor([1.0, -1.0]), algo, 1.0, False, None, padding_free=True)
    assert out.loss.item() == 0.0
    out.loss.backward()  # a zero loss with a graph: DeepSpeed's backward (and ZeRO's reduction) still runs
    assert grads(model).abs().max() == 0


def test_the_planner_caps_packed_micro_batches_by_the_sum_of_lengths():
    lengths = [1913, 600, 700, 1500, 300, 1100, 40]
    plan = plan_micro_batches(lengths, 16, 2048, packed=True)
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 2048 for b in plan)
    assert plan == [[0, 6], [3, 4], [5, 2], [1]]  # longest first, each into the first micro-batch it fits
    # padded, the same rows need rows x longest <= 2048: more, emptier micro-batches
    assert len(plan_micro_batches(lengths, 16, 2048)) == 5
    assert plan_micro_batches([100] * 20, 16, 2048, packed=True) == [list(range(16)), list(range(16, 20))]
    assert plan_micro_batches([3000, 10], 16, 2048, packed=True) == [[0], [1]]  # a row over the cap runs alone


def test_chord_step_packed_equals_chord_step_padded():
    """The whole step (planner, micro-batches, both terms, weights): the same gradient either way."""
    from tests.test_chord import _Engine

    grads_by_mode = {}
    for padding_free in (False, True):
        model, _ = load_model("tiny-random", dtype="fp32", seed=3)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        on_policy = trajectories([(20, 8), (18, 9), (22, 10), (16, 6)])
        expert = trajectories([(24, 12), (19, 7), (15, 5)], seed=1)
        ctx = StepContext(engine=_Engine(model), micro_batch_size=4, micro_batch_tokens=48, temperature=1.0,
                          use_sampler_logprobs=False, dtype="fp32", padding_free=padding_free)
        result = chord_step(ctx, preset("chord_phi"), on_policy, expert, 0.3, step=1, total_steps=10)
        grads_by_mode[padding_free] = (grads(model), result.metrics)
    (g0, m0), (g1, m1) = grads_by_mode[False], grads_by_mode[True]
    assert g0.abs().max() > 0
    assert torch.allclose(g1, g0, atol=1e-5, rtol=1e-5)
    assert m1["loss/total"] == pytest.approx(m0["loss/total"], abs=1e-6)


def test_the_kl_term_scores_the_reference_packed_too(model):
    """kl_coef > 0: the frozen reference runs the same packed pass; loss, KL metric and gradient as padded."""
    import copy

    reference = copy.deepcopy(model).requires_grad_(False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel() % 89)))
    algo = preset("grpo", kl_coef=0.1)
    batch = collate(trajectories(MIXED), pad_token_id=0)
    adv = torch.tensor([1.0, -0.5, 0.25, 0.7, -1.0])
    out = {}
    try:
        for padding_free in (False, True):
            model.zero_grad(set_to_none=True)
            pg = on_policy_micro_loss(model, batch, adv, algo, 1.0, False, None, ref_model=reference,
                                      padding_free=padding_free)
            pg.loss.backward()
            out[padding_free] = (pg.loss.item(), pg.metrics["grpo/kl"], grads(model))
    finally:
        with torch.no_grad():
            for p, q in zip(model.parameters(), reference.parameters(), strict=True):
                p.copy_(q)
    assert out[False][1] > 0
    assert out[True][0] == pytest.approx(out[False][0], abs=1e-6)
    assert out[True][1] == pytest.approx(out[False][1], rel=1e-4)
    assert torch.allclose(out[True][2], out[False][2], atol=1e-5, rtol=1e-5)


def test_a_model_without_attention_interface_is_refused_naming_the_key(model) -> None:
    """Packing is the default: a model whose attention does not go through transformers' AttentionInterface is
    refused (the trainer does it at start-up) with the key that turns it off."""
    from algorithms.packed import require_attention_interface

    assert require_attention_interface(model) is model

    class Legacy(torch.nn.Module):
        config = model.config
        _supports_attention_backend = False

    with pytest.raises(ValueError, match="set trainer.padding_free=false"):
        require_attention_interface(Legacy())
