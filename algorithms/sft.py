"""SFT loss on expert tokens with the token weightings of CHORD / DFT / IDFT.

Per trainable token, with p_t = exp(log p_t) of the *current* policy (training forward pass):
    none:  -log p_t                              plain SFT (NLL)
    dft:   -sg(p_t) * log p_t                    IS-SFT / DFT
    phi:   -sg(p_t * (1 - p_t)) * log p_t        CHORD-phi (detached, not renormalised)
    idft:  -sg(clamp(p_t,1e-10,1) ** gamma_t) * log p_t   (gamma_t from idft.idft_gamma; needs entropy)
then aggregated over the expert tokens with the same mode as the policy loss (default token-mean).

The weights are detached: with phi, grad = p(1-p) * grad log p. Without the stop-gradient the weight's own
derivative would add a term, a known bug in other implementations.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

import torch
from torch import Tensor

from algorithms.idft import IDFTParams, centred_loglik, idft_gamma, idft_weight
from algorithms.losses import AggMode, aggregate, masked_mean

SFTWeighting = Literal["none", "dft", "phi", "idft"]
SFT_WEIGHTINGS: tuple[str, ...] = ("none", "dft", "phi", "idft")


def sft_token_weights(
    logp: Tensor,
    weighting: SFTWeighting = "none",
    entropy: Tensor | None = None,
    idft_params: IDFTParams | dict | None = None,
) -> Tensor:
    """Detached per-token weights w_t of the SFT loss -w_t log p_t (see module docstring)."""
    p = torch.exp(logp.detach())
    if weighting == "none":
        return torch.ones_like(p)
    if weighting == "dft":
        return p
    if weighting == "phi":
        return p * (1.0 - p)
    if weighting == "idft":
        if entropy is None:
            raise ValueError("weighting='idft' needs the per-token entropy")
        params = _idft_params(idft_params)
        gamma = idft_gamma(centred_loglik(logp.detach(), entropy.detach()), **asdict(params))
        return idft_weight(logp, gamma)
    raise ValueError(f"unknown SFT weighting {weighting!r}; expected one of {SFT_WEIGHTINGS}")


def _idft_params(params: IDFTParams | dict | None) -> IDFTParams:
    if params is None:
        return IDFTParams()
    if isinstance(params, dict):
        return IDFTParams(**params)
    return params


def sft_loss(
    logp: Tensor,
    mask: Tensor,
    weighting: SFTWeighting = "none",
    agg: AggMode = "token-mean",
    entropy: Tensor | None = None,
    idft_params: IDFTParams | dict | None = None,
    max_len: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted negative log-likelihood of expert tokens (to minimise).

    Args:
        logp: [B, T] current-policy log-probs of the expert tokens (with grad).
        mask: [B, T] the expert's assistant tokens (tool outputs, prompts masked out).
        weighting: "none" | "dft" | "phi" | "idft".
        agg, max_len: aggregation over the expert tokens, see `losses.aggregate`.
        entropy: [B, T] next-token entropy at temperature 1 (needed for "idft").
        idft_params: IDFTParams (or a dict of its fields) incl. the current lambda; default IDFTParams().

    Returns:
        (loss, metrics) with detached token-mean metrics "nll" (mean -log p), "p_mean", "weight_mean",
        and for "idft" also "cll_mean" and "gamma_mean".
    """
    weight = sft_token_weights(logp, weighting, entropy, idft_params)
    per_token = -weight * logp
    loss = aggregate(per_token, mask, agg, max_len)

    with torch.no_grad():
        metrics = {
            "nll": masked_mean(-logp.detach(), mask),
            "p_mean": masked_mean(torch.exp(logp.detach()), mask),
            "weight_mean": masked_mean(weight, mask),
        }
        if weighting == "idft":
            params = _idft_params(idft_params)
            cll = centred_loglik(logp.detach(), entropy.detach())
            metrics["cll_mean"] = masked_mean(cll, mask)
            metrics["gamma_mean"] = masked_mean(idft_gamma(cll, **asdict(params)), mask)
    return loss, metrics
