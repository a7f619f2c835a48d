"""The training config, typed and checked before any work, so that a bad key fails in a second, not an hour.

``TrainerConfig`` is the ``trainer:`` section, ``algorithms.chord.AlgorithmConfig`` the ``algorithm:`` one
(whose defaults this module registers as Hydra's ``algorithm/base``), ``LoggingConfig`` the ``logger`` list
and the ``wandb:`` section; ``validate_train_config`` checks them together with the environment, the model's
dtype and the world size.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from agents.engines import EngineConfig, EngineConfigError, resolve_engine
from agents.lora import LoraConfigError, LoraSettings
from algorithms.chord import AlgorithmConfig
from algorithms.lr_schedule import check_schedule
from algorithms.metrics import DEFAULT_LOGGERS, LOGGERS, WANDB_MODES, LoggerStartError, WandbSettings
from envs.env_config import EnvConfig, EnvConfigError
from tools.call_grammar import GUIDED_CALLS


class TrainConfigError(ValueError):
    """A training config that cannot run; the message names the key and what would fix it."""


@contextmanager
def exit_on_start_up_errors(model_spec: str) -> Iterator[None]:
    """For the command-line entry points: a bad config, environment or model ends the process with one
    ``config error:`` line naming the key or path (exit 2), a failed checkpoint write with one ``error:``
    line naming the path and the cause (exit 1), a launch the process cannot take its place in with one
    ``launch error:`` line (exit 2); no traceback for what the user can fix."""
    from agents.models import ModelLoadError
    from algorithms.checkpoint import CheckpointWriteError
    from algorithms.distributed import LaunchError

    try:
        yield
    except (TrainConfigError, EnvConfigError, LoggerStartError) as err:
        print(f"config error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except ModelLoadError as err:
        print(f"config error: model.spec={model_spec}: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except LaunchError as err:
        print(f"launch error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except CheckpointWriteError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise TrainConfigError(message)


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    """The ``trainer:`` section of ``configs/train.yaml``, typed and checked once (``from_mapping``).

    The values and their comments live in the YAML; fields without a default must be there. What each
    key does: ``docs/training.md``.
    """

    # -- the batch of one optimizer step
    total_steps: int
    prompts_per_step: int
    expert_per_step: int
    micro_batch_size: int
    micro_batch_tokens: int
    padding_free: bool = True
    expert_tasks: int | None = None
    expert_data: str | None = None
    # -- the optimizer
    lr: float
    lr_schedule: str = "constant"
    warmup_steps: int
    min_lr_ratio: float
    adam_betas: tuple[float, float]
    weight_decay: float
    grad_clip: float
    # -- rollouts
    temperature: float
    top_p: float
    max_new_tokens: int
    max_turns: int | None
    rollout_guided_calls: str = "none"
    use_sampler_logprobs: bool
    prompt_grad: str = "full"
    dynamic_sampling: bool = False
    max_extra_batches: int = 2
    informative_groups: int | None = None
    prompt_filter_visits: int = 0
    # -- memory
    gradient_checkpointing: bool = False
    # -- held-out evaluation
    eval_every: int
    eval_size: int
    eval_at_start: bool
    eval_max_new_tokens: int
    eval_guided_calls: str = "none"
    # -- checkpoints and the run
    save_every: int
    keep_checkpoints: int
    resume: str
    resume_fallback: bool = True
    max_steps_this_run: int | None
    time_limit_minutes: float | None = None
    progress: bool

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainerConfig:
        """Check every key's type and range; ``TrainConfigError`` names the first bad key (``trainer.lr=fast``
        gets ``trainer.lr must be a number, got 'fast'``, not a bare ``could not convert``)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        _need(not unknown, f"trainer.{unknown[0] if unknown else ''} is not a trainer setting "
                           f"(known: {', '.join(sorted(known))})")
        missing = sorted(k for k, f in known.items()
                         if k not in values and f.default is MISSING and f.default_factory is MISSING)
        _need(not missing, f"trainer.{missing[0] if missing else ''} is missing from the trainer config")
        for key, value in values.items():
            _check_type(key, value, known[key].type)
        config = cls(**{k: (tuple(v) if k == "adam_betas" else v) for k, v in values.items()})
        config._check_ranges()
        return config

    def _check_ranges(self) -> None:
        for key in ("total_steps", "prompts_per_step", "micro_batch_size", "micro_batch_tokens"):
            _need(getattr(self, key) >= 1, f"trainer.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("expert_per_step", "eval_every", "save_every", "eval_size", "max_extra_batches",
                    "prompt_filter_visits"):
            _need(getattr(self, key) >= 0, f"trainer.{key} must be >= 0, got {getattr(self, key)}")
        _need(self.lr > 0, f"trainer.lr must be > 0, got {self.lr}")
        try:
            check_schedule(self.total_steps, **self.lr_schedule_settings)
        except ValueError as err:
            raise TrainConfigError(f"trainer.{err}") from err
        _need(self.temperature > 0, f"trainer.temperature must be > 0 (greedy is for evaluation), got {self.temperature}")
        _need(0 < self.top_p <= 1, f"trainer.top_p must be in (0, 1], got {self.top_p}")
        _need(bool(self.resume), f"trainer.resume must be auto, never or a checkpoint path, got {self.resume!r}")
        _need(self.prompt_grad in ("full", "detached"),
              f"trainer.prompt_grad must be full or detached, got {self.prompt_grad!r}")
        _need(not (self.gradient_checkpointing and self.prompt_grad == "detached"),
              "trainer.gradient_checkpointing=true does not combine with trainer.prompt_grad=detached (the detached "
              "prompts' KV cache needs the cache that checkpointing turns off in training mode); choose one")
        for key in ("rollout_guided_calls", "eval_guided_calls"):
            _need(getattr(self, key) in GUIDED_CALLS,
                  f"trainer.{key} must be one of {', '.join(GUIDED_CALLS)}, got {getattr(self, key)!r}")
        _need(self.informative_groups is None or 1 <= self.informative_groups <= self.prompts_per_step,
              f"trainer.informative_groups must be null or in [1, trainer.prompts_per_step="
              f"{self.prompts_per_step}], got {self.informative_groups}")
        _need(self.time_limit_minutes is None or self.time_limit_minutes > 0,
              f"trainer.time_limit_minutes must be null or > 0, got {self.time_limit_minutes}")
        _need(self.expert_tasks is None or self.expert_tasks >= 1,
              f"trainer.expert_tasks must be null or >= 1, got {self.expert_tasks}")

    @property
    def lr_schedule_settings(self) -> dict[str, Any]:
        """The keyword arguments of ``algorithms.lr_schedule.lr_at`` and ``check_schedule``."""
        return {"lr_schedule": self.lr_schedule, "warmup_steps": self.warmup_steps,
                "min_lr_ratio": self.min_lr_ratio}


def _check_type(key: str, value: Any, kind: str) -> None:
    """``value`` fits the field's annotation ``kind`` (a string under ``from __future__ import annotations``)."""
    def bad(what: str) -> TrainConfigError:
        return TrainConfigError(f"trainer.{key} must be {what}, got {value!r}")

    optional = kind.endswith("| None")
    if value is None:
        if not optional:
            raise bad(_KIND_NAMES.get(kind.removesuffix(" | None"), kind))
        return
    base = kind.removesuffix(" | None")
    if base == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad("an integer" + (" or null" if optional else ""))
    if base == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise bad("a number")
    if base == "bool" and not isinstance(value, bool):
        raise bad("true or false")
    if base == "str" and not isinstance(value, str):
        raise bad("a string")
    if base == "tuple[float, float]" and (
            isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in value)):
        raise bad("a list of two numbers")


_KIND_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "tuple[float, float]": "a list of two numbers"}


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    """Where the run's metrics go: ``logger`` (names from ``LOGGERS``, in order) and the ``wandb:`` section."""

    loggers: tuple[str, ...]
    wandb: WandbSettings


def logging_config(cfg: DictConfig) -> LoggingConfig:
    """The run's ``logger`` list and ``wandb:`` section, checked: an unknown logger, ``wandb`` without the
    package or a bad ``wandb.*`` value raises ``TrainConfigError`` naming the key."""
    names = cfg.get("logger", list(DEFAULT_LOGGERS))
    names = OmegaConf.to_container(names, resolve=True) if OmegaConf.is_config(names) else names
    if names is None:
        names = []
    if isinstance(names, str):
        names = [names]  # logger=wandb
    _need(isinstance(names, list) and all(isinstance(n, str) for n in names),
          f"logger must be a list of logger names (known: {', '.join(LOGGERS)}), got {names!r}")
    unknown = [n for n in names if n not in LOGGERS]
    _need(not unknown, f"logger: unknown logger {unknown[0] if unknown else ''!r} (known: {', '.join(LOGGERS)})")
    if "wandb" in names:
        _need(importlib.util.find_spec("wandb") is not None,
              "logger: wandb needs the wandb package, which is not installed: pip install chordgym[wandb]")
    return LoggingConfig(loggers=tuple(dict.fromkeys(names)), wandb=_wandb_settings(cfg.get("wandb")))


def _wandb_settings(section: Any) -> WandbSettings:
    values = OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) else section
    values = values or {}
    _need(isinstance(values, dict), f"wandb must be a mapping of W&B settings, got {values!r}")
    known = [f.name for f in fields(WandbSettings)]
    unknown = sorted(set(values) - set(known))
    _need(not unknown, f"wandb.{unknown[0] if unknown else ''} is not a W&B setting (known: {', '.join(known)})")
    for key in ("project", "entity", "name", "group", "mode"):
        _need(values.get(key) is None or (isinstance(values[key], str) and values[key] != ""),
              f"wandb.{key} must be a non-empty string or null, got {values.get(key)!r}")
    tags = values.get("tags") or []
    _need(isinstance(tags, list) and all(isinstance(t, str) for t in tags),
          f"wandb.tags must be a list of strings, got {tags!r}")
    _need(values.get("mode") in (None, *WANDB_MODES),
          f"wandb.mode must be one of {', '.join(WANDB_MODES)} or null ($WANDB_MODE, else offline), "
          f"got {values.get('mode')!r}")
    return WandbSettings(**{**values, "tags": tuple(tags)})


def trainer_config(cfg: DictConfig) -> TrainerConfig:
    """The run's ``trainer`` section as a checked ``TrainerConfig``."""
    return TrainerConfig.from_mapping(OmegaConf.to_container(cfg.trainer, resolve=True))


def register_algorithm_base() -> None:
    """Register ``AlgorithmConfig``'s defaults as Hydra's ``algorithm/base``: every
    ``configs/algorithm/<name>.yaml`` starts from it (``defaults: [base, _self_]``) and states only what
    differs, so the defaults have one source and ``algorithm.<key>=...`` overrides any key."""
    ConfigStore.instance().store(group="algorithm", name="base", node=AlgorithmConfig().to_dict())


register_algorithm_base()


def zero_stage(cfg: DictConfig) -> int:
    """The DeepSpeed ZeRO stage of the run's ``deepspeed`` section (0 when it names none)."""
    section = cfg.get("deepspeed") or {}
    return int((section.get("zero_optimization") or {}).get("stage", 0) or 0)


def packs_micro_batches(cfg: DictConfig, t: TrainerConfig) -> bool:
    """Whether each micro-batch runs as one packed forward pass (``algorithms.packed``): ``trainer.padding_free``,
    and always under ZeRO-3, whose forward passes gather each layer's parameters from every rank and so must
    come in the same number on every rank; the padded path runs long rows one forward pass at a time, a
    number that differs between ranks with the rows they hold (their collectives then pair up wrongly and
    the step hangs). Never with ``trainer.prompt_grad=detached``, whose rows each run against their own cached
    prompt keys/values (and which ZeRO-3 refuses)."""
    return (t.padding_free or zero_stage(cfg) == 3) and t.prompt_grad != "detached"


def rollout_engine(cfg: DictConfig, t: TrainerConfig) -> tuple[EngineConfig, str]:
    """The run's ``rollout:`` section and the engine it resolves to (``vllm`` or ``hf``, ``agents.engines``)."""
    try:
        config = EngineConfig.from_mapping(OmegaConf.to_container(cfg.get("rollout") or {}, resolve=True))
        kind = resolve_engine(config, str(cfg.model.spec), {
            f"trainer.rollout_guided_calls={t.rollout_guided_calls}": t.rollout_guided_calls != "none",
            f"trainer.eval_guided_calls={t.eval_guided_calls}": t.eval_guided_calls != "none"})
    except EngineConfigError as err:
        raise TrainConfigError(str(err)) from None
    return config, kind


def apply_data_shorthand(cfg: DictConfig) -> DictConfig:
    """``data.path`` / ``data.format``: the data file and format of a dataset-backed environment
    (``env=toolcalls data.path=train.jsonl``), written into ``env.kwargs.path`` / ``env.kwargs.format``.
    An environment without those kwargs (ToolACE generates its tasks) refuses them, naming the key."""
    data = cfg.get("data") or {}
    kwargs = cfg.env.get("kwargs") or {}  # keys(): a mandatory ``???`` value is "not in" a DictConfig
    for key in ("path", "format"):
        value = data.get(key)
        if value is None:
            continue
        _need(key in list(kwargs.keys()), f"data.{key} is for a dataset-backed environment (env=toolcalls); env.name="
                             f"{cfg.env.get('name')} has no kwargs.{key} (its own data: docs/new-tool-env.md)")
        cfg.env.kwargs[key] = value
    return cfg


def env_config(cfg: DictConfig) -> EnvConfig:
    """The run's ``env`` section, checked, with its environment registered (``envs.env_config``)."""
    try:
        env = EnvConfig.from_mapping(OmegaConf.to_container(cfg.env, resolve=True))
        env.register()
    except EnvConfigError as err:
        raise TrainConfigError(str(err)) from None
    return env


def lora_settings(cfg: DictConfig) -> LoraSettings | None:
    """``model.lora`` checked (``agents.lora``): ``None`` when LoRA is off (no section, or ``r: null``)."""
    section = cfg.model.get("lora")
    try:
        return LoraSettings.from_config(OmegaConf.to_container(section, resolve=True) if section is not None else None)
    except LoraConfigError as err:
        raise TrainConfigError(str(err)) from None


def validate_train_config(cfg: DictConfig, algo: AlgorithmConfig, world_size: int) -> TrainerConfig:
    """The run's trainer settings, checked with the algorithm, environment, model and world size; raises
    ``TrainConfigError`` naming the offending key."""
    t = trainer_config(cfg)
    logging_config(cfg)
    env_config(cfg)
    _need(int(algo.group_size) >= 1, f"algorithm.group_size must be >= 1, got {algo.group_size}")
    _need(t.prompts_per_step % world_size == 0,
          f"trainer.prompts_per_step={t.prompts_per_step} does not divide over {world_size} ranks")
    _need(t.expert_per_step % world_size == 0,
          f"trainer.expert_per_step={t.expert_per_step} does not divide over {world_size} ranks")
    _need(str(cfg.model.dtype) in ("auto", "bf16", "fp32"),
          f"model.dtype must be auto, bf16 or fp32, got {cfg.model.dtype!r}")
    lora_settings(cfg)
    _need(not (zero_stage(cfg) == 3 and t.prompt_grad == "detached"),
          "trainer.prompt_grad=detached does not combine with deepspeed=zero3 (ZeRO-3 needs one forward pass per "
          "micro-batch on every rank, detached prompts run row by row); use trainer.prompt_grad=full")
    if algo.uses_expert:
        _need(t.expert_per_step >= 1,
              f"algorithm.name={algo.name} uses expert data (mu > 0) but trainer.expert_per_step=0")
    if algo.mu_rule == "switch" and algo.sft_steps is not None:
        _need(0 <= int(algo.sft_steps) <= t.total_steps,
              f"algorithm.sft_steps={algo.sft_steps} must lie in [0, trainer.total_steps={t.total_steps}]")
    if algo.uses_rollouts and algo.adv_scale == "std":
        _need(int(algo.group_size) >= 2,
              f"algorithm.group_size={algo.group_size}: GRPO needs >= 2 samples per prompt (a group of one has A = 0)")
    return t
