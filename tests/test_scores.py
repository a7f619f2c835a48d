"""Confidence figures printed next to held-out scores: hand-computed values."""

from __future__ import annotations

import pytest

from agents.scores import mcnemar_exact, paired_change, wilson_interval


def test_wilson_interval_by_hand() -> None:
    # p = 4/32, z^2 = 3.8416: centre (0.125 + 0.060025) / 1.12005 = 0.165194,
    # half 1.96 / 1.12005 * sqrt(0.125 * 0.875 / 32 + 3.8416 / 4096) = 0.115493
    lo, hi = wilson_interval(4, 32)
    assert lo == pytest.approx(0.049701, abs=1e-6) and hi == pytest.approx(0.280687, abs=1e-6)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_mcnemar_exact_by_hand() -> None:
    assert mcnemar_exact(4, 1) == pytest.approx(2 * (1 + 5) / 32)      # 0.375
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)                # 0.03125
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 4) == mcnemar_exact(4, 1)


def test_paired_change_counts_discordant_tasks() -> None:
    before = [True, True, False, False, False]
    after = [True, False, True, True, False]
    assert paired_change(before, after) == {"n": 5, "gained": 2, "lost": 1, "p_value": 1.0}
    with pytest.raises(ValueError):
        paired_change([True], [True, False])
