"""Checks on a training config that run before any work, so that a bad key fails in a second, not an hour."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf import DictConfig, OmegaConf

from tools.call_grammar import GUIDED_CALLS
from algorithms.chord import AlgorithmConfig
from algorithms.lr_schedule import check_schedule, schedule_settings
from envs.env_config import EnvConfig, EnvConfigError


class TrainConfigError(ValueError):
    """A training config that cannot run; the message names the key and what would fix it."""


@contextmanager
def exit_on_start_up_errors(model_spec: str) -> Iterator[None]:
    """For the command-line entry points: a bad config, environment or model ends the process with one
    ``config error:`` line naming the key or path (exit 2), a failed checkpoint write with one ``error:``
    line naming the path and the cause (exit 1); no traceback for what the user can fix."""
    from agents.models import ModelLoadError
    from algorithms.checkpoint import CheckpointWriteError

    try:
        yield
    except (TrainConfigError, EnvConfigError) as err:
        print(f"config error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except ModelLoadError as err:
        print(f"config error: model.spec={model_spec}: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except CheckpointWriteError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise TrainConfigError(message)


_INTEGERS = ("total_steps", "prompts_per_step", "expert_per_step", "micro_batch_size", "micro_batch_tokens",
             "warmup_steps", "max_new_tokens", "eval_every", "eval_size", "eval_max_new_tokens", "save_every",
             "keep_checkpoints")
_REALS = ("lr", "min_lr_ratio", "weight_decay", "grad_clip", "temperature", "top_p")
_OPTIONAL_INTEGERS = ("max_turns", "expert_tasks", "max_steps_this_run")


def _check_numbers(t: DictConfig) -> None:
    """Every numeric trainer key holds a number (``trainer.lr=fast`` names the key instead of a bare
    ``could not convert string to float``)."""
    def bad(key: str, kind: str) -> TrainConfigError:
        return TrainConfigError(f"trainer.{key} must be {kind}, got {t.get(key)!r}")

    for key in _INTEGERS + _OPTIONAL_INTEGERS:
        value = t.get(key)
        if value is None and key in _OPTIONAL_INTEGERS:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(key, "an integer" + (" or null" if key in _OPTIONAL_INTEGERS else ""))
    for key in _REALS:
        value = t.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(key, "a number")
    betas = t.get("adam_betas")
    if betas is None or len(betas) != 2 or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in betas):
        raise bad("adam_betas", "a list of two numbers")


def env_config(cfg: DictConfig) -> EnvConfig:
    """The run's ``env`` section, checked, with its environment registered (``envs.env_config``)."""
    try:
        env = EnvConfig.from_mapping(OmegaConf.to_container(cfg.env, resolve=True))
        env.register()
    except EnvConfigError as err:
        raise TrainConfigError(str(err)) from None
    return env


def validate_train_config(cfg: DictConfig, algo: AlgorithmConfig, world_size: int) -> None:
    """Raise ``TrainConfigError`` naming the offending key; returns quietly for a runnable config."""
    t = cfg.trainer
    _check_numbers(t)
    env_config(cfg)
    for key in ("total_steps", "prompts_per_step", "micro_batch_size", "micro_batch_tokens"):
        _need(int(t[key]) >= 1, f"trainer.{key} must be >= 1, got {t[key]}")
    for key in ("expert_per_step", "eval_every", "save_every", "eval_size"):
        _need(int(t[key]) >= 0, f"trainer.{key} must be >= 0, got {t[key]}")
    _need(int(algo.group_size) >= 1, f"algorithm.group_size must be >= 1, got {algo.group_size}")
    _need(int(t.prompts_per_step) % world_size == 0,
          f"trainer.prompts_per_step={t.prompts_per_step} does not divide over {world_size} ranks")
    _need(int(t.expert_per_step) % world_size == 0,
          f"trainer.expert_per_step={t.expert_per_step} does not divide over {world_size} ranks")
    _need(float(t.lr) > 0, f"trainer.lr must be > 0, got {t.lr}")
    try:
        check_schedule(int(t.total_steps), **schedule_settings(t))
    except ValueError as err:
        raise TrainConfigError(f"trainer.{err}") from err
    _need(float(t.temperature) > 0, f"trainer.temperature must be > 0 (greedy is for evaluation), got {t.temperature}")
    _need(0 < float(t.top_p) <= 1, f"trainer.top_p must be in (0, 1], got {t.top_p}")
    _need(str(cfg.model.dtype) in ("bf16", "fp32"), f"model.dtype must be bf16 or fp32, got {cfg.model.dtype!r}")
    _need(str(t.resume) in ("auto", "never") or bool(str(t.resume)),
          f"trainer.resume must be auto, never or a checkpoint path, got {t.resume!r}")
    _need(str(t.get("prompt_grad", "full")) in ("full", "detached"),
          f"trainer.prompt_grad must be full or detached, got {t.get('prompt_grad')!r}")
    for key in ("rollout_guided_calls", "eval_guided_calls"):
        _need(str(t.get(key, "none")) in GUIDED_CALLS,
              f"trainer.{key} must be one of {', '.join(GUIDED_CALLS)}, got {t.get(key)!r}")
    expert_tasks = t.get("expert_tasks")
    _need(expert_tasks is None or int(expert_tasks) >= 1,
          f"trainer.expert_tasks must be null or >= 1, got {expert_tasks}")
    if algo.uses_expert:
        _need(int(t.expert_per_step) >= 1,
              f"algorithm.name={algo.name} uses expert data (mu > 0) but trainer.expert_per_step=0")
    if algo.mu_rule == "switch" and algo.sft_steps is not None:
        _need(0 <= int(algo.sft_steps) <= int(t.total_steps),
              f"algorithm.sft_steps={algo.sft_steps} must lie in [0, trainer.total_steps={t.total_steps}]")
    if algo.uses_rollouts and algo.adv_scale == "std":
        _need(int(algo.group_size) >= 2,
              f"algorithm.group_size={algo.group_size}: GRPO needs >= 2 samples per prompt (a group of one has A = 0)")
