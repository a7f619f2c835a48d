"""Registration of chordgym environments with Gymnasium, and short config names for them.

Every environment is registered lazily (an ``entry_point`` string), so importing ``envs`` costs nothing
until one is made. A new environment adds one ``register`` line here (or calls ``register_env`` from its
own package) and a ``configs/env/<name>.yaml`` whose ``id`` is the Gymnasium id.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

#: config name -> Gymnasium id
ALIASES: dict[str, str] = {}


def register_env(alias: str, env_id: str, entry_point: str, max_episode_steps: int | None = None, **kwargs: Any) -> None:
    """Register ``env_id`` with Gymnasium (idempotent) and map the short config name ``alias`` to it."""
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps,
                     disable_env_checker=True, kwargs=kwargs)
    ALIASES[alias] = env_id


def make(name: str, **kwargs: Any) -> gym.Env:
    """Make an environment from a config name (``toolace``) or a Gymnasium id (``chordgym/ToolACE-v0``).

    Returns the unwrapped environment: chat environments are not vectorised or observation-wrapped, and
    the rollout code needs their task attributes directly.
    """
    env_id = ALIASES.get(name, name)
    if env_id not in gym.registry:
        known = ", ".join(sorted(ALIASES)) or "none"
        raise KeyError(f"unknown environment {name!r}; registered names: {known}")
    return gym.make(env_id, **kwargs).unwrapped


register_env("toolace", "chordgym/ToolACE-v0", "envs.toolace.env:ToolACEEnv")
register_env("math", "chordgym/Math-v0", "envs.math.env:MathEnv")
register_env("bfcl", "chordgym/BFCL-v0", "envs.bfcl.env:BFCLEnv")
