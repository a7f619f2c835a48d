"""IDFT: centred log-likelihood, gamma, weights (ALGORITHMS.md worked examples), lambda schedule, cll stats."""

import math

import pytest
import torch

from algorithms.idft import IDFTParams, centred_loglik, cll_stats, idft_gamma, idft_lambda, idft_weight
from algorithms.sft import sft_loss


@pytest.mark.parametrize(
    "p, h, cll, gamma, weight, exact",
    [
        # ln 0.05 = -2.995732; cll = -2.995732 + 0.3 = -2.695732; exp(2.695732) = 14.81 -> clamp 2.0
        # weight 0.05^2 = 0.0025
        (0.05, 0.3, -2.70, 2.0, 0.0025, (-2.695732, 2.0, 0.0025)),
        # cll = -2.995732 + 4.0 = 1.004268; gamma = exp(-1.004268) = 0.366313
        # weight = exp(0.366313 * -2.995732) = exp(-1.097375) = 0.333743
        # (the doc rounds cll to 1.00 first: gamma 0.368, weight 0.332; hence tolerance 0.003)
        (0.05, 4.0, 1.00, 0.368, 0.332, (1.004268, 0.366313, 0.333743)),
        # ln 0.9 = -0.105361; cll = 0.294639; gamma = exp(-0.294639) = 0.744800
        # weight = exp(0.744800 * -0.105361) = exp(-0.078473) = 0.924527
        (0.9, 0.4, 0.295, 0.745, 0.924, (0.294639, 0.744800, 0.924527)),
    ],
)
def test_worked_examples(p, h, cll, gamma, weight, exact):
    logp = torch.tensor(math.log(p), dtype=torch.float64)
    c = centred_loglik(logp, torch.tensor(h, dtype=torch.float64))
    g = idft_gamma(c)
    w = idft_weight(logp, g)
    assert c.item() == pytest.approx(cll, abs=0.01)
    assert g.item() == pytest.approx(gamma, abs=0.003)
    assert w.item() == pytest.approx(weight, abs=0.003)
    assert (c.item(), g.item(), w.item()) == pytest.approx(exact, abs=1e-5)


def test_gamma_regimes_and_lambda():
    # cll = -ln 2 -> exp(ln 2) = 2 = gamma_max; cll = 0 -> 1 (DFT); cll = ln 10 -> 0.1 = gamma_min
    cll = torch.tensor([-math.log(2), 0.0, math.log(10), 5.0, -5.0])
    torch.testing.assert_close(idft_gamma(cll), torch.tensor([2.0, 1.0, 0.1, 0.1, 2.0]))
    # lam = 0 -> gamma = 1 everywhere (IDFT == DFT); lam = 0.5 -> 1 + 0.5 (raw - 1)
    torch.testing.assert_close(idft_gamma(cll, lam=0.0), torch.ones(5))
    torch.testing.assert_close(idft_gamma(cll, lam=0.5), torch.tensor([1.5, 1.0, 0.55, 0.55, 1.5]))
    # beta = 2: cll = -1 -> exp(0.5) = 1.648721
    assert idft_gamma(torch.tensor(-1.0), beta=2.0).item() == pytest.approx(math.exp(0.5))


def test_weight_clamps_p_and_is_detached():
    # p = e^-50 < 1e-10 is clamped: weight = 1e-10 ** 1 = 1e-10
    w = idft_weight(torch.tensor(-50.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    assert w.item() == pytest.approx(1e-10, rel=1e-9)
    logp = torch.tensor([math.log(0.5)], requires_grad=True)
    assert not idft_weight(logp, torch.tensor([2.0])).requires_grad


def test_lambda_schedule():
    # total 100, warm-up 0.2 -> 20 steps of 0, ramp 0.1 -> 10 steps: lambda = (step - 20) / 10
    assert [idft_lambda(s, 100) for s in (1, 19, 20, 25, 30, 31, 100)] == pytest.approx(
        [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
    )
    # authors' released run: no warm-up, no ramp -> 1 from the first step
    assert idft_lambda(1, 100, 0.0, 0.0) == 1.0
    # warm-up without ramp: a step from 0 to 1 at step 20
    assert (idft_lambda(19, 100, 0.2, 0.0), idft_lambda(20, 100, 0.2, 0.0)) == (0.0, 1.0)


def test_sft_loss_with_idft_weights():
    # the three worked examples as one expert row; loss = mean(-w log p), grad wrt logp = -w / 3
    p = torch.tensor([[0.05, 0.05, 0.9]], dtype=torch.float64)
    h = torch.tensor([[0.3, 4.0, 0.4]], dtype=torch.float64)
    logp = p.log().requires_grad_(True)
    w = torch.tensor([0.0025, 0.333743, 0.924527], dtype=torch.float64)
    loss, m = sft_loss(logp, torch.ones(1, 3), "idft", entropy=h)
    expected = (0.0025 * 2.995732 + 0.333743 * 2.995732 + 0.924527 * 0.105361) / 3  # 0.368234
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    loss.backward()
    torch.testing.assert_close(logp.grad[0], -w / 3, atol=1e-5, rtol=0)
    assert m["gamma_mean"].item() == pytest.approx((2.0 + 0.366313 + 0.744800) / 3, abs=1e-5)
    assert m["cll_mean"].item() == pytest.approx((-2.695732 + 1.004268 + 0.294639) / 3, abs=1e-5)
    # lambda = 0 (warm-up): IDFT == DFT
    idft0, _ = sft_loss(logp, torch.ones(1, 3), "idft", entropy=h, idft_params=IDFTParams(lam=0.0))
    dft, _ = sft_loss(logp, torch.ones(1, 3), "dft")
    assert idft0.item() == pytest.approx(dft.item())
    # dict params (as from a Hydra config) work too
    as_dict, _ = sft_loss(logp, torch.ones(1, 3), "idft", entropy=h, idft_params={"lam": 0.0})
    assert as_dict.item() == pytest.approx(dft.item())


def test_cll_stats():
    # row 0: log p = ln 0.5, ln 0.25 (masked: 3rd); H = 1.0, 1.0 -> cll = 0.306853, -0.386294
    #   sum = -0.079442, mean = -0.039721, share > 0 = 1/2
    # row 1: empty mask -> 0, 0, 0
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.1], [0.5, 0.5, 0.5]]))
    ent = torch.ones(2, 3)
    stats = cll_stats(logp, ent, torch.tensor([[1, 1, 0], [0, 0, 0]]))
    torch.testing.assert_close(stats["sum"], torch.tensor([-0.079442, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(stats["mean"], torch.tensor([-0.039721, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(stats["share_positive"], torch.tensor([0.5, 0.0]))
