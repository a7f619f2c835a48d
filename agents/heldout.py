"""Held-out evaluation: run given tasks of an environment and keep one record per task.

The trainer's periodic evaluation (its rank's share of the held-out split) and ``python -m agents.evaluate``
(every task of a suite) both score through ``evaluate_tasks``, so a task is scored alike wherever it is
scored: the same rollouts, the same reading of the episode's info, the same rule for solved.

A record depends only on the model, the task and the sampling settings, not on which other tasks share its
batch or rank: each episode resets with seed 0 and, when sampling is seeded, draws from a stream named by
its task index.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agents import SamplingParams, rollout

#: the final info's keys that are not part of a verdict: the transcript (kept apart) and the expert answer
NOT_VERDICT = ("messages", "expert")


@dataclass(frozen=True)
class TaskRecord:
    """One held-out task, scored."""

    index: int  # the task's index in its environment: ``reset(options={"index": index})``
    id: Any  # the environment's name for the task: info ``id``, else ``task_id``, else the index
    messages: list[dict[str, Any]]  # the whole conversation, opening messages first
    reward: float
    failure: str | None  # info["failure"]: why a failed episode failed, as its environment names it
    verdict: dict[str, Any]  # the episode's final info as JSON data, without the transcript and expert

    @property
    def correct(self) -> bool:
        """Solved: a final reward of at least 1.0 (``envs.base``); lower rewards are training signal only."""
        return self.reward >= 1.0

    @property
    def prompt(self) -> list[dict[str, Any]]:
        """The messages before the model's first reply."""
        return self.messages[:self._first_reply()]

    @property
    def output(self) -> list[str]:
        """What the model said, one string per assistant turn."""
        return [m["content"] for m in self.messages if m["role"] == "assistant"]

    @property
    def environment(self) -> list[str]:
        """What the environment said after the prompt (tool results, user follow-ups)."""
        return [m["content"] for m in self.messages[self._first_reply():] if m["role"] != "assistant"]

    def entry(self) -> dict[str, Any]:
        """The record as ``results.json`` keeps it (the caller adds its suite)."""
        return {"index": self.index, "id": self.id, "prompt": self.prompt, "output": self.output,
                "reward": self.reward, "correct": self.correct, "failure": self.failure, "verdict": self.verdict}

    def _first_reply(self) -> int:
        return next((k for k, m in enumerate(self.messages) if m["role"] == "assistant"), len(self.messages))


def evaluate_tasks(envs: Sequence[Any], indices: Sequence[int], engine: Any, tokenizer: Any,
                   sampling: SamplingParams, *, max_turns: int | None = None, guided_calls: str = "none",
                   on_batch: Callable[[int], None] | None = None) -> list[TaskRecord]:
    """Roll out tasks ``indices`` (in that order), ``len(envs)`` episodes per batch, one environment each;
    one ``TaskRecord`` per index, in the order given.

    ``sampling`` is usually greedy; a seeded sampling draws each task's tokens from a stream named by
    ``(sampling.seed, index)``. ``max_turns`` caps the assistant turns per episode; ``guided_calls``
    (none | auto | required) guides call lists by the tools' schemas (``tools.call_grammar``).
    ``on_batch(k)`` is called after each batch of ``k`` tasks (a progress bar).
    """
    if not envs:
        raise ValueError("evaluate_tasks needs at least one environment")
    size = len(envs)
    records: list[TaskRecord] = []
    for start in range(0, len(indices), size):
        batch = [int(i) for i in indices[start:start + size]]
        trajectories = rollout(envs[:len(batch)], engine, tokenizer, sampling=sampling,
                               reset_kwargs=[{"seed": 0, "options": {"index": i}} for i in batch],
                               group_ids=batch, max_turns=max_turns, guided_calls=guided_calls,
                               episode_seeds=None if sampling.seed is None else
                               [sampling.seed * 1_000_003 + i for i in batch])
        records += [_record(index, traj.info, traj.reward) for index, traj in zip(batch, trajectories, strict=True)]
        if on_batch is not None:
            on_batch(len(batch))
    return records


def _record(index: int, info: dict[str, Any], reward: float) -> TaskRecord:
    failure = info.get("failure")
    return TaskRecord(
        index=index, id=info.get("id", info.get("task_id", index)), messages=info.get("messages", []),
        reward=reward, failure=failure if isinstance(failure, str) and failure else None,
        verdict=_jsonable({k: v for k, v in info.items() if k not in NOT_VERDICT}))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))
