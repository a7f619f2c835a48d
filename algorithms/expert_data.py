"""The expert half of a CHORD step: which expert trajectories step ``s`` trains on.

They come from the training environment's own expert continuations (``info["expert"]`` after ``reset``),
or from a realigned set written by Hinted Decoding (``trainer.expert_data``, ``algorithms.realigned``).
Which samples a step uses is a pure function of (seed, step), so a resumed run draws what the killed one
would have; each rank takes every ``world_size``-th of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.rollout import expert_trajectory
from agents.trajectory import Trajectory
from algorithms.config import TrainConfigError
from algorithms.realigned import load_realigned

Episode = tuple[list, list]  # (opening messages, expert continuation)


def load_expert_pool(path: str) -> list[Episode]:
    """``trainer.expert_data``: the accepted episodes of a realigned set; ``TrainConfigError`` names the key."""
    if not Path(path).exists():
        raise TrainConfigError(f"trainer.expert_data={path}: no such file")
    try:
        pool = load_realigned(path)
    except ValueError as err:
        raise TrainConfigError(f"trainer.expert_data: {err}") from err
    if not pool:
        raise TrainConfigError(f"trainer.expert_data={path} holds no expert episodes")
    return pool


class ExpertSource:
    """A step's expert trajectories, drawn from ``pool`` (a realigned set) or else from the first
    ``task_limit`` tasks (None: all) of ``train_env`` that have an expert continuation."""

    def __init__(self, train_env: Any, tokenizer: Any, *, seed: int, per_step: int, task_limit: int | None = None,
                 pool: list[Episode] | None = None):
        self.env, self.tokenizer = train_env, tokenizer
        self.seed, self.per_step = int(seed), int(per_step)
        self.task_limit, self.pool = task_limit, pool
        self._cache: dict[int, Episode | None] = {}
        self._tools: dict[int, list[dict[str, Any]] | None] = {}  # native tool formats: the template's tools

    def has_expert_data(self) -> bool:
        """Whether there is anything to draw from (a pool, or an expert continuation on the first task)."""
        return self.pool is not None or self.episode(0) is not None

    def episode(self, index: int) -> Episode | None:
        """(opening messages, expert continuation) of train task ``index``, or None if it has none."""
        if index not in self._cache:
            opening, info = self.env.reset(options={"index": index})
            expert = info.get("expert") or None
            self._tools[index] = info.get("tools")
            self._cache[index] = (opening, expert) if expert else None
        return self._cache[index]

    def sample(self, step: int, rank: int = 0, world_size: int = 1) -> list[Trajectory]:
        """This rank's share of step ``step``'s ``per_step`` expert trajectories (all ranks draw the same list)."""
        rng = np.random.default_rng([self.seed, step, 1])
        if self.pool is not None:
            chosen = [int(i) for i in rng.integers(len(self.pool), size=self.per_step)]
            return [expert_trajectory(*self.pool[i], self.tokenizer, group_id=f"expert-pool-{i}")
                    for i in chosen[rank::world_size]]
        chosen = []
        tries = 0
        pool_size = min(self.env.num_tasks, self.task_limit or self.env.num_tasks)
        while len(chosen) < self.per_step:
            index = int(rng.integers(pool_size))
            tries += 1
            if self.episode(index) is not None:
                chosen.append(index)
            elif tries > 100 * self.per_step:
                raise RuntimeError("could not find enough tasks with expert trajectories")
        return [expert_trajectory(*self.episode(index), self.tokenizer, group_id=f"expert-{index}",
                                  tools=self._tools.get(index))
                for index in chosen[rank::world_size]]
