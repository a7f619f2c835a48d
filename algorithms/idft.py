"""Centred log-likelihood (DDT diagnostics) and IDFT token weights ("Towards On-Policy SFT").

    cll_t      = log p_t + H_t                          E[cll_t] = 0 if y_t were sampled from the model
    gamma_raw  = clamp(exp(-cll_t / beta), gamma_min, gamma_max)
    gamma_t    = 1 + lambda_sched * (gamma_raw - 1)
    w_t        = sg(clamp(p_t, 1e-10, 1) ** gamma_t)    per-token loss  -w_t * log p_t   (see sft.sft_loss)

cll <= -beta ln 2 gives gamma = 2 (weight p^2: off-distribution expert tokens are suppressed); cll = 0 gives
gamma = 1 (DFT, weight p); cll >= beta ln 10 gives gamma = 0.1 (weight ~p^0.1, nearly plain SFT).
lambda_sched = 0 (warm-up) turns IDFT into DFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

P_MIN = 1e-10


@dataclass
class IDFTParams:
    """Hyper-parameters of the IDFT weight. `lam` is the current value of the lambda schedule."""

    beta: float = 1.0
    gamma_min: float = 0.1
    gamma_max: float = 2.0
    lam: float = 1.0


def centred_loglik(logp: Tensor, entropy: Tensor) -> Tensor:
    """cll_t = log p_t + H_t (temperature-1 log-prob and entropy of the same position)."""
    return logp + entropy


def idft_gamma(
    cll: Tensor, beta: float = 1.0, gamma_min: float = 0.1, gamma_max: float = 2.0, lam: float = 1.0
) -> Tensor:
    """Per-token exponent gamma_t = 1 + lam * (clamp(exp(-cll / beta), gamma_min, gamma_max) - 1). Detached."""
    cll = cll.detach()
    gamma_raw = torch.exp(-cll / beta).clamp(gamma_min, gamma_max)
    return 1.0 + lam * (gamma_raw - 1.0)


def idft_weight(logp: Tensor, gamma: Tensor) -> Tensor:
    """w_t = sg(clamp(p_t, 1e-10, 1) ** gamma_t): the detached IDFT weight of each token."""
    p = torch.exp(logp.detach()).clamp(P_MIN, 1.0)
    return p.pow(gamma.detach())


def idft_lambda(step: int, total_steps: int, warmup_frac: float = 0.2, ramp_frac: float = 0.1) -> float:
    """lambda_sched at 1-based optimizer `step`: 0 during the first warmup_frac * total_steps steps,
    then a linear ramp to 1 over ramp_frac * total_steps steps, then 1.

    With warmup_frac = ramp_frac = 0 (the authors' released run) it is 1 from the first step.
    """
    warmup = warmup_frac * total_steps
    ramp = ramp_frac * total_steps
    if step < warmup:
        return 0.0
    if ramp <= 0:
        return 1.0
    return float(min(1.0, max(0.0, (step - warmup) / ramp)))


def cll_stats(logp: Tensor, entropy: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Per-sequence cll diagnostics over masked tokens, each a detached [B] tensor.

    Returns {"mean": mean cll, "sum": summed cll, "share_positive": share of tokens with cll > 0};
    sequences without masked tokens get 0.
    """
    mask = mask.bool()
    cll = torch.where(mask, centred_loglik(logp.detach(), entropy.detach()), torch.zeros_like(logp))
    count = mask.sum(-1).clamp(min=1).to(cll.dtype)
    cll_sum = cll.sum(-1)
    positive = ((cll > 0) & mask).sum(-1).to(cll.dtype)
    return {"mean": cll_sum / count, "sum": cll_sum, "share_positive": positive / count}
