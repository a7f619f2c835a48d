"""The per-step learning rate (algorithms/lr_schedule.py) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from algorithms.lr_schedule import lr_at


def test_constant_is_the_peak_at_every_step():
    assert [lr_at(s, 4, 1e-3) for s in range(1, 5)] == [1e-3] * 4


def test_cosine_starts_at_the_peak_and_never_spends_a_step_at_zero():
    # T = 4, W = 0: p = 0, 1/4, 2/4, 3/4 -> (1 + cos(pi p)) / 2 = 1, 0.8536, 0.5, 0.1464
    got = [lr_at(s, 4, 1.0, "cosine") for s in range(1, 5)]
    assert got == pytest.approx([1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2])


def test_warmup_then_linear_decay_to_a_floor():
    # T = 6, W = 2, r = 0.5: warmup 1/2, 2/2; then p = 0, 1/4, 2/4, 3/4 -> 0.5 + 0.5 (1 - p)
    got = [lr_at(s, 6, 2.0, "linear", warmup_steps=2, min_lr_ratio=0.5) for s in range(1, 7)]
    assert got == pytest.approx([1.0, 2.0, 2.0, 1.75, 1.5, 1.25])


def test_cosine_with_warmup_midpoint():
    # T = 12, W = 2: step 3 is the peak; step 8 has p = 5/10 -> half the peak
    assert lr_at(3, 12, 3e-4, "cosine", warmup_steps=2) == pytest.approx(3e-4)
    assert lr_at(8, 12, 3e-4, "cosine", warmup_steps=2) == pytest.approx(1.5e-4)


@pytest.mark.parametrize("kwargs, word", [
    ({"lr_schedule": "step"}, "lr_schedule"),
    ({"warmup_steps": 12}, "warmup_steps"),
    ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
])
def test_bad_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        lr_at(1, 12, 1e-3, **kwargs)


def test_steps_are_one_based():
    with pytest.raises(ValueError, match="1-based"):
        lr_at(0, 12, 1e-3)
