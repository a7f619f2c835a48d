"""The training forward pass (``algorithms.forward``) and CHORD's per-micro-batch terms on it: logits computed
only from the first trainable token on give the same losses and gradients as the full forward pass."""

from __future__ import annotations

import pytest
import torch

from agents import Trajectory, collate, load_model
from algorithms.chord import expert_micro_loss, on_policy_micro_loss, preset
from algorithms.forward import completion_logits, plan_micro_batches
from algorithms.logprobs import token_logprobs_and_entropy
from algorithms.losses import aggregation_units, clipped_policy_loss
from algorithms.sft import sft_loss


@pytest.fixture(scope="module")
def model():
    m, _ = load_model("tiny-random", dtype="fp32", seed=3)
    return m


def batch_of(lengths_and_first: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    trajs = []
    for n, first in lengths_and_first:
        ids = torch.randint(5, 2000, (n,), generator=gen).tolist()
        mask = [0] * first + [1] * (n - first)
        trajs.append(Trajectory(ids, mask, [-1.0 if m else 0.0 for m in mask], reward=float(first % 2)))
    return collate(trajs, pad_token_id=0)


def full_logp(model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return token_logprobs_and_entropy(logits, batch["input_ids"])


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()


def test_window_starts_one_before_the_first_trainable_token(model):
    batch = batch_of([(30, 12), (25, 20), (18, 9)])
    logits, window = completion_logits(model, batch)
    assert logits.shape[1] == 30 - 8 and window["input_ids"].shape[1] == 22
    assert window["loss_mask"].sum() == batch["loss_mask"].sum()  # no trainable token lost
    assert window["loss_mask"][:, 0].sum() == 0


@pytest.mark.parametrize("algo_name", ["chord_mu", "chord_phi", "idft"])
def test_windowed_losses_and_gradients_equal_the_full_pass(model, algo_name):
    algo = preset(algo_name)
    batch = batch_of([(30, 12), (25, 20), (18, 9)])
    adv = torch.tensor([1.0, -0.5, 0.25])

    model.zero_grad()
    out_pg = on_policy_micro_loss(model, batch, adv, algo, 1.0, False, None)
    out_pg.loss.backward()
    g_window_pg = grads(model)
    model.zero_grad()
    logp, ent = full_logp(model, batch)
    ref_pg, _ = clipped_policy_loss(logp, logp.detach(), adv, batch["loss_mask"])
    ref_pg.backward()
    assert out_pg.loss.item() == pytest.approx(ref_pg.item(), abs=1e-6)
    assert torch.allclose(g_window_pg, grads(model), atol=1e-6)

    model.zero_grad()
    out_sft = expert_micro_loss(model, batch, algo, step=5, total_steps=10, max_len=None)
    out_sft.loss.backward()
    g_window_sft = grads(model)
    model.zero_grad()
    logp, ent = full_logp(model, batch)
    ref_sft, _ = sft_loss(logp, batch["loss_mask"], weighting=algo.sft_weighting, entropy=ent,
                          idft_params=algo.idft_params(5, 10))
    ref_sft.backward()
    assert out_sft.loss.item() == pytest.approx(ref_sft.item(), rel=1e-5)
    assert torch.allclose(g_window_sft, grads(model), atol=1e-6)


def test_aggregation_units():
    mask = torch.tensor([[0, 1, 1], [0, 0, 0], [1, 0, 0]], dtype=torch.float32)
    assert aggregation_units(mask, "token-mean") == 3
    assert aggregation_units(mask, "seq-mean-token-mean") == 2


def test_padded_rows_run_unpadded_and_match_the_masked_full_pass(model, monkeypatch):
    """Rows of different lengths (and one with nothing to train, shorter than the window start) give the
    same log-probs on every trainable token as one masked, padded forward pass."""
    monkeypatch.setattr("algorithms.forward.PADDED_FORWARD_MAX_LEN", 8)  # force the row-by-row path
    batch = batch_of([(40, 30), (33, 31), (12, 12)])  # row 2: all prompt, shorter than the window start
    logits, window = completion_logits(model, batch)
    assert logits.shape[:2] == window["input_ids"].shape == (3, 40 - 29)
    logp, _ = token_logprobs_and_entropy(logits, window["input_ids"])
    ref, _ = full_logp(model, batch)
    m = window["loss_mask"].bool()
    assert torch.allclose(logp[m], ref[:, 29:][m], atol=1e-5)
    assert torch.isfinite(logp).all()


def test_micro_batches_are_capped_by_rows_and_padded_tokens():
    assert [len(b) for b in plan_micro_batches([100] * 20, 16, 2048)] == [16, 4]
    # sorted by length; 2 x 700 fits 2048, 1500 and 1913 do not pair; a row over the cap still runs
    assert plan_micro_batches([1913, 600, 700, 1500], 16, 2048) == [[1, 2], [3], [0]]
    assert plan_micro_batches([3000], 16, 2048) == [[0]]
    assert plan_micro_batches([10, 10, 10], 1, 2048) == [[0], [1], [2]]


def test_kl_term_changes_the_gradient_and_pulls_the_policy_back_to_the_reference(model):
    """kl_coef > 0 adds k3(pi, pi_ref) on the on-policy tokens: with zero advantages the surrogate has no
    gradient, so any gradient is the KL's, and a step along it brings the policy's log-probs back to the
    reference's (the initial weights); kl_coef = 0 leaves the gradient as it was."""
    import copy

    from algorithms.chord import AlgorithmConfig

    reference = model
    policy = copy.deepcopy(reference)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel() % 97)))
    batch = batch_of([(24, 10), (20, 6)])
    zero = torch.zeros(2)

    def kl_to_reference() -> float:
        with torch.no_grad():
            return float(clipped_policy_loss(full_logp(policy, batch)[0], full_logp(policy, batch)[0], zero,
                                             batch["loss_mask"].float(), ref_logp=full_logp(reference, batch)[0],
                                             kl_coef=1.0)[1]["kl"])

    algo_kl = AlgorithmConfig.from_dict({**preset("grpo").__dict__, "kl_coef": 1.0})
    out = on_policy_micro_loss(policy, batch, zero, preset("grpo"), 1.0, False, None)
    out.loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in policy.parameters())  # no KL: nothing to learn
    policy.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="reference model"):
        on_policy_micro_loss(policy, batch, zero, algo_kl, 1.0, False, None)
    before = kl_to_reference()
    out = on_policy_micro_loss(policy, batch, zero, algo_kl, 1.0, False, None, ref_model=reference)
    assert out.metrics["grpo/kl"] == pytest.approx(before, rel=1e-4) and before > 0
    out.loss.backward()
    gradient = grads(policy)
    assert gradient.abs().sum() > 0
    with torch.no_grad():
        for p in policy.parameters():
            if p.grad is not None:
                p.sub_(1e-2 * p.grad)
    assert kl_to_reference() < before


def test_truncated_is_weights_the_surrogate_by_the_sampler_gap(model):
    """algorithm.tis_cap: each on-policy token's surrogate is weighted by min(pi_old / pi_sampler, cap); the
    per-token gap and the share of tokens at the cap are logged."""
    batch = batch_of([(30, 12), (25, 20)])  # sampler log-probs of -1.0 on every trainable token
    adv = torch.tensor([1.0, -0.5])
    plain = on_policy_micro_loss(model, batch, adv, preset("grpo"), 1.0, False, None)
    capped = on_policy_micro_loss(model, batch, adv, preset("grpo", tis_cap=1.5), 1.0, False, None)
    logp, _ = full_logp(model, batch)
    mask = batch["loss_mask"].bool()
    w = torch.exp(logp.detach() - batch["old_logprobs"]).clamp(max=1.5)
    assert capped.metrics["grpo/tis_weight_mean"] == pytest.approx(float(w[mask].mean()), rel=1e-5)
    assert capped.metrics["grpo/tis_clipped_share"] == pytest.approx(float((w[mask] >= 1.5).float().mean()))
    assert capped.metrics["grpo/sampler_logprob_diff"] == pytest.approx(float((logp - batch["old_logprobs"])[mask].mean()),
                                                                         rel=1e-5)
    assert "grpo/tis_weight_mean" not in plain.metrics
    assert capped.loss.item() != pytest.approx(plain.loss.item())
