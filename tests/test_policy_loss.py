"""Clipped GRPO loss, aggregation modes, KL / entropy options, and the token log-prob convention."""

import math

import pytest
import torch

from algorithms.logprobs import token_logprobs_and_entropy
from algorithms.losses import AGG_MODES, aggregate, clipped_policy_loss, kl_k3, truncated_is_weight

# ----------------------------------------------------------------------------- clipped loss, one token


@pytest.mark.parametrize(
    "adv, ratio, loss, grad",
    [
        # A > 0 inside the range: -min(1.1 * 1, 1.1 * 1) = -1.1; d/dlogp (-rho A) = -rho A = -1.1
        (1.0, 1.1, -1.1, -1.1),
        # A > 0 above 1 + eps: -min(1.5, 1.2) = -1.2 (clipped branch, no gradient)
        (1.0, 1.5, -1.2, 0.0),
        # A > 0 below 1 - eps: -min(0.5, 0.8) = -0.5 (the unclipped branch is the pessimistic one)
        (1.0, 0.5, -0.5, -0.5),
        # A < 0 below 1 - eps: -min(-0.5, -0.8) = 0.8 (clipped, no gradient)
        (-1.0, 0.5, 0.8, 0.0),
        # A < 0 above 1 + eps: -min(-1.5, -1.2) = 1.5 (unclipped, gradient -rho A = 1.5)
        (-1.0, 1.5, 1.5, 1.5),
        # A < 0 inside: 0.9
        (-1.0, 0.9, 0.9, 0.9),
        # A = 2 inside: -2 * 1.1 = -2.2, grad -2.2
        (2.0, 1.1, -2.2, -2.2),
    ],
)
def test_clipped_loss_single_token(adv, ratio, loss, grad):
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    out, _ = clipped_policy_loss(logp, torch.zeros(1, 1), torch.tensor([adv]), torch.ones(1, 1))
    out.backward()
    assert out.item() == pytest.approx(loss, abs=1e-6)
    assert logp.grad.item() == pytest.approx(grad, abs=1e-6)


@pytest.mark.parametrize(
    "adv, ratio, loss",
    [
        # A < 0, rho = 5: PPO loss max(5, 1.2) = 5, dual clip min(5, -3 * -1) = 3
        (-1.0, 5.0, 3.0),
        # A < 0, rho = 1.5: min(1.5, 3) = 1.5 unchanged
        (-1.0, 1.5, 1.5),
        # A > 0 is never dual-clipped: rho = 5 -> -1.2
        (1.0, 5.0, -1.2),
        # A = -0.5, rho = 10: max(5, 0.6) = 5 -> min(5, 1.5) = 1.5
        (-0.5, 10.0, 1.5),
    ],
)
def test_dual_clip(adv, ratio, loss):
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    out, metrics = clipped_policy_loss(
        logp, torch.zeros(1, 1), torch.tensor([adv]), torch.ones(1, 1), dual_clip=3.0
    )
    assert out.item() == pytest.approx(loss, abs=1e-5)
    assert metrics["dual_clip_frac"].item() == float(adv < 0 and ratio * -adv > 3 * -adv)


def test_metrics_and_per_token_advantages():
    # six tokens of the table above in one row; token-mean of the losses:
    # (-1.1 - 1.2 - 0.5 + 0.8 + 1.5 + 0.9) / 6 = 0.4 / 6 = 0.0666667
    ratios = torch.tensor([[1.1, 1.5, 0.5, 0.5, 1.5, 0.9]])
    adv = torch.tensor([[1.0, 1.0, 1.0, -1.0, -1.0, -1.0]])
    loss, m = clipped_policy_loss(ratios.log(), torch.zeros(1, 6), adv, torch.ones(1, 6))
    assert loss.item() == pytest.approx(0.4 / 6, abs=1e-6)
    assert m["clip_frac"].item() == pytest.approx(2 / 6)  # tokens 2 and 4
    assert m["ratio_mean"].item() == pytest.approx((1.1 + 1.5 + 0.5 + 0.5 + 1.5 + 0.9) / 6)  # 1.0
    expected_kl = sum((r - 1) - math.log(r) for r in ratios[0].tolist()) / 6
    assert m["approx_kl"].item() == pytest.approx(expected_kl, abs=1e-6)
    assert m["ratio_max"].item() == pytest.approx(1.5)


def test_sequence_advantage_broadcasts_like_token_advantage():
    logp = torch.randn(3, 5)
    old = logp + 0.1 * torch.randn(3, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0]])
    adv = torch.tensor([0.5, -1.0, 2.0])
    a, _ = clipped_policy_loss(logp, old, adv, mask)
    b, _ = clipped_policy_loss(logp, old, adv[:, None].expand(3, 5), mask)
    torch.testing.assert_close(a, b)


def test_on_policy_ratio_is_one_and_log_ratio_clamped():
    # rho = 1 when old = sg(current): loss = -token-mean(A) = -(1 * 2 + -3 * 1) / 3 = 1/3
    logp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, m = clipped_policy_loss(logp, logp.detach(), torch.tensor([1.0, -3.0]), mask)
    assert loss.item() == pytest.approx(1 / 3)
    assert m["ratio_mean"].item() == 1.0 and m["clip_frac"].item() == 0.0
    # log ratio 50 is clamped to 20: rho = e^20 (finite), A < 0 unclipped loss = e^20
    big, _ = clipped_policy_loss(torch.tensor([[50.0]]), torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1))
    assert big.item() == pytest.approx(math.exp(20), rel=1e-5)


def test_truncated_is_weight_is_the_capped_probability_ratio():
    old = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    sampler = torch.log(torch.tensor([[0.5, 0.4, 0.1]]))
    w = truncated_is_weight(old, sampler, cap=2.0)
    assert w.tolist()[0] == pytest.approx([1.0, 0.5, 2.0])  # 0.9 / 0.1 = 9 is truncated at the cap
    with pytest.raises(ValueError):
        truncated_is_weight(old, sampler, cap=0.0)


def test_is_weight_scales_each_tokens_surrogate_and_its_gradient():
    """w_t multiplies pg_t (and so its gradient); a weight of one changes nothing."""
    logp = torch.log(torch.tensor([[0.5, 0.2, 0.9]])).requires_grad_()
    mask = torch.ones(1, 3)
    adv = torch.tensor([1.0])
    plain, _ = clipped_policy_loss(logp, logp.detach(), adv, mask)
    (g_plain,) = torch.autograd.grad(plain, logp)
    ones, _ = clipped_policy_loss(logp, logp.detach(), adv, mask, is_weight=torch.ones(1, 3))
    w = torch.tensor([[1.0, 0.5, 2.0]])
    weighted, _ = clipped_policy_loss(logp, logp.detach(), adv, mask, is_weight=w)
    (g_weighted,) = torch.autograd.grad(weighted, logp)
    assert ones.item() == pytest.approx(plain.item())
    assert weighted.item() == pytest.approx(plain.item() * w.mean().item())  # rho = 1: pg_t = -A per token
    assert torch.allclose(g_weighted, g_plain * w)


def test_kl_and_entropy_terms():
    # k3 with ref - logp = ln 2: e^{ln 2} - ln 2 - 1 = 2 - 0.693147 - 1 = 0.306853
    assert kl_k3(torch.tensor(0.0), torch.tensor(math.log(2))).item() == pytest.approx(0.306853, abs=1e-6)
    logp = torch.zeros(1, 1)
    mask = torch.ones(1, 1)
    adv = torch.tensor([1.0])
    base, _ = clipped_policy_loss(logp, logp, adv, mask)  # -1
    with_kl, m = clipped_policy_loss(logp, logp, adv, mask, ref_logp=torch.full((1, 1), math.log(2)), kl_coef=0.1)
    assert with_kl.item() == pytest.approx(-1 + 0.1 * 0.306853, abs=1e-6)
    assert m["kl"].item() == pytest.approx(0.306853, abs=1e-6)
    with_ent, _ = clipped_policy_loss(logp, logp, adv, mask, entropy=torch.full((1, 1), 2.0), entropy_coef=0.01)
    assert with_ent.item() == pytest.approx(base.item() - 0.02)
    with pytest.raises(ValueError):
        clipped_policy_loss(logp, logp, adv, mask, kl_coef=0.1)


# ----------------------------------------------------------------------------- aggregation

# row 0 keeps 1, 2, 3 (sum 6, n 3); row 1 keeps 5, 6 (sum 11, n 2); row 2 is empty (ignored by seq modes)
LOSS = torch.tensor([[1.0, 2.0, 3.0, math.inf], [5.0, 6.0, math.nan, 0.0], [7.0, 0.0, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize(
    "mode, max_len, expected",
    [
        ("token-mean", None, 17 / 5),  # (6 + 11) / 5 = 3.4
        ("seq-mean-token-mean", None, (6 / 3 + 11 / 2) / 2),  # (2 + 5.5) / 2 = 3.75
        ("seq-mean-token-sum", None, (6 + 11) / 2),  # 8.5
        ("seq-mean-token-sum-norm", 10, (6 / 10 + 11 / 10) / 2),  # 0.85
        ("seq-mean-token-sum-norm", None, (6 / 4 + 11 / 4) / 2),  # max_len defaults to T = 4: 2.125
    ],
)
def test_aggregation_modes(mode, max_len, expected):
    loss = LOSS.clone().requires_grad_(True)
    out = aggregate(loss, MASK, mode, max_len)
    out.backward()
    assert out.item() == pytest.approx(expected)
    assert torch.isfinite(loss.grad).all()
    assert (loss.grad[~MASK.bool()] == 0).all()


@pytest.mark.parametrize("mode", AGG_MODES)
def test_empty_mask_gives_zero_with_grad(mode):
    loss = torch.randn(2, 3, requires_grad=True)
    out = aggregate(loss, torch.zeros(2, 3), mode)
    out.backward()
    assert out.item() == 0.0
    assert torch.equal(loss.grad, torch.zeros(2, 3))


def test_unknown_mode():
    with pytest.raises(ValueError):
        aggregate(torch.zeros(1, 1), torch.ones(1, 1), "sum")


# ----------------------------------------------------------------------------- token log-probs


def test_logprob_shift_convention_by_hand():
    # V = 2, logits at position 0 = [0, ln 3]  ->  p = [0.25, 0.75]; token 1 = id 1  ->  logp[1] = ln 0.75
    # H = -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.346574 + 0.215762 = 0.562335; position 0 holds 0
    logits = torch.tensor([[[0.0, math.log(3)], [5.0, -5.0]]])
    logp, ent = token_logprobs_and_entropy(logits, torch.tensor([[0, 1]]))
    torch.testing.assert_close(logp, torch.tensor([[0.0, math.log(0.75)]]))
    torch.testing.assert_close(ent, torch.tensor([[0.0, 0.562335]]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_naive_reference_values_and_grads(temperature):
    torch.manual_seed(0)
    b, t, v = 3, 7, 11
    logits = torch.randn(b, t, v, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, v, (b, t))
    # chunk_tokens=4 forces several chunks of 1 position across the batch of 3
    logp, ent = token_logprobs_and_entropy(logits, ids, temperature, chunk_tokens=4, entropy_grad=True)

    ref_lsm = torch.log_softmax(logits[:, :-1] / temperature, dim=-1)
    ref_logp = torch.cat([torch.zeros(b, 1, dtype=torch.float64), ref_lsm.gather(-1, ids[:, 1:, None])[..., 0]], 1)
    ref_ent = torch.cat([torch.zeros(b, 1, dtype=torch.float64), -(ref_lsm.exp() * ref_lsm).sum(-1)], 1)
    torch.testing.assert_close(logp.double(), ref_logp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.double(), ref_ent, atol=1e-5, rtol=0)

    w = torch.randn(b, t, dtype=torch.float64)
    (grad,) = torch.autograd.grad((logp.double() * w).sum(), logits)
    (ref_grad,) = torch.autograd.grad((ref_logp * w).sum(), logits)
    torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=0)
    assert (grad[:, -1] == 0).all()  # the last position's logits predict nothing in the sequence


def test_logprobs_bf16_and_detached_entropy():
    logits = torch.randn(2, 4, 9, dtype=torch.bfloat16, requires_grad=True)
    ids = torch.randint(0, 9, (2, 4))
    logp, ent = token_logprobs_and_entropy(logits, ids)
    assert logp.dtype == torch.float32 and not ent.requires_grad
    logp.sum().backward()
    assert logits.grad.dtype == torch.bfloat16
    logp2, none = token_logprobs_and_entropy(logits, ids, with_entropy=False)
    assert none is None
    torch.testing.assert_close(logp2, logp)
