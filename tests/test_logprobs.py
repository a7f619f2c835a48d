"""``algorithms.logprobs``: the chunked log-prob/entropy functions equal the naive full-vocabulary formulas,
values and gradients, at any temperature and chunk size."""

from __future__ import annotations

import pytest
import torch

from algorithms.logprobs import token_logprobs_and_entropy


def naive(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    logprobs = torch.log_softmax(logits.float()[:, :-1] / temperature, dim=-1)
    logp = logprobs.gather(-1, ids[:, 1:, None]).squeeze(-1)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    zero = torch.zeros(ids.shape[0], 1)
    return torch.cat([zero, logp], dim=1), torch.cat([zero, entropy], dim=1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_tokens", [3, 4096])
def test_values_and_gradients_equal_the_naive_log_softmax(temperature, chunk_tokens):
    gen = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(2, 9, 50, generator=gen)).requires_grad_()
    ids = torch.randint(0, 50, (2, 9), generator=gen)
    weights = torch.randn(2, 9, generator=gen)

    logp, entropy = token_logprobs_and_entropy(logits, ids, temperature=temperature, chunk_tokens=chunk_tokens,
                                               entropy_grad=True)
    ((logp + 0.3 * entropy) * weights).sum().backward()
    got = logits.grad.clone()
    logits.grad = None
    ref_logp, ref_entropy = naive(logits, ids, temperature)
    ((ref_logp + 0.3 * ref_entropy) * weights).sum().backward()

    assert torch.allclose(logp, ref_logp, atol=1e-5) and torch.allclose(entropy, ref_entropy, atol=1e-5)
    assert torch.allclose(got, logits.grad, atol=1e-5)
    assert logits.grad.abs().max() > 0


def test_bf16_logits_get_a_bf16_gradient_and_are_left_untouched():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 6, 40, generator=gen).to(torch.bfloat16).requires_grad_()
    before = logits.detach().clone()
    ids = torch.randint(0, 40, (1, 6), generator=gen)
    logp, _ = token_logprobs_and_entropy(logits, ids, with_entropy=False)
    logp.sum().backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.equal(logits.detach(), before)
    ref_logp, _ = naive(logits.detach(), ids, 1.0)
    assert torch.allclose(logp, ref_logp, atol=1e-5)
