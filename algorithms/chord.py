"""CHORD: on-policy GRPO and off-policy SFT in one loss, weighted by a scheduled mu; algorithm presets.

    L = (1 - mu) * L_grpo(on-policy batch) + mu * L_sft(expert batch)

Every algorithm of the paper's table is this one loss with a different mu rule and SFT weighting:
SFT is mu = 1, GRPO is mu = 0, SFT-then-GRPO switches mu from 1 to 0, CHORD-mu decays mu with a cosine,
CHORD-phi keeps mu = 0.1 with phi-weighted SFT, IDFT is SFT (or CHORD) with IDFT weights. The trainer
therefore has a single code path: `AlgorithmConfig.mu(step)` then `chord_loss`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

import torch
from torch import Tensor

from algorithms.idft import IDFTParams, idft_lambda
from algorithms.losses import AGG_MODES
from algorithms.sft import SFT_WEIGHTINGS


@dataclass(frozen=True)
class MuSchedule:
    """mu at 1-based optimizer step s (W = warmup_steps, D = decay_steps):

        s < W:        mu = s / W * peak                      (linear warm-up)
        s >= W + D:   mu = valley
        otherwise:    mu = valley + (peak - valley) * 0.5 * (1 + cos(pi * (s - W) / D))
        W = D = 0:    mu = valley (constant)
    """

    peak: float
    valley: float
    warmup_steps: int = 0
    decay_steps: int = 0

    def __call__(self, step: int) -> float:
        w, d = self.warmup_steps, self.decay_steps
        if w == 0 and d == 0:
            return float(self.valley)
        if step < w:
            return step / w * self.peak
        if step >= w + d:
            return float(self.valley)
        cosine = 0.5 * (1.0 + math.cos(math.pi * (step - w) / d))
        return self.valley + (self.peak - self.valley) * cosine


def adaptive_mu(mean_reward: float, tau: float = 0.5) -> float:
    """Reward-adaptive mu = max(0, tau - mean_reward): lean on the expert while the policy is failing."""
    return max(0.0, tau - float(mean_reward))


def chord_loss(grpo_loss: Tensor | None, sft_loss: Tensor | None, mu: float) -> Tensor:
    """L = (1 - mu) * L_grpo + mu * L_sft.

    Invariant: each term was already reduced over its *own* tokens (e.g. token-mean over on-policy tokens,
    token-mean over expert tokens) so mu is the only relative weight; how many expert samples the batch holds
    does not shift the balance. Pass None for a term whose batch has no tokens (it counts as 0); a term whose
    weight is 0 is left out (so a NaN-free but irrelevant term cannot leak). If nothing contributes, the
    result is 0 (attached to whichever term was given, so backward() still works).
    """
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"mu must be in [0, 1], got {mu}")
    grpo_weight = 1.0 - mu
    sft_weight = mu
    terms = [(grpo_weight, grpo_loss), (sft_weight, sft_loss)]
    active = [w * t for w, t in terms if t is not None and w != 0.0]
    if active:
        return sum(active[1:], active[0])
    given = [t for _, t in terms if t is not None]
    return 0.0 * given[0] if given else torch.zeros(())


MuRule = Literal["cosine", "switch", "adaptive"]


@dataclass(frozen=True)
class AlgorithmConfig:
    """Everything that distinguishes SFT / GRPO / SFT-then-GRPO / CHORD-mu / CHORD-phi / IDFT.

    Mirrored one-to-one by configs/algorithm/<name>.yaml (same keys).
    """

    name: str = "chord_mu"
    # --- mu: weight of the SFT term --------------------------------------------------------------------
    mu_rule: MuRule = "cosine"  # cosine: MuSchedule; switch: 1 for step <= sft_steps else 0; adaptive
    mu_peak: float = 0.6
    mu_valley: float = 0.0
    mu_warmup_steps: int = 0
    mu_decay_steps: int = 20
    sft_steps: int | None = None  # switch rule; None = half of total_steps
    adaptive_tau: float = 0.5  # adaptive rule: mu = max(0, tau - mean reward of the on-policy batch)
    # --- GRPO term ---------------------------------------------------------------------------------------
    group_size: int = 8  # rollouts per prompt
    adv_scale: Literal["std", "none"] = "std"  # none = Dr.GRPO
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: float | None = None
    loss_agg: str = "token-mean"  # used by both terms
    max_len: int | None = None  # constant for seq-mean-token-sum-norm
    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    # --- SFT term ----------------------------------------------------------------------------------------
    sft_weighting: Literal["none", "dft", "phi", "idft"] = "none"
    idft_beta: float = 1.0
    idft_gamma_min: float = 0.1
    idft_gamma_max: float = 2.0
    idft_warmup_frac: float = 0.2
    idft_ramp_frac: float = 0.1

    def __post_init__(self) -> None:
        if self.mu_rule not in ("cosine", "switch", "adaptive"):
            raise ValueError(f"mu_rule must be cosine|switch|adaptive, got {self.mu_rule!r}")
        if self.adv_scale not in ("std", "none"):
            raise ValueError(f"adv_scale must be std|none, got {self.adv_scale!r}")
        if self.loss_agg not in AGG_MODES:
            raise ValueError(f"loss_agg must be one of {AGG_MODES}, got {self.loss_agg!r}")
        if self.sft_weighting not in SFT_WEIGHTINGS:
            raise ValueError(f"sft_weighting must be one of {SFT_WEIGHTINGS}, got {self.sft_weighting!r}")
        if min(self.mu_warmup_steps, self.mu_decay_steps) < 0:
            raise ValueError("mu_warmup_steps and mu_decay_steps must be >= 0")

    @property
    def mu_schedule(self) -> MuSchedule:
        return MuSchedule(self.mu_peak, self.mu_valley, self.mu_warmup_steps, self.mu_decay_steps)

    def mu(self, step: int, total_steps: int | None = None, mean_reward: float | None = None) -> float:
        """mu at 1-based optimizer `step`. `total_steps` is needed by the switch rule when sft_steps is
        None; `mean_reward` (of the current on-policy batch) by the adaptive rule."""
        if self.mu_rule == "cosine":
            return self.mu_schedule(step)
        if self.mu_rule == "switch":
            sft_steps = self.sft_steps
            if sft_steps is None:
                if total_steps is None:
                    raise ValueError("switch rule with sft_steps=None needs total_steps")
                sft_steps = total_steps // 2
            return 1.0 if step <= sft_steps else 0.0
        if mean_reward is None:
            raise ValueError("adaptive rule needs the batch's mean_reward")
        return min(1.0, adaptive_mu(mean_reward, self.adaptive_tau))

    @property
    def constant_mu(self) -> float | None:
        """mu when it never changes (SFT: 1, GRPO: 0, CHORD-phi: 0.1), else None."""
        if self.mu_rule == "cosine" and self.mu_warmup_steps == 0 and self.mu_decay_steps == 0:
            return float(self.mu_valley)
        return None

    @property
    def uses_rollouts(self) -> bool:
        """False when mu is constantly 1 (pure SFT): no on-policy generation needed."""
        return self.constant_mu != 1.0

    @property
    def uses_expert(self) -> bool:
        """False when mu is constantly 0 (pure GRPO): no expert batch needed."""
        return self.constant_mu != 0.0

    @property
    def needs_entropy(self) -> bool:
        """Whether the training forward pass must also compute per-token entropy."""
        return self.sft_weighting == "idft" or self.entropy_coef != 0.0

    def idft_params(self, step: int, total_steps: int) -> IDFTParams:
        """IDFT weight parameters at 1-based `step`, with the lambda schedule applied."""
        lam = idft_lambda(step, total_steps, self.idft_warmup_frac, self.idft_ramp_frac)
        return IDFTParams(self.idft_beta, self.idft_gamma_min, self.idft_gamma_max, lam)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AlgorithmConfig:
        """Build from a plain dict (e.g. OmegaConf.to_container(cfg.algorithm)); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown algorithm config keys: {sorted(unknown)}")
        return cls(**values)


_CONSTANT_1 = dict(mu_rule="cosine", mu_peak=1.0, mu_valley=1.0, mu_warmup_steps=0, mu_decay_steps=0)
_CONSTANT_0 = dict(mu_rule="cosine", mu_peak=0.0, mu_valley=0.0, mu_warmup_steps=0, mu_decay_steps=0)
_CONSTANT_01 = dict(mu_rule="cosine", mu_peak=0.1, mu_valley=0.1, mu_warmup_steps=0, mu_decay_steps=0)

PRESETS: dict[str, AlgorithmConfig] = {
    "sft": AlgorithmConfig(name="sft", **_CONSTANT_1),
    "grpo": AlgorithmConfig(name="grpo", **_CONSTANT_0),
    # mu = 1 for step <= sft_steps, then 0 (mu_peak/valley/steps unused by the switch rule)
    "sft_then_grpo": AlgorithmConfig(name="sft_then_grpo", **{**_CONSTANT_0, "mu_rule": "switch"}),
    # tool-use reference: W = 0, D = 20, peak 0.6, valley 0.0
    "chord_mu": AlgorithmConfig(name="chord_mu", mu_peak=0.6, mu_valley=0.0, mu_warmup_steps=0, mu_decay_steps=20),
    # math reference: W = 0, D = 200, peak 0.9, valley 0.05
    "chord_mu_math": AlgorithmConfig(
        name="chord_mu_math", mu_peak=0.9, mu_valley=0.05, mu_warmup_steps=0, mu_decay_steps=200
    ),
    "chord_phi": AlgorithmConfig(name="chord_phi", sft_weighting="phi", **_CONSTANT_01),
    "chord_adaptive": AlgorithmConfig(name="chord_adaptive", **{**_CONSTANT_0, "mu_rule": "adaptive"}),
    "idft": AlgorithmConfig(name="idft", sft_weighting="idft", **_CONSTANT_1),
    "chord_idft": AlgorithmConfig(name="chord_idft", sft_weighting="idft", **_CONSTANT_01),
}


def preset(name: str, **overrides) -> AlgorithmConfig:
    """A named preset (see PRESETS), optionally with fields overridden."""
    if name not in PRESETS:
        raise KeyError(f"unknown algorithm preset {name!r}; available: {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
