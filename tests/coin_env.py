"""A test environment whose reward is a coin read off the model's reply (1.0 when its length is even), so the
tiny random model's GRPO groups sometimes tie and sometimes do not: what dynamic sampling is for. The tasks,
prompts and expert answers are the math environment's."""

from __future__ import annotations

from typing import Any

from envs.math.env import MathEnv


class CoinEnv(MathEnv):
    """``MathEnv`` with a one-turn reward of ``len(reply) % 2 == 0``."""

    def _step_turn(self, assistant_text: str) -> tuple[list, float, bool, dict[str, Any]]:
        return [], float(len(assistant_text) % 2 == 0), True, {"final": True}
