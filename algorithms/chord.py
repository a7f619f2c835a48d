"""CHORD: on-policy GRPO and off-policy SFT in one loss, with a global weight mu and token weights phi.

The paper's objective, read top to bottom in this file (formulas: ``docs/algorithms.md``):

    (1) mu(s)     the global weight of the SFT term at optimizer step s: a cosine decay from mu_peak to
                  mu_valley after a linear warm-up (``MuSchedule``), a switch from 1 to 0 (SFT then GRPO),
                  or reward-adaptive max(0, tau - mean reward) (``adaptive_mu``); ``AlgorithmConfig.mu``
    (2) L_grpo    GRPO's clipped surrogate on the on-policy batch, group-normalised advantages
                  (``on_policy_micro_loss``; ``algorithms.losses``, ``algorithms.advantages``)
    (3) L_sft     the SFT term on the expert batch, each token weighted by phi = p(1 - p) (CHORD-phi),
                  p (DFT), an IDFT weight, or 1 (``expert_micro_loss``; ``algorithms.sft``)
    (4) L         = (1 - mu) L_grpo + mu L_sft   (``term_weights``), back-propagated term by term over
                  micro-batches, then one optimizer step (``chord_step``)

Every algorithm of the paper's table is this loss with a different mu rule and SFT weighting: SFT is mu = 1,
GRPO mu = 0, SFT-then-GRPO switches mu from 1 to 0, CHORD-mu decays mu with a cosine, CHORD-phi keeps
mu = 0.1 with phi-weighted SFT, IDFT is SFT (or CHORD) with IDFT weights. The named settings are the YAML
files of ``configs/algorithm/`` (``preset``), each stating only what differs from ``AlgorithmConfig``'s
defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch import Tensor

from agents.models import autocast_context
from agents.trajectory import Trajectory, collate
from algorithms.advantages import group_advantages
from algorithms.distributed import all_reduce_max, all_reduce_sum
from algorithms.forward import completion_logprobs, plan_micro_batches, trainable_start
from algorithms.idft import IDFTParams, centred_loglik, idft_lambda
from algorithms.losses import (
    AGG_MODES,
    aggregation_units,
    clipped_policy_loss,
    masked_mean,
    truncated_is_weight,
)
from algorithms.prompt_kv import DetachedPromptKV
from algorithms.sft import SFT_WEIGHTINGS, sft_loss

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "algorithm"

# --------------------------------------------------------------------------------------------- (1) mu


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


MuRule = Literal["cosine", "switch", "adaptive"]


@dataclass(frozen=True)
class AlgorithmConfig:
    """Everything that distinguishes SFT / GRPO / SFT-then-GRPO / CHORD-mu / CHORD-phi / IDFT.

    The defaults are the base every ``configs/algorithm/<name>.yaml`` starts from (``algorithms.config``
    registers them as ``algorithm/base``); a YAML states only what differs.
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
    adv_scale: Literal["std", "none"] = "std"  # std = GRPO (unbiased std); none = Dr.GRPO
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: float | None = None  # e.g. 3.0 for dual-clip PPO
    loss_agg: str = "token-mean"  # used by both terms; one of algorithms.losses.AGG_MODES
    max_len: int | None = None  # constant for seq-mean-token-sum-norm (None = the longest row, all ranks)
    kl_coef: float = 0.0  # weight of the k3 KL to the initial weights (TRL's beta, verl's kl_loss_coef)
    entropy_coef: float = 0.0
    tis_cap: float | None = None  # truncated importance sampling of the sampler/trainer gap: min(pi_old/pi_sampler, C)
    # --- SFT term ----------------------------------------------------------------------------------------
    sft_weighting: Literal["none", "dft", "phi", "idft"] = "none"
    idft_beta: float = 1.0
    idft_gamma_min: float = 0.1
    idft_gamma_max: float = 2.0
    idft_warmup_frac: float = 0.2  # lambda = 0 (DFT) for this share of training
    idft_ramp_frac: float = 0.1  # then a linear ramp to 1 over this share

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
        if self.tis_cap is not None and self.tis_cap <= 0:
            raise ValueError(f"tis_cap must be null or > 0, got {self.tis_cap}")

    @property
    def mu_schedule(self) -> MuSchedule:
        return MuSchedule(self.mu_peak, self.mu_valley, self.mu_warmup_steps, self.mu_decay_steps)

    def mu(self, step: int, total_steps: int | None = None, mean_reward: float | None = None) -> float:
        """mu at 1-based optimizer ``step``, whatever the rule. ``total_steps`` is needed by the switch rule
        when sft_steps is None; ``mean_reward`` (of the step's on-policy batch) by the adaptive rule, and
        ignored by the others."""
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

    def needs_rollouts(self, step: int, total_steps: int) -> bool:
        """Whether step ``step`` samples an on-policy batch: always when mu depends on its rewards, otherwise
        unless mu = 1 (the GRPO term would carry no weight)."""
        return self.mu_rule == "adaptive" or self.mu(step, total_steps) < 1.0

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


def preset_names() -> list[str]:
    """The named algorithms: one ``configs/algorithm/<name>.yaml`` each."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset(name: str, **overrides: Any) -> AlgorithmConfig:
    """The algorithm ``configs/algorithm/<name>.yaml`` names (its keys over the defaults), with ``overrides``."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown algorithm preset {name!r}; available: {preset_names()}")
    values = yaml.safe_load(path.read_text()) or {}
    values.pop("defaults", None)
    return replace(AlgorithmConfig.from_dict(values), **overrides)


# ------------------------------------------------------------------------------- (2), (3) the two terms


@dataclass
class MicroBatchOutput:
    loss: Tensor
    metrics: dict[str, float]


def on_policy_micro_loss(model: torch.nn.Module, batch: dict[str, Tensor], advantages: Tensor,
                         algo: AlgorithmConfig, temperature: float, use_sampler_logprobs: bool,
                         max_len: int | None, prompt_kv: DetachedPromptKV | None = None,
                         ref_model: torch.nn.Module | None = None,
                         ref_prompt_kv: DetachedPromptKV | None = None, padding_free: bool = False
                         ) -> MicroBatchOutput:
    """L_grpo, GRPO's clipped surrogate, on one micro-batch of on-policy trajectories (mean over it).

    Old log-probs are the detached current ones (one optimizer step per rollout batch, the paper's
    setting: rho = 1) unless ``use_sampler_logprobs``; the sampler/trainer mismatch is reported either way
    (``grpo/sampler_logprob_diff``, and its absolute mean), and with ``algo.tis_cap`` each token's surrogate
    is weighted by min(pi_old / pi_sampler, tis_cap) (``truncated_is_weight``; ``grpo/tis_clipped_share``).
    With ``algo.kl_coef != 0`` the frozen ``ref_model`` (the initial weights) scores the same tokens and
    the k3 estimate of KL(pi || pi_ref) is added with that weight, as TRL's ``beta`` and verl's
    ``kl_loss_coef`` do (metric ``grpo/kl``). ``padding_free``: the micro-batch's rows run packed into one
    sequence (``algorithms.packed``), each cut to its own window; the values are the same.
    """
    ref_logp = None
    if algo.kl_coef != 0.0:
        if ref_model is None:
            raise ValueError("algorithm.kl_coef != 0 needs the reference model")
        with torch.no_grad():
            ref_logp, _, _ = completion_logprobs(ref_model, batch, ref_prompt_kv, temperature=temperature,
                                                 with_entropy=False, padding_free=padding_free)
    need_entropy = algo.entropy_coef != 0.0 or temperature == 1.0
    logp, entropy, batch = completion_logprobs(model, batch, prompt_kv, temperature=temperature,
                                               with_entropy=need_entropy, entropy_grad=algo.entropy_coef != 0.0,
                                               padding_free=padding_free)
    mask = batch["loss_mask"]
    sampler_logp = batch["old_logprobs"]
    old_logp = sampler_logp if use_sampler_logprobs else logp.detach()
    is_weight = None if algo.tis_cap is None else truncated_is_weight(old_logp, sampler_logp, algo.tis_cap)
    loss, pg_metrics = clipped_policy_loss(
        logp, old_logp, advantages, mask, eps_low=algo.eps_low, eps_high=algo.eps_high,
        dual_clip=algo.dual_clip, agg=algo.loss_agg, max_len=max_len, ref_logp=ref_logp, kl_coef=algo.kl_coef,
        entropy=entropy, entropy_coef=algo.entropy_coef, is_weight=is_weight,
    )
    with torch.no_grad():
        metrics = {f"grpo/{k}": float(v) for k, v in pg_metrics.items()}
        gap = logp - sampler_logp  # the trainer's teacher-forced log-prob minus the sampler's, per token
        metrics["grpo/sampler_logprob_abs_diff"] = float(masked_mean(gap.abs(), mask))
        metrics["grpo/sampler_logprob_diff"] = float(masked_mean(gap, mask))
        if is_weight is not None:
            metrics["grpo/tis_weight_mean"] = float(masked_mean(is_weight, mask))
            metrics["grpo/tis_clipped_share"] = float(masked_mean((is_weight >= algo.tis_cap).float(), mask))
        if entropy is not None and temperature == 1.0:
            metrics["onpolicy/cll_mean"] = float(masked_mean(centred_loglik(logp.detach(), entropy.detach()), mask))
    return MicroBatchOutput(loss, metrics)


def expert_micro_loss(model: torch.nn.Module, batch: dict[str, Tensor], algo: AlgorithmConfig, step: int,
                      total_steps: int, max_len: int | None, prompt_kv: DetachedPromptKV | None = None,
                      padding_free: bool = False) -> MicroBatchOutput:
    """L_sft, the weighted SFT term, on one micro-batch of expert trajectories (mean over it).

    The entropy pass is always run: IDFT needs it, and the centred log-likelihood of the expert tokens is
    the diagnostic that shows how far off-policy the expert data is.
    """
    logp, entropy, batch = completion_logprobs(model, batch, prompt_kv, temperature=1.0, with_entropy=True,
                                               padding_free=padding_free)
    mask = batch["loss_mask"]
    loss, sft_metrics = sft_loss(logp, mask, weighting=algo.sft_weighting, agg=algo.loss_agg, entropy=entropy,
                                 idft_params=algo.idft_params(step, total_steps), max_len=max_len)
    with torch.no_grad():
        metrics = {f"sft/{k}": float(v) for k, v in sft_metrics.items()}
        metrics["expert/cll_mean"] = float(masked_mean(centred_loglik(logp.detach(), entropy.detach()), mask))
    return MicroBatchOutput(loss, metrics)


# -------------------------------------------------------------------------------------- (4) the combination


def term_weights(mu: float) -> tuple[float, float]:
    """(weight of L_grpo, weight of L_sft) = (1 - mu, mu). Each term is already a mean over its *own*
    units (tokens or sequences), so mu is the only relative weight: how many expert samples a batch holds
    does not shift the balance."""
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"mu must be in [0, 1], got {mu}")
    return 1.0 - mu, mu


@dataclass
class StepContext:
    """What ``chord_step`` needs besides the batch: the DeepSpeed engine and how to run micro-batches."""

    engine: Any  # a DeepSpeed engine: engine(input_ids=...), engine.backward(loss, scale_wrt_gas=False), engine.step()
    micro_batch_size: int
    micro_batch_tokens: int
    temperature: float  # the sampler's, for the on-policy log-probs
    use_sampler_logprobs: bool
    dtype: str  # autocast policy: bf16 | fp32
    world_size: int = 1
    pad_token_id: int = 0
    prompt_kv: DetachedPromptKV | None = None  # trainer.prompt_grad=detached
    ref_model: torch.nn.Module | None = None  # kl_coef != 0
    ref_prompt_kv: DetachedPromptKV | None = None
    padding_free: bool = False  # trainer.padding_free: each micro-batch's rows packed into one sequence

    @property
    def device(self) -> torch.device:
        return next(self.engine.module.parameters()).device


@dataclass
class StepResult:
    """The step's metrics (term-wide means) and whether the optimizer stepped."""

    metrics: dict[str, float] = field(default_factory=dict)
    stepped: bool = True


class _MetricMeans:
    """Micro-batch metrics accumulated with each micro-batch's share of its term's units as weight, so that
    the step's figure is the term-wide mean whatever the micro-batch size."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}

    def add(self, metrics: dict[str, float], weight: float = 1.0) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * weight
            self.weights[k] = self.weights.get(k, 0.0) + weight

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.weights[k] if self.weights[k] > 0 else 0.0 for k in self.sums}


def chord_step(ctx: StepContext, algo: AlgorithmConfig, on_policy: list[Trajectory], expert: list[Trajectory],
               mu: float, step: int, total_steps: int) -> StepResult:
    """One optimizer step on L = (1 - mu) L_grpo(on_policy) + mu L_sft(expert), this rank's share of both.

    Each term is back-propagated on its own, micro-batch by micro-batch (``_backward_term``), so that the
    summed gradients over micro-batches and ranks equal those of L computed on the whole batch at once. A
    term whose weight is 0 is not run at all. Metrics: the terms' values (``loss/grpo``, ``loss/sft``,
    ``loss/total``, summed over ranks) and the micro-batch metrics (``grpo/*``, ``sft/*``, ...).
    """
    grpo_weight, sft_weight = term_weights(mu)
    means = _MetricMeans()
    grpo_value = sft_value = 0.0
    backward_calls = 0
    # Whether a term runs is decided over all ranks: it holds collectives (its units, its backward passes).
    if grpo_weight > 0.0 and all_reduce_max(len(on_policy)) > 0:
        rewards = torch.tensor([t.reward for t in on_policy], dtype=torch.float32)
        advantages = group_advantages(rewards, [t.group_id for t in on_policy], scale=algo.adv_scale)
        # A zero advantage contributes nothing to the surrogate nor its gradient (rho = 1): skip its
        # forward pass, but its tokens stay in the denominator, as in the formula.
        skip_zero = algo.kl_coef == 0.0 and algo.entropy_coef == 0.0
        live = [i for i in range(len(on_policy)) if not (skip_zero and float(advantages[i]) == 0.0)]
        if on_policy:
            means.add({"grpo/zero_adv_share": 1.0 - len(live) / len(on_policy),
                       "grpo/adv_abs_mean": float(advantages.abs().mean())})
        device = ctx.device
        grpo_value, calls = _backward_term(
            ctx, algo, on_policy, live, grpo_weight, means,
            lambda data, rows, max_len: on_policy_micro_loss(
                ctx.engine, data, advantages[rows].to(device), algo, ctx.temperature, ctx.use_sampler_logprobs,
                max_len, ctx.prompt_kv, ctx.ref_model, ctx.ref_prompt_kv, padding_free=ctx.padding_free))
        backward_calls += calls
    if sft_weight > 0.0 and all_reduce_max(len(expert)) > 0:
        sft_value, calls = _backward_term(
            ctx, algo, expert, list(range(len(expert))), sft_weight, means,
            lambda data, rows, max_len: expert_micro_loss(ctx.engine, data, algo, step, total_steps, max_len,
                                                          ctx.prompt_kv, padding_free=ctx.padding_free))
        backward_calls += calls
    if ctx.prompt_kv is not None:
        means.add({"train/prompt_kv_computed_share":
                   ctx.prompt_kv.computed_tokens / max(1, ctx.prompt_kv.prompt_tokens)})
        ctx.prompt_kv.clear()  # its keys/values belong to the weights the step is about to change
    if ctx.ref_prompt_kv is not None:
        ctx.ref_prompt_kv.clear()  # the reference's stay valid, but would grow without bound
    stepped = _step_or_skip(ctx, backward_calls)

    grpo_global, sft_global = all_reduce_sum(grpo_value), all_reduce_sum(sft_value)
    metrics = means.means()
    metrics.update({"loss/grpo": grpo_global, "loss/sft": sft_global,
                    "loss/total": grpo_weight * grpo_global + sft_weight * sft_global})
    return StepResult(metrics, stepped)


MicroLoss = Callable[[dict[str, Tensor], list[int], int | None], MicroBatchOutput]


def _backward_term(ctx: StepContext, algo: AlgorithmConfig, term: list[Trajectory], forwarded: list[int],
                   weight: float, means: _MetricMeans, micro_loss: MicroLoss) -> tuple[float, int]:
    """Back-propagate ``weight`` x (one loss term averaged over all of ``term``'s units, all ranks).

    Only the rows ``forwarded`` are run; the denominator counts every row of ``term``. Each micro-batch's
    mean loss is scaled by its share of the global units, and by the world size because DeepSpeed
    averages gradients over ranks. Every rank makes the same number of backward calls: ZeRO reduces the
    gradients in each one, so a rank with fewer micro-batches (fewer live rows, shorter rows) adds
    zero-valued ones; otherwise the ranks' collectives pair up wrongly and the step hangs. Returns this
    rank's share of the term's value and the backward calls.
    """
    masks = [torch.tensor(t.loss_mask, dtype=torch.float32)[None] for t in term]
    global_units = all_reduce_sum(sum(aggregation_units(m, algo.loss_agg) for m in masks))
    if global_units == 0:  # no rank has a trainable token (every rollout cut before its first turn)
        return 0.0, 0
    max_len = _norm_length(algo, term)
    device = ctx.device
    value, calls = 0.0, 0
    batches = _micro_batches(ctx, [term[i] for i in forwarded])
    padding = all_reduce_max(len(batches)) - len(batches)  # before any backward: those reduce too
    for idx in batches:
        rows = [forwarded[i] for i in idx]
        data = collate([term[i] for i in rows], pad_token_id=ctx.pad_token_id)
        data = {k: v.to(device, non_blocking=True) for k, v in data.items()}
        share = aggregation_units(data["loss_mask"], algo.loss_agg) / global_units
        with autocast_context(device.type, ctx.dtype):
            out = micro_loss(data, rows, max_len)
        ctx.engine.backward(weight * out.loss * share * ctx.world_size, scale_wrt_gas=False)
        value += float(out.loss.detach()) * share
        calls += 1
        means.add(out.metrics, share)
    for _ in range(padding):
        _zero_backward(ctx)
        calls += 1
    return value, calls


def _zero_backward(ctx: StepContext) -> None:
    """A backward pass that adds nothing to any gradient but takes part in ZeRO's gradient reduction."""
    dummy = torch.tensor([[ctx.pad_token_id]], device=ctx.device)
    ctx.engine.backward(0.0 * ctx.engine(input_ids=dummy).logits.sum(), scale_wrt_gas=False)


def _micro_batches(ctx: StepContext, trajectories: list[Trajectory]) -> list[list[int]]:
    """Micro-batches capped by the tokens that keep activations for the backward pass: whole rows, or
    with detached prompts only each row's span from its first trainable token on. Packed
    (``ctx.padding_free``, full prompts) the cap is on the sum of the rows' lengths, not rows x longest."""
    if ctx.prompt_kv is not None:
        lengths = [t.num_tokens - trainable_start(t.loss_mask) for t in trajectories]
    else:
        lengths = [t.num_tokens for t in trajectories]
    packed = ctx.padding_free and ctx.prompt_kv is None
    return plan_micro_batches(lengths, ctx.micro_batch_size, ctx.micro_batch_tokens, packed=packed)


def _norm_length(algo: AlgorithmConfig, term: list[Trajectory]) -> int | None:
    """The constant of ``seq-mean-token-sum-norm``: ``algo.max_len``, else the longest row on any rank."""
    if algo.loss_agg != "seq-mean-token-sum-norm":
        return None
    if algo.max_len is not None:
        return int(algo.max_len)
    return all_reduce_max(max((t.num_tokens for t in term), default=0))


def _step_or_skip(ctx: StepContext, backward_calls: int) -> bool:
    """One optimizer step, unless no rank back-propagated anything.

    A batch whose groups all have zero advantage (and no expert term) back-propagates nothing; every rank
    then skips the step (``_backward_term`` gives all ranks the same number of backward calls): Adam would
    otherwise still move the weights on its momentum alone. Returns whether the optimizer stepped.
    """
    if all_reduce_max(backward_calls) == 0:
        return False
    ctx.engine.step()
    return True
