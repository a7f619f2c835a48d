"""The training loop: rollouts and expert data in, one DeepSpeed optimizer step per batch out.

One step (1-based ``step``):
  1. on-policy batch: B prompts x G rollouts, unless mu is known to be 1 (``AlgorithmConfig.needs_rollouts``)
  2. mu = algorithm.mu(step, mean reward of that batch)        (``algorithms.chord``)
  3. expert batch: E expert trajectories (skipped when mu == 0)
  4. the step's learning rate (``algorithms.lr_schedule``), then ``chord_step``: L = (1 - mu) L_grpo + mu L_sft
     back-propagated over micro-batches, one optimizer step
  5. metrics (to the loggers ``logger`` names: JSONL, TensorBoard, W&B; and a progress bar); every
     ``eval_every`` steps a greedy held-out evaluation; every ``save_every`` steps an atomic checkpoint.

Which prompts and expert samples a step uses is a pure function of (seed, step), and rollout sampling is
seeded by (seed, step, rank), so a run resumed from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from agents import SamplingParams, load_model, rollout
from agents.call_format import SETTINGS as CALL_FORMAT_SETTINGS
from agents.call_format import renderer_for, resolve_call_format, set_chat_template
from agents.engines import make_engine
from agents.heldout import evaluate_tasks
from agents.lora import LoraConfigError, apply_lora
from agents.models import check_model_spec, load_tokenizer, resolve_device, resolve_dtype
from agents.trajectory import Trajectory
from algorithms.checkpoint import (
    CheckpointError,
    choose_resume_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from algorithms.chord import AlgorithmConfig, StepContext, chord_step
from algorithms.config import (
    TrainConfigError,
    TrainerConfig,
    apply_data_shorthand,
    env_config,
    logging_config,
    lora_settings,
    packs_micro_batches,
    rollout_engine,
    validate_train_config,
)
from algorithms.distributed import (
    DistInfo,
    all_reduce_max,
    all_reduce_sum,
    all_reduce_sum_list,
    init_distributed,
    launched_world_size,
)
from algorithms.dynamic_sampling import (
    GroupOutcome,
    PromptHistory,
    draw_prompts,
    is_informative,
    kept_groups,
    pass_rate,
    pass_rate_histogram,
)
from algorithms.expert_data import ExpertSource, load_expert_pool
from algorithms.lr_schedule import lr_at
from algorithms.metrics import MetricsLogger
from algorithms.packed import require_attention_interface
from algorithms.prompt_kv import DetachedPromptKV
from algorithms.reporting import training_summary, write_run_report
from algorithms.zero3 import gathered_for_generation
from envs import EnvConfigError


@dataclass
class Rollouts:
    """A step's sampling (this rank's share): the trajectories trained on, all those drawn (with dynamic
    sampling, also the dropped tied groups and the redraws), and what the sampling cost and found."""
    trajectories: list[Trajectory]
    drawn: list[Trajectory]
    seconds: float
    generated_tokens: int
    metrics: dict[str, float]


@dataclass
class StepBatch:
    """What one optimizer step trains on (this rank's share)."""

    on_policy: list[Trajectory] = field(default_factory=list)
    expert: list[Trajectory] = field(default_factory=list)
    rollout_seconds: float = 0.0
    generated_tokens: int = 0


class Trainer:
    """Builds everything from a Hydra config and runs the loop; see the module docstring."""

    def __init__(self, cfg: DictConfig):
        self.cfg = apply_data_shorthand(cfg)
        try:
            self.algo = AlgorithmConfig.from_dict(OmegaConf.to_container(cfg.algorithm, resolve=True))
        except (TypeError, ValueError) as err:
            raise TrainConfigError(f"algorithm: {err}") from err
        # Checked against the launcher's announced world size first (the call format and the environments are
        # made next), so that a bad config stops in seconds, before DeepSpeed sets up (and on a fresh machine
        # compiles) its communication op; checked again against the world that formed, should the two differ.
        self.t: TrainerConfig = validate_train_config(cfg, self.algo, launched_world_size())
        check_model_spec(str(cfg.model.spec))
        self.logging = logging_config(cfg)
        self.engine_config, self.engine_kind = rollout_engine(cfg, self.t)
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.total_steps = self.t.total_steps

        # The call format (env.kwargs.call_format=native|auto) is read off the chat template, so then the
        # tokenizer comes before the environments, and load_model takes that one rather than loading it again;
        # a bad env.kwargs / env.train_kwargs / split fails before the model loads.
        self.call_format, tokenizer = self._call_format()
        self.train_env = self._make_env(cfg.env.train_split, training=True)
        self.num_train_tasks = self.train_env.num_tasks
        self.eval_envs: list[Any] = [self._make_env(cfg.env.eval_split)] if self.t.eval_every > 0 else []
        self.dist: DistInfo = init_distributed()
        if self.dist.is_main and self.dist.world_size > 1:  # a multi-node launch that formed one world says so
            print(f"distributed: {self.dist.world_size} ranks, {self.dist.local_world_size} on this node",
                  flush=True)
        if self.dist.world_size != launched_world_size():
            self.t = validate_train_config(cfg, self.algo, self.dist.world_size)
        self._warn_on_shared_tasks()

        torch.manual_seed(int(cfg.seed))
        accelerator = resolve_device("auto")  # where DeepSpeed places the module
        self.dtype = resolve_dtype(cfg.model.dtype, accelerator)
        if str(cfg.model.dtype) == "auto" and self.dist.is_main:
            print(f"model.dtype=auto: {self.dtype} on this {accelerator}", flush=True)
        self.model, self.tokenizer = load_model(cfg.model.spec, dtype=self.dtype, seed=int(cfg.seed),
                                                tokenizer=tokenizer)
        self.model = self._adapt_for_training(self.model)
        packs = packs_micro_batches(cfg, self.t)
        if packs:  # before DeepSpeed and the rollout engine set up, not inside step 1
            try:
                require_attention_interface(self.model)
            except ValueError as err:
                raise TrainConfigError(str(err)) from None
        if tokenizer is None:  # one from _call_format has its chat template already
            set_chat_template(self.tokenizer, cfg.model.get("chat_template"))
        self.renderer = renderer_for(self.tokenizer, self.call_format)
        self.experts = ExpertSource(self._expert_env(), self.renderer, seed=int(cfg.seed), per_step=self.t.expert_per_step,
                                    task_limit=self.t.expert_tasks,
                                    pool=load_expert_pool(self.t.expert_data) if self.t.expert_data else None)
        if self.algo.uses_expert and not self.experts.has_expert_data():
            raise TrainConfigError(
                f"algorithm.name={self.algo.name} trains on expert data (mu > 0), but env.name={cfg.env.name} "
                f"gave no expert trajectory for split {cfg.env.train_split!r} (info['expert'] is empty)")

        # kl_coef > 0: a frozen copy of the initial weights, taken before DeepSpeed or a resume touch them.
        self.ref_model = self._reference_model() if self.algo.kl_coef != 0.0 else None
        self.engine = self._deepspeed_engine()
        # DeepSpeed placed the module on its accelerator; the weights stay fp32 (the optimizer's master
        # copy) and bf16 comes from autocast, on CPU and on CUDA alike.
        self.device = next(self.engine.module.parameters()).device
        self.device_type = self.device.type
        if self.ref_model is not None:
            self.ref_model.to(self.device)
        # rollout.engine: vLLM loads the model's initial weights itself and gets the trained ones after every
        # optimizer step (update_weights); the HF engine samples from the training module directly.
        self.sampler = make_engine(self.engine_kind, self.engine.module, self.tokenizer, model_spec=str(cfg.model.spec),
                                   dtype=self.dtype, seed=int(cfg.seed), config=self.engine_config,
                                   world_size=self.dist.world_size)
        self.rollout_envs: list[Any] = []
        # trainer.prompt_grad=detached: prompts forwarded without gradient, shared by common prefix.
        self.prompt_kv = DetachedPromptKV() if self.t.prompt_grad == "detached" else None
        self.ref_prompt_kv = DetachedPromptKV() if self.prompt_kv is not None and self.ref_model is not None else None
        self.step_context = StepContext(
            engine=self.engine, micro_batch_size=self.t.micro_batch_size, micro_batch_tokens=self.t.micro_batch_tokens,
            temperature=self.t.temperature, use_sampler_logprobs=self.t.use_sampler_logprobs, dtype=self.dtype,
            world_size=self.dist.world_size, pad_token_id=self.tokenizer.pad_token_id or 0, prompt_kv=self.prompt_kv,
            ref_model=self.ref_model, ref_prompt_kv=self.ref_prompt_kv,
            padding_free=packs)

        if packs and not self.t.padding_free and self.dist.is_main:
            print("deepspeed ZeRO-3: micro-batches run packed, one forward pass each (as trainer.padding_free=true), "
                  "so every rank gathers the parameters the same number of times", flush=True)
        self.start_step = 0
        self.skipped_steps = 0
        self.state: dict[str, Any] = {"eval_history": []}
        self._maybe_resume()
        self.prompt_history = PromptHistory(self.t.prompt_filter_visits, self.state.get("prompt_history"))
        self.logger = MetricsLogger(self.run_dir, enabled=self.dist.is_main, resume_step=self.start_step,
                                    total_steps=self.total_steps, show_progress=self.t.progress,
                                    loggers=self.logging.loggers, wandb=self.logging.wandb,
                                    run_config=OmegaConf.to_container(cfg, resolve=True))
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))

    # -- construction ------------------------------------------------------------------------------------
    def _call_format(self) -> tuple[str | None, Any]:
        """``env.kwargs.call_format`` resolved with the model's chat template (``agents.call_format``): a
        concrete format unchanged, None when the environment takes no call format. With it, the tokenizer
        (chat template set) that ``native``/``auto`` was resolved with, for ``load_model`` to take, or None
        when none was needed (``load_model`` loads it with the model)."""
        setting = (self.cfg.env.get("kwargs") or {}).get("call_format")
        if setting not in CALL_FORMAT_SETTINGS:
            return setting, None
        try:
            tokenizer = set_chat_template(load_tokenizer(str(self.cfg.model.spec)), self.cfg.model.get("chat_template"))
            return resolve_call_format(setting, tokenizer), tokenizer
        except ValueError as err:
            raise TrainConfigError(str(err)) from None

    def _call_format_kwargs(self) -> dict[str, Any]:
        """What every environment of the run is made with on top of its config: the resolved call format
        (``env.kwargs.call_format=native|auto`` made concrete), or nothing when the environment takes none."""
        return {"call_format": self.call_format} if self.call_format is not None else {}

    def _expert_env(self) -> Any:
        """Where the expert trajectories come from: the training environment, or, with ``env.expert_kwargs``
        (e.g. ``{path: sft.jsonl}``), one made with those on top of the training kwargs: the CHORD paper
        trains on an RL split of tasks and draws its experts from a separate SFT split."""
        section = self.cfg.env.get("expert_kwargs")
        extra = OmegaConf.to_container(section, resolve=True) if section is not None else {}
        extra = {k: v for k, v in (extra or {}).items() if v is not None}
        if not extra:
            return self.train_env
        try:
            return env_config(self.cfg).make(self.cfg.env.train_split, training=True, split_key="env.expert_kwargs",
                                             **{**self._call_format_kwargs(), **extra})
        except EnvConfigError as err:
            raise TrainConfigError(f"env.expert_kwargs: {err}") from None

    def _make_env(self, split: str, training: bool = False) -> Any:
        """An environment on ``split``: ``env.kwargs``, with ``env.train_kwargs`` on top when ``training``.

        The override lets the rollouts be scored differently from the held-out evaluation (a partial
        reward that gives GRPO groups something to rank, while the reported score stays strict), the way
        verl and TRL take separate train and validation reward functions.
        """
        split_key = "env.train_split" if training else "env.eval_split"
        try:
            return env_config(self.cfg).make(split, training=training, split_key=split_key,
                                             **self._call_format_kwargs())
        except EnvConfigError as err:
            raise TrainConfigError(str(err)) from None

    def _warn_on_shared_tasks(self) -> None:
        """A held-out score over training tasks measures memory, not skill: say so before any work."""
        if not self.eval_envs or not self.dist.is_main:
            return
        train_split, eval_split = self.cfg.env.train_split, self.cfg.env.eval_split
        if train_split == eval_split:
            print(f"warning: env.eval_split={eval_split!r} is the training split: the held-out score will be "
                  f"measured on training tasks", file=sys.stderr, flush=True)
            return
        train_ids, eval_ids = self.train_env.task_ids, self.eval_envs[0].task_ids
        if train_ids is not None and eval_ids is not None:
            shared = set(train_ids) & set(eval_ids)
            if shared:
                print(f"warning: {len(shared)} of the {len(set(eval_ids))} held-out tasks (env.eval_split="
                      f"{eval_split!r}) are also training tasks (env.train_split={train_split!r}), e.g. "
                      f"{sorted(shared)[0]!r}", file=sys.stderr, flush=True)

    def _adapt_for_training(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model.lora``: the model wrapped with trainable LoRA adapters (``agents.lora``; the base frozen).
        ``trainer.gradient_checkpointing``: each decoder layer's activations recomputed in the backward pass
        instead of stored (non-reentrant, so frozen inputs and LoRA need no special casing)."""
        settings = lora_settings(self.cfg)
        if settings is not None:
            try:
                model = apply_lora(model, settings)
            except LoraConfigError as err:
                raise TrainConfigError(str(err)) from None
        if self.t.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model

    def _reference_model(self) -> torch.nn.Module:
        """The KL term's reference policy: the initial weights, frozen (bf16 where training runs in bf16)."""
        import copy

        ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        return ref.to(torch.bfloat16) if self.dtype == "bf16" else ref

    def _deepspeed_engine(self) -> Any:
        import deepspeed

        t = self.t
        params = [p for p in self.model.parameters() if p.requires_grad]
        ds_config = OmegaConf.to_container(self.cfg.deepspeed, resolve=True)
        offload = ((ds_config.get("zero_optimization") or {}).get("offload_optimizer") or {}).get("device")
        if offload == "cpu":  # ZeRO-Offload steps on the CPU: DeepSpeed's vectorised Adam (AdamW mode)
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            optimizer = DeepSpeedCPUAdam(params, lr=t.lr, betas=t.adam_betas, weight_decay=t.weight_decay, eps=1e-8,
                                         adamw_mode=True)
        else:
            optimizer = torch.optim.AdamW(params, lr=t.lr, betas=t.adam_betas, weight_decay=t.weight_decay, eps=1e-8)
        if self.dtype == "bf16" and not any((ds_config.get(k) or {}).get("enabled") for k in ("bf16", "fp16")):
            # Our bf16 is fp32 weights under torch.autocast, entered around each forward. DeepSpeed's engine turns
            # a surrounding CUDA autocast off inside its forward (and warns once) unless its own torch_autocast
            # section asks for it: without this, GPU training ran in fp32 (about twice the activation memory).
            # No lower-precision modules: gradients stay fp32 and are reduced in fp32, as before.
            ds_config.setdefault("torch_autocast", {"enabled": True, "dtype": "bfloat16",
                                                    "lower_precision_safe_modules": []})
        ds_config.update({
            "train_micro_batch_size_per_gpu": 1,
            "gradient_accumulation_steps": 1,
            # We call backward once per micro-batch and step() once per batch: step() is the boundary.
            "managed_gradient_accumulation": False,
            "gradient_clipping": t.grad_clip,
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        })
        engine, *_ = deepspeed.initialize(model=self.model, optimizer=optimizer, config=ds_config)
        return engine

    def _maybe_resume(self) -> None:
        """Load the checkpoint ``trainer.resume`` names, if any (``algorithms.checkpoint``)."""
        try:
            path = choose_resume_checkpoint(self.ckpt_root, self.t.resume, self.t.resume_fallback,
                                            is_main=self.dist.is_main, world_size=self.dist.world_size,
                                            warn=lambda line: print(line, file=sys.stderr, flush=True))
        except CheckpointError as err:
            raise TrainConfigError(str(err)) from None
        if path is None:
            return
        self.state = load_checkpoint(self.engine, path)
        self.start_step = int(self.state["step"])
        self.sampler.update_weights(self.engine.module)  # a vLLM sampler holds the initial weights
        if self.dist.is_main:
            print(f"resumed from {path} at step {self.start_step}", flush=True)

    # -- data --------------------------------------------------------------------------------------------
    def _rng(self, step: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([int(self.cfg.seed), step, stream])

    def _rank_share(self, items: list) -> list:
        """This rank's items: every ``world_size``-th from its ``rank`` (over all nodes), so the ranks' shares are
        disjoint and cover ``items``; ``prompts_per_step`` and ``expert_per_step`` divide evenly."""
        return items[self.dist.rank::self.dist.world_size]

    def prompt_share(self, prompts: list[int]) -> list[tuple[int, int]]:
        """This rank's part of a step's on-policy batch ``prompts`` (``step_prompts``): ``(slot in the global
        batch, train-task index)`` pairs."""
        return self._rank_share(list(enumerate(prompts)))

    def eval_share(self, num_tasks: int) -> list[int]:
        """The indices of the held-out tasks this rank evaluates, of the first ``num_tasks``."""
        return self._rank_share(list(range(num_tasks)))

    def _sampling(self, step: int, greedy: bool = False, max_new_tokens: int | None = None) -> SamplingParams:
        return SamplingParams(temperature=self.t.temperature, top_p=self.t.top_p,
                              max_new_tokens=max_new_tokens or self.t.max_new_tokens, greedy=greedy,
                              seed=int(self.cfg.seed) * 1_000_003 + step * 101)

    def step_prompts(self, step: int, batch: int = 0, exclude: set[int] | None = None) -> list[int]:
        """The train-task indices of step ``step``'s on-policy batch (all ranks): a pure function of (seed, step,
        batch) and, with ``trainer.prompt_filter_visits``, of the prompt history every rank shares. ``batch``
        > 0 is a dynamic-sampling redraw, which leaves out the step's earlier prompts (``exclude``)."""
        return self._draw_prompts(step, batch, exclude)[0]

    def _draw_prompts(self, step: int, batch: int, exclude: set[int] | None) -> tuple[list[int], int]:
        skip = self.prompt_history.skip if self.t.prompt_filter_visits > 0 else None
        return draw_prompts(self._rng(step, 0 if batch == 0 else 1000 + batch), self.num_train_tasks,
                            self.t.prompts_per_step, exclude=exclude, skip=skip)

    def _rollout_batch(self, step: int, batch: int, prompts: list[int]) -> list[Trajectory]:
        """This rank's share of ``prompts``, each rolled out ``group_size`` times (``agents.rollout``)."""
        # Slot k of the global batch: prompt k // G, sample k % G. A rank takes every world_size-th prompt;
        # each episode's reset seed and sampling stream are named by its global slot (a redraw's slots follow
        # the step's earlier ones), so splitting the batch over ranks changes nothing about what is sampled.
        group = int(self.algo.group_size)
        mine = self.prompt_share(prompts)
        n = len(mine) * group
        while len(self.rollout_envs) < n:
            self.rollout_envs.append(self._make_env(self.cfg.env.train_split, training=True))
        offset = batch * len(prompts) * group
        slots = [offset + k * group + g for k, _ in mine for g in range(group)]
        reset_kwargs = [{"seed": step * 100_000 + slot, "options": {"index": prompts[(slot - offset) // group]}}
                        for slot in slots]
        group_ids = [f"{step}-{k}" if batch == 0 else f"{step}-{batch}-{k}" for k, _ in mine for _ in range(group)]
        episode_seeds = [(int(self.cfg.seed) * 1_000_003 + step) * 100_000 + slot for slot in slots]
        self.engine.eval()
        with self._sampling_weights():
            trajectories = rollout(self.rollout_envs[:n], self.sampler, self.renderer, reset_kwargs=reset_kwargs,
                                   group_ids=group_ids, sampling=self._sampling(step),
                                   episode_seeds=episode_seeds, max_turns=self.t.max_turns,
                                   guided_calls=self.t.rollout_guided_calls)
        self.engine.train()
        return trajectories

    def _group_outcomes(self, batch: int, prompts: list[int], trajectories: list[Trajectory]) -> list[GroupOutcome]:
        """Every group of a draw (all ranks'), from this rank's trajectories and one all-reduce."""
        group = int(self.algo.group_size)
        rates, informative = [0.0] * len(prompts), [0.0] * len(prompts)
        for i, (k, _) in enumerate(self.prompt_share(prompts)):
            rewards = [t.reward for t in trajectories[i * group:(i + 1) * group]]
            rates[k], informative[k] = pass_rate(rewards), float(is_informative(rewards))
        merged = all_reduce_sum_list(rates + informative)
        return [GroupOutcome(batch, k, task, merged[k], merged[len(prompts) + k] > 0.5)
                for k, task in enumerate(prompts)]

    def _rollouts(self, step: int) -> Rollouts:
        """The step's on-policy batch. With ``trainer.dynamic_sampling`` further batches of fresh prompts are
        drawn (at most ``trainer.max_extra_batches``) until ``informative_groups`` groups have differing rewards,
        and only those are kept (``algorithms.dynamic_sampling``); every draw's groups update the prompt history."""
        t = self.t
        dynamic = t.dynamic_sampling
        target = t.informative_groups or t.prompts_per_step
        group = int(self.algo.group_size)
        t0 = time.time()
        drawn: list[Trajectory] = []
        kept: list[Trajectory] = []
        outcomes: list[GroupOutcome] = []
        seen: set[int] = set()
        passed_over = 0
        for batch in range(1 + (t.max_extra_batches if dynamic else 0)):
            prompts, skipped = self._draw_prompts(step, batch, seen)
            passed_over += skipped
            seen.update(prompts)
            trajectories = self._rollout_batch(step, batch, prompts)
            drawn += trajectories
            these = self._group_outcomes(batch, prompts, trajectories)
            outcomes += these
            for outcome in these:
                self.prompt_history.record(outcome.task, outcome.informative)
            if not dynamic:
                kept = trajectories
                break
            wanted = kept_groups(outcomes, target)
            kept += [traj for i, (k, _) in enumerate(self.prompt_share(prompts)) if (batch, k) in wanted
                     for traj in trajectories[i * group:(i + 1) * group]]
            if sum(o.informative for o in outcomes) >= target:
                break
        self.state["prompt_history"] = self.prompt_history.state_dict()
        informative = sum(o.informative for o in outcomes)
        metrics = {"sampling/groups_drawn": float(len(outcomes)), "sampling/informative_groups": float(informative),
                   "sampling/informative_share": informative / max(1, len(outcomes)),
                   "sampling/groups_trained": float(min(informative, target) if dynamic else len(outcomes)),
                   "sampling/extra_batches": float(outcomes[-1].batch),
                   "sampling/extra_rollouts": float(sum(o.batch > 0 for o in outcomes) * group),
                   "sampling/prompts_filtered": float(passed_over),
                   **pass_rate_histogram(o.pass_rate for o in outcomes)}
        generated = sum(int(sum(traj.loss_mask)) for traj in drawn)
        return Rollouts(kept, drawn, time.time() - t0, generated, metrics)

    # -- one optimizer step ------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        t0 = time.time()
        algo = self.algo
        batch = StepBatch()
        sampling: dict[str, float] = {}
        rewards: list[float] = []
        if algo.needs_rollouts(step, self.total_steps):
            drawn = self._rollouts(step)
            batch.on_policy, batch.rollout_seconds, batch.generated_tokens = (drawn.trajectories, drawn.seconds,
                                                                              drawn.generated_tokens)
            sampling = drawn.metrics
            rewards = [t.reward for t in drawn.drawn]  # the policy's reward on all it sampled, kept or not
        mean_reward = all_reduce_sum(sum(rewards)) / max(1.0, all_reduce_sum(len(rewards)))
        mu = algo.mu(step, self.total_steps, mean_reward=mean_reward)
        if mu > 0.0:
            batch.expert = self.experts.sample(step, self.dist.rank, self.dist.world_size)

        self._set_lr(step)
        t_train = time.time()
        result = chord_step(self.step_context, algo, batch.on_policy, batch.expert, mu, step, self.total_steps)
        self.skipped_steps += not result.stepped
        # The sampler must not reuse anything computed with the old weights (KV prefixes; vLLM's copy).
        t_sync = time.time()
        self.sampler.update_weights(self.engine.module)
        sync_seconds = time.time() - t_sync
        train_seconds = time.time() - t_train
        trained_tokens = sum(t.num_tokens for t in batch.on_policy + batch.expert)
        metrics = {**result.metrics, **sampling, "optimizer/skipped_steps": float(self.skipped_steps)}
        metrics.update({
            "step": step, "mu": mu, "reward/mean": mean_reward,
            "reward/accuracy": all_reduce_sum(sum(r >= 1.0 for r in rewards)) / max(1.0, all_reduce_sum(len(rewards))),
            "rollout/generated_tokens": all_reduce_sum(batch.generated_tokens),
            "time/rollout_s": batch.rollout_seconds, "time/train_s": train_seconds, "time/step_s": time.time() - t0,
            "time/weight_sync_s": sync_seconds,
            "throughput/rollout_tokens_per_s": batch.generated_tokens / max(batch.rollout_seconds, 1e-9),
            "throughput/train_tokens_per_s": trained_tokens / max(train_seconds, 1e-9),
            "throughput/tokens_per_s": (batch.generated_tokens + trained_tokens) / max(time.time() - t0, 1e-9),
            "lr": float(self.engine.optimizer.param_groups[0]["lr"]) if hasattr(self.engine.optimizer, "param_groups") else self.t.lr,
        })
        if batch.on_policy:
            turns = [t.info.get("turns", 0) for t in batch.on_policy]
            metrics["rollout/turns_mean"] = float(np.mean(turns))
            metrics["rollout/render_mismatch"] = float(sum(bool(t.info.get("render_mismatch")) for t in batch.on_policy))
            metrics["rollout/truncated"] = float(sum(bool(t.info.get("truncation")) for t in batch.on_policy))
        return metrics

    def _sampling_weights(self) -> Any:
        """Around sampling: the HF engine samples from the training module itself, whose ZeRO-3 partitions
        are then gathered for the whole rollout (``algorithms.zero3``); vLLM holds its own synced copy."""
        return gathered_for_generation(self.engine) if self.engine_kind == "hf" else contextlib.nullcontext()

    def _set_lr(self, step: int) -> None:
        """Step ``step``'s learning rate (``algorithms.lr_schedule``) on every parameter group."""
        lr = lr_at(step, self.total_steps, self.t.lr, **self.t.lr_schedule_settings)
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr

    # -- evaluation --------------------------------------------------------------------------------------
    def evaluate(self, step: int) -> dict[str, float]:
        """Greedy rollouts on the first ``eval_size`` tasks of the held-out split (``agents.heldout``), this
        rank's share; mean reward and accuracy over all ranks."""
        size = min(self.t.eval_size, self.eval_envs[0].num_tasks)
        while len(self.eval_envs) < size:
            self.eval_envs.append(self._make_env(self.cfg.env.eval_split))
        t0 = time.time()
        self.engine.eval()
        with self._sampling_weights():
            records = evaluate_tasks(self.eval_envs, self.eval_share(len(self.eval_envs)), self.sampler,
                                     self.renderer,
                                     self._sampling(step, greedy=True, max_new_tokens=self.t.eval_max_new_tokens),
                                     max_turns=self.t.max_turns, guided_calls=self.t.eval_guided_calls)
        self.engine.train()
        self.logger.log_transcripts(step, records)  # rank 0's share (what the JSONL files always held)
        total = all_reduce_sum(len(records))
        score = all_reduce_sum(sum(r.reward for r in records)) / max(total, 1.0)
        # Which tasks were solved (all ranks'): the accuracy, and kept in the checkpointed state for the
        # paired base-vs-trained comparison in the summary (not logged per step).
        solved = [0.0] * len(self.eval_envs)
        for r in records:
            solved[r.index] = float(r.correct)
        solved_everywhere = [v > 0 for v in all_reduce_sum_list(solved)]
        self.state.setdefault("eval_solved", {})[str(step)] = solved_everywhere
        return {"step": step, "eval/reward": score, "eval/accuracy": sum(solved_everywhere) / max(total, 1.0),
                "eval/n": total, "time/eval_s": time.time() - t0}

    # -- the loop ----------------------------------------------------------------------------------------
    def _due(self, every: int, step: int) -> bool:
        """Whether ``step`` is due an action done ``every`` steps (0: never) and at the last step."""
        return every > 0 and (step % every == 0 or step == self.total_steps)

    def _save(self, step: int) -> None:
        self.state["step"] = step
        save_checkpoint(self.engine, self.tokenizer, self.ckpt_root, step, self.state,
                        is_main=self.dist.is_main, keep=self.t.keep_checkpoints)

    def _out_of_time(self, spent_s: float) -> bool:
        """Whether ``trainer.time_limit_minutes`` is used up on any rank: the ranks' clocks differ a little,
        and all must stop at the same step."""
        if self.t.time_limit_minutes is None:
            return False
        return bool(all_reduce_max(int(spent_s >= 60 * self.t.time_limit_minutes)))

    def _stop_for_time(self, last: int, spent_s: float) -> None:
        """The time limit ends the run after step ``last``: checkpoint and evaluate it unless its schedule
        already did (or turns these off), so the run ends where a resume can pick it up, with a final score."""
        t = self.t
        if self.dist.is_main:
            print(f"time limit: stopping after step {last} of {self.total_steps} "
                  f"({spent_s / 60:.1f} of trainer.time_limit_minutes={t.time_limit_minutes:g} min)", flush=True)
        if last == self.start_step:
            return  # resumed past the limit: nothing trained, the checkpoint and its evaluation exist
        if t.save_every > 0 and not self._due(t.save_every, last):
            self._save(last)
        if t.eval_every > 0 and not self._due(t.eval_every, last):
            self._evaluate_and_log(last)

    def _evaluate_and_log(self, step: int) -> None:
        row = self.evaluate(step)
        self.state["eval_history"].append(row)
        self.logger.log(row)

    def train(self) -> dict[str, Any]:
        """Train to ``total_steps`` (or ``max_steps_this_run`` more, or until ``time_limit_minutes`` of wall
        time). A step due both a checkpoint and an evaluation saves first: a run killed while evaluating keeps
        its steps, and resuming from that checkpoint runs the evaluation it lacks before training on."""
        t = self.t
        started, spent_before = time.monotonic(), float(self.state.get("train_seconds", 0.0))

        def spent() -> float:  # wall seconds of training, over resumes
            return spent_before + time.monotonic() - started

        history = self.state.setdefault("eval_history", [])
        if self.start_step == 0 and t.eval_every > 0 and t.eval_at_start:
            self._evaluate_and_log(0)
        elif self.start_step > 0 and self._due(t.eval_every, self.start_step) and all(
                row["step"] != self.start_step for row in history):
            if self.dist.is_main:
                print(f"evaluating step {self.start_step}: its checkpoint was saved before its evaluation ran",
                      flush=True)
            self._evaluate_and_log(self.start_step)
        stop_at = self.total_steps if t.max_steps_this_run is None else min(
            self.total_steps, self.start_step + t.max_steps_this_run)
        last = self.start_step
        for step in range(self.start_step + 1, stop_at + 1):
            if self._out_of_time(spent()):
                self._stop_for_time(last, spent())
                break
            metrics = self.train_step(step)
            self.logger.log(metrics)
            self.logger.progress(step, f"reward {metrics['reward/mean']:.3f}  mu {metrics['mu']:.3f}  "
                                       f"{metrics['throughput/tokens_per_s']:.0f} tok/s")
            self.state["train_seconds"] = spent()
            if self._due(t.save_every, step):
                self._save(step)
            if self._due(t.eval_every, step):
                self._evaluate_and_log(step)
            last = step
        self.logger.close()
        summary = training_summary(
            history, self.state.get("eval_solved", {}), env=self.cfg.env.name, algorithm=self.algo.name,
            model=self.cfg.model.spec, steps=self.total_steps, steps_done=last, eval_split=self.cfg.env.eval_split,
            final_checkpoint=str(latest_checkpoint(self.ckpt_root)) if self.ckpt_root.exists() else None,
            run_dir=str(self.run_dir), device=self.device_type, world_size=self.dist.world_size)
        if self.dist.is_main:
            print(write_run_report(self.run_dir, summary), flush=True)
        return summary
