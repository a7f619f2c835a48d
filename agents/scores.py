"""How sure a held-out score is: Wilson intervals for one accuracy, and McNemar's exact test for two models
scored on the same tasks.

A 32-task evaluation moves 3.1 points per task; a 95% interval around 20% spans about 9-37%. These numbers
go next to every accuracy the trainer and ``agents.evaluate`` print, so a difference is read with its noise.
Paired tasks say more than two intervals: McNemar's test looks only at the tasks one model solves and the
other does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``correct / n`` (95% for z = 1.96); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= correct <= n:
        raise ValueError(f"correct={correct} must lie in [0, n={n}]")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: under "no difference" each discordant task is a fair coin."""
    m = gained + lost
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(gained, lost) + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def paired_change(before: Sequence[bool], after: Sequence[bool]) -> dict[str, float]:
    """Tasks gained and lost between two scorings of the same tasks, and McNemar's exact p-value."""
    if len(before) != len(after):
        raise ValueError(f"paired scores need the same tasks: {len(before)} vs {len(after)}")
    gained = sum(1 for b, a in zip(before, after, strict=True) if a and not b)
    lost = sum(1 for b, a in zip(before, after, strict=True) if b and not a)
    return {"n": len(before), "gained": gained, "lost": lost, "p_value": mcnemar_exact(gained, lost)}
