"""SFT weightings (none / DFT / phi): values, metrics, and that the weights are stop-gradient."""

import math

import pytest
import torch

from algorithms.sft import sft_loss, sft_token_weights

P = torch.tensor([[0.5, 0.2, 0.9]])
LOGP = P.log()
MASK = torch.ones(1, 3)
# -log p = 0.693147, 1.609438, 0.105361


@pytest.mark.parametrize(
    "weighting, expected",
    [
        # mean(-log p) = 2.407946 / 3
        ("none", (0.693147 + 1.609438 + 0.105361) / 3),
        # mean(-p log p) = (0.346574 + 0.321888 + 0.094825) / 3 = 0.763287 / 3
        ("dft", (0.5 * 0.693147 + 0.2 * 1.609438 + 0.9 * 0.105361) / 3),
        # phi = p(1-p) = 0.25, 0.16, 0.09: (0.173287 + 0.257510 + 0.009482) / 3 = 0.440279 / 3
        ("phi", (0.25 * 0.693147 + 0.16 * 1.609438 + 0.09 * 0.105361) / 3),
    ],
)
def test_weighted_sft_values(weighting, expected):
    loss, m = sft_loss(LOGP, MASK, weighting)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert m["nll"].item() == pytest.approx(2.407946 / 3, abs=1e-5)
    assert m["p_mean"].item() == pytest.approx(1.6 / 3, abs=1e-6)


def test_phi_weights_not_renormalised_and_metrics():
    w = sft_token_weights(LOGP, "phi")
    torch.testing.assert_close(w, torch.tensor([[0.25, 0.16, 0.09]]))
    _, m = sft_loss(LOGP, MASK, "phi")
    assert m["weight_mean"].item() == pytest.approx(0.5 / 3)  # (0.25 + 0.16 + 0.09) / 3, not 1


def test_mask_and_aggregation():
    # mask drops the 0.2 token: token-mean of -log p over {0.5, 0.9} = (0.693147 + 0.105361) / 2
    mask = torch.tensor([[1, 0, 1]])
    loss, _ = sft_loss(LOGP, mask)
    assert loss.item() == pytest.approx(0.399254, abs=1e-5)
    # two rows, seq-mean-token-sum: row sums 0.693147 + 0.105361 and 1.609438, mean = 1.203973
    loss2, _ = sft_loss(LOGP.expand(2, 3), torch.tensor([[1, 0, 1], [0, 1, 0]]), agg="seq-mean-token-sum")
    assert loss2.item() == pytest.approx((0.798508 + 1.609438) / 2, abs=1e-5)


def _grad_wrt_logits(weighting: str, detach: bool = True) -> torch.Tensor:
    # V = 2, logits [ln 3, 0] -> p = [0.75, 0.25]; the expert token is id 0, p = 0.75
    logits = torch.tensor([math.log(3.0), 0.0], requires_grad=True)
    logp = torch.log_softmax(logits, -1)[0].reshape(1, 1)
    if detach:
        loss, _ = sft_loss(logp, torch.ones(1, 1), weighting)
    else:  # the buggy variant: the weight is left inside the graph
        p = logp.exp()
        weight = p if weighting == "dft" else p * (1 - p)
        loss = (-weight * logp).mean()
    (grad,) = torch.autograd.grad(loss, logits)
    return grad


# d log p / d logits = onehot - softmax = [0.25, -0.25]
GRAD_LOGP = torch.tensor([0.25, -0.25])


def test_phi_gradient_is_phi_times_grad_logp():
    # detached: grad = -p(1-p) * grad log p = -0.1875 * [0.25, -0.25] = [-0.046875, 0.046875]
    torch.testing.assert_close(_grad_wrt_logits("phi"), -0.75 * 0.25 * GRAD_LOGP)
    torch.testing.assert_close(_grad_wrt_logits("phi"), torch.tensor([-0.046875, 0.046875]))
    # not detached: L = -p(1-p) ln p, dL/dp = -[(1 - 2p) ln p + (1 - p)] = -[(-0.5)(-0.287682) + 0.25]
    #   = -0.393841; dp/dlogits = p * grad log p = [0.1875, -0.1875]  ->  [-0.073845, 0.073845]
    buggy = _grad_wrt_logits("phi", detach=False)
    torch.testing.assert_close(buggy, torch.tensor([-0.073845, 0.073845]), atol=1e-5, rtol=0)
    assert not torch.allclose(buggy, _grad_wrt_logits("phi"))


def test_dft_gradient_is_p_times_grad_logp():
    # detached: -0.75 * [0.25, -0.25] = [-0.1875, 0.1875]
    torch.testing.assert_close(_grad_wrt_logits("dft"), torch.tensor([-0.1875, 0.1875]))
    # not detached: dL/dp = -(ln p + 1) = -(1 - 0.287682) = -0.712318; x [0.1875, -0.1875] = -+0.133560
    buggy = _grad_wrt_logits("dft", detach=False)
    torch.testing.assert_close(buggy, torch.tensor([-0.133560, 0.133560]), atol=1e-5, rtol=0)


def test_plain_sft_gradient():
    # -grad log p = [-0.25, 0.25]
    torch.testing.assert_close(_grad_wrt_logits("none"), -GRAD_LOGP)


def test_bad_weighting_and_missing_entropy():
    with pytest.raises(ValueError):
        sft_loss(LOGP, MASK, "focal")
    with pytest.raises(ValueError):
        sft_loss(LOGP, MASK, "idft")
