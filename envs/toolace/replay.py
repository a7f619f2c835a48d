"""Replaying a task's expert trajectory through an environment: the check every generated task passes.

The environment is an argument, not an import: the generator (``envs.toolace.generator``) checks tasks
with whatever environment its caller hands it, so that generation stays below the environment, which
loads (and on first use generates) its splits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envs.toolace.task import Task


def replay_expert(env: Any, task: Task) -> tuple[float, str | None]:
    """Feed a task's expert assistant messages to ``env`` (a ``ToolACEEnv`` or one built on it, reset with
    ``options={"task": task}``); (final reward, first discrepancy or None)."""
    env.reset(options={"task": task})
    expected = list(task.expert)
    reward, i = 0.0, 0
    while i < len(expected):
        msg = expected[i]
        if msg["role"] != "assistant":
            return 0.0, f"expert message {i} is {msg['role']}, expected assistant"
        out, reward, terminated, truncated, _ = env.step(msg["content"])
        following = expected[i + 1:i + 1 + len(out)]
        if out != following:
            return 0.0, f"after expert message {i} the env returned {out!r}, expert has {following!r}"
        i += 1 + len(out)
        if terminated or truncated:
            if i != len(expected):
                return reward, f"episode ended after expert message {i - 1 - len(out)} of {len(expected)}"
            break
    else:
        return reward, "expert trajectory ended before the episode did"
    return reward, None if reward == 1.0 else f"reward {reward}"


def replay_check(make_env: Callable[[], Any]) -> Callable[[Task], None]:
    """A check that raises ``RuntimeError`` when a task's expert trajectory does not replay to 1.0 through
    the environment ``make_env()`` (built at the first task, then reused)."""
    envs: list[Any] = []

    def check(task: Task) -> None:
        if not envs:
            envs.append(make_env())
        reward, problem = replay_expert(envs[0], task)
        if problem:
            raise RuntimeError(f"task {task.id}: expert replay failed: {problem}")

    return check
