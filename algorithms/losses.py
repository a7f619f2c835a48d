"""Loss aggregation and the clipped (GRPO/PPO) policy-gradient loss.

All functions take per-token tensors [B, T] aligned with `input_ids` (see `algorithms.logprobs`) and a
mask [B, T] (1 on trainable tokens: assistant-generated tokens only). They are pure: no state, no config.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

AggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
AGG_MODES: tuple[str, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")

LOG_RATIO_CLAMP = 20.0


def _masked_zeroed(values: Tensor, mask: Tensor) -> Tensor:
    """values where mask, else 0 (a `where`, not a product, so inf/NaN under the mask cannot leak)."""
    return torch.where(mask.bool(), values, torch.zeros_like(values))


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` over masked entries; 0 (with grad) when the mask is empty."""
    count = mask.bool().sum().clamp(min=1)
    return _masked_zeroed(values, mask).sum() / count


def aggregate(loss: Tensor, mask: Tensor, mode: AggMode = "token-mean", max_len: int | None = None) -> Tensor:
    """Reduce a per-token loss [B, T] to a scalar.

    Modes (n_b = number of masked tokens of sequence b, S = sequences with n_b > 0):
        token-mean:              sum_{b,t} m*l / sum_{b,t} m            (every token weighs the same)
        seq-mean-token-mean:     mean_{b in S} ( sum_t m*l / n_b )       (every sequence weighs the same)
        seq-mean-token-sum:      mean_{b in S} ( sum_t m*l )
        seq-mean-token-sum-norm: mean_{b in S} ( sum_t m*l / max_len )   (Dr.GRPO; max_len a constant,
                                                                           default T = mask.shape[-1])
    Rows with an empty mask (padding rows, an expert row in the on-policy loss) are ignored by the seq-mean
    modes. An entirely empty mask gives 0 that still carries a (zero) gradient, never NaN.
    """
    if loss.shape != mask.shape:
        raise ValueError(f"loss {tuple(loss.shape)} and mask {tuple(mask.shape)} differ")
    if mode == "token-mean":
        return masked_mean(loss, mask)

    mask = mask.bool()
    seq_sum = _masked_zeroed(loss, mask).sum(dim=-1)  # [B]
    seq_count = mask.sum(dim=-1)  # [B]
    if mode == "seq-mean-token-mean":
        per_seq = seq_sum / seq_count.clamp(min=1)
    elif mode == "seq-mean-token-sum":
        per_seq = seq_sum
    elif mode == "seq-mean-token-sum-norm":
        norm = mask.shape[-1] if max_len is None else max_len
        if norm <= 0:
            raise ValueError(f"max_len must be positive, got {norm}")
        per_seq = seq_sum / norm
    else:
        raise ValueError(f"unknown aggregation mode {mode!r}; expected one of {AGG_MODES}")
    return masked_mean(per_seq, seq_count > 0)


def aggregation_units(mask: Tensor, mode: str) -> float:
    """The denominator a batch contributes to ``aggregate(..., mode)``: its masked tokens for ``token-mean``,
    its sequences with at least one masked token for the ``seq-mean-*`` modes. A batch split into
    micro-batches scales each micro-batch's mean by its share of these units."""
    if mode == "token-mean":
        return float(mask.sum())
    return float((mask.sum(dim=-1) > 0).sum())


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref): exp(ref - logp) - (ref - logp) - 1  (>= 0, unbiased)."""
    log_ratio = (ref_logp - logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.exp(log_ratio) - log_ratio - 1.0


def truncated_is_weight(old_logp: Tensor, sampler_logp: Tensor, cap: float) -> Tensor:
    """Truncated importance sampling between the sampler and the trainer: w_t = min(pi_old / pi_sampler, cap).

    The engine that sampled a rollout (vLLM, or the HF engine in bf16) and the trainer's teacher-forced pass
    do not give the same probabilities; weighting each on-policy token's surrogate by ``w_t`` corrects the
    gradient towards the trainer's policy, truncated at ``cap`` so that a token the sampler found unlikely
    cannot dominate (verl's ``tis_imp_ratio_cap``, TRL's ``vllm_importance_sampling_cap``). Detached.
    """
    if cap <= 0:
        raise ValueError(f"the truncation cap must be > 0, got {cap}")
    log_w = (old_logp.detach() - sampler_logp.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.exp(log_w).clamp(max=cap)


def clipped_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
    agg: AggMode = "token-mean",
    max_len: int | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    is_weight: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GRPO / PPO clipped surrogate loss (to minimise).

    Per token, with rho = exp(clamp(logp - old_logp, -20, 20)):
        pg_t = max(-rho * A, -clip(rho, 1 - eps_low, 1 + eps_high) * A)       = -min(rho A, clip(rho) A)
        if dual_clip = c (> 1) and A < 0:  pg_t = min(pg_t, -c * A)            (bounds the loss when rho >> 1)
        with is_weight w_t (detached):     pg_t = w_t * pg_t                   (sampler correction, see below)
    loss = agg(pg) + kl_coef * agg(k3(logp, ref_logp)) - entropy_coef * agg(entropy)

    Args:
        logp: [B, T] current policy log-probs (with grad).
        old_logp: [B, T] log-probs of the policy that produced the samples (detached by this function).
        advantages: [B] per sequence (broadcast over tokens) or [B, T] per token.
        mask: [B, T] trainable tokens.
        eps_low, eps_high: clip range [1 - eps_low, 1 + eps_high].
        dual_clip: c for dual-clip PPO (None: off; the paper's option is 3.0).
        agg, max_len: aggregation, see `aggregate`.
        ref_logp, kl_coef: optional KL penalty to a reference policy (k3 estimator); off (0) in CHORD.
        entropy, entropy_coef: optional entropy bonus (entropy needs grad); off (0) in CHORD.
        is_weight: [B, T] per-token importance weight of the sampler correction (``truncated_is_weight``),
            or None (off).

    Returns:
        (loss scalar, metrics) where metrics are detached scalars over masked tokens: "pg_loss",
        "clip_frac" (share of tokens where the clipped branch is active), "dual_clip_frac", "ratio_mean",
        "ratio_max", "approx_kl" (k3 of old vs current: mean of (rho - 1) - log rho), and "kl" / "entropy"
        when those terms are on.
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    advantages = advantages.detach().to(logp.dtype).expand_as(logp)
    old_logp = old_logp.detach()

    log_ratio = (logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    clipped_ratio = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)

    pg_unclipped = -ratio * advantages
    pg_clipped = -clipped_ratio * advantages
    pg = torch.maximum(pg_unclipped, pg_clipped)
    dual_clipped = torch.zeros_like(pg, dtype=torch.bool)
    if dual_clip is not None:
        dual_bound = -dual_clip * advantages
        dual_clipped = (advantages < 0) & (pg > dual_bound)
        pg = torch.where(advantages < 0, torch.minimum(pg, dual_bound), pg)
    if is_weight is not None:
        pg = is_weight.detach() * pg

    pg_loss = aggregate(pg, mask, agg, max_len)
    loss = pg_loss

    metrics: dict[str, Tensor] = {}
    if kl_coef != 0.0:
        if ref_logp is None:
            raise ValueError("kl_coef != 0 needs ref_logp")
        kl_loss = aggregate(kl_k3(logp, ref_logp.detach()), mask, agg, max_len)
        loss = loss + kl_coef * kl_loss
        metrics["kl"] = kl_loss.detach()
    if entropy_coef != 0.0:
        if entropy is None:
            raise ValueError("entropy_coef != 0 needs entropy")
        entropy_term = aggregate(entropy, mask, agg, max_len)
        loss = loss - entropy_coef * entropy_term
        metrics["entropy"] = entropy_term.detach()

    with torch.no_grad():
        metrics["pg_loss"] = pg_loss.detach()
        metrics["clip_frac"] = masked_mean((pg_clipped > pg_unclipped).float(), mask)
        metrics["dual_clip_frac"] = masked_mean(dual_clipped.float(), mask)
        metrics["ratio_mean"] = masked_mean(ratio, mask)
        metrics["ratio_max"] = _masked_zeroed(ratio, mask).amax() if ratio.numel() else ratio.new_zeros(())
        metrics["approx_kl"] = masked_mean((ratio - 1.0) - log_ratio, mask)
    return loss, metrics
