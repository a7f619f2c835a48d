"""chordgym.algorithms: the pure loss maths (GRPO, SFT weightings, IDFT), CHORD on top, and the trainer.

This package init re-exports the pure, torch-only functions. Import CHORD from ``algorithms.chord`` and the
trainer from ``algorithms.trainer`` explicitly (they pull in models and DeepSpeed).
"""

from algorithms.advantages import group_advantages
from algorithms.idft import IDFTParams, centred_loglik, cll_stats, idft_gamma, idft_lambda, idft_weight
from algorithms.logprobs import token_logprobs_and_entropy
from algorithms.losses import AGG_MODES, aggregate, aggregation_units, clipped_policy_loss, kl_k3, masked_mean
from algorithms.sft import SFT_WEIGHTINGS, sft_loss, sft_token_weights

__all__ = [
    "AGG_MODES",
    "SFT_WEIGHTINGS",
    "IDFTParams",
    "aggregate",
    "aggregation_units",
    "centred_loglik",
    "cll_stats",
    "clipped_policy_loss",
    "group_advantages",
    "idft_gamma",
    "idft_lambda",
    "idft_weight",
    "kl_k3",
    "masked_mean",
    "sft_loss",
    "sft_token_weights",
    "token_logprobs_and_entropy",
]
