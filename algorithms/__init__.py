"""chordgym.algorithms: pure loss functions (GRPO, SFT weightings, IDFT, CHORD) and, on top, the trainer.

This package init only re-exports the pure, torch-only functions; import the trainer from
`algorithms.trainer` explicitly (it pulls in models and DeepSpeed).
"""

from algorithms.advantages import group_advantages
from algorithms.chord import PRESETS, AlgorithmConfig, MuSchedule, adaptive_mu, chord_loss, preset
from algorithms.idft import IDFTParams, centred_loglik, cll_stats, idft_gamma, idft_lambda, idft_weight
from algorithms.logprobs import token_logprobs_and_entropy
from algorithms.losses import AGG_MODES, aggregate, clipped_policy_loss, kl_k3, masked_mean
from algorithms.sft import SFT_WEIGHTINGS, sft_loss, sft_token_weights

__all__ = [
    "AGG_MODES",
    "PRESETS",
    "SFT_WEIGHTINGS",
    "AlgorithmConfig",
    "IDFTParams",
    "MuSchedule",
    "adaptive_mu",
    "aggregate",
    "centred_loglik",
    "chord_loss",
    "cll_stats",
    "clipped_policy_loss",
    "group_advantages",
    "idft_gamma",
    "idft_lambda",
    "idft_weight",
    "kl_k3",
    "masked_mean",
    "preset",
    "sft_loss",
    "sft_token_weights",
    "token_logprobs_and_entropy",
]
