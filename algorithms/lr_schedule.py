"""The learning rate of each optimizer step: linear warmup, then constant, cosine or linear decay.

A pure function of the 1-based step number, set on the optimizer before every ``engine.step()``. Being
stateless it needs no scheduler state in the checkpoint (a resumed run recomputes it), and a step that is
skipped because nothing had a gradient does not shift the schedule of the steps after it.

With peak lr ``eta``, W warmup steps, T total steps and floor ``r`` (``min_lr_ratio``), step s uses

    s <= W:   eta * s / W                                     (warmup; the first step is never at lr 0)
    s >  W:   eta * (r + (1 - r) * f(p)),   p = (s - W - 1) / (T - W)
              constant: f = 1;  cosine: f = (1 + cos(pi p)) / 2;  linear: f = 1 - p

so the first step after warmup runs at the peak and the last one just above the floor: no step is
spent at lr 0. This is the progress convention of Hugging Face's ``get_cosine_schedule_with_warmup``
evaluated at index s - 1 (TRL's and verl's default decays), with a warmup that starts at eta / W instead
of 0.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine", "linear")


def check_schedule(total_steps: int, lr_schedule: str = "constant", warmup_steps: int = 0,
                   min_lr_ratio: float = 0.0) -> None:
    """Raise ``ValueError`` whose message starts with the offending argument's name (the config key)."""
    if lr_schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(SCHEDULES)}, got {lr_schedule!r}")
    if not 0 <= warmup_steps < max(total_steps, 1):
        raise ValueError(f"warmup_steps must lie in [0, total_steps={total_steps}), got {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio}")


def lr_at(step: int, total_steps: int, peak_lr: float, lr_schedule: str = "constant", warmup_steps: int = 0,
          min_lr_ratio: float = 0.0) -> float:
    """The learning rate of 1-based optimizer step ``step`` out of ``total_steps`` (see the module docstring)."""
    check_schedule(total_steps, lr_schedule, warmup_steps, min_lr_ratio)
    if step < 1:
        raise ValueError(f"steps are 1-based, got {step}")
    if step <= warmup_steps:
        return peak_lr * step / warmup_steps
    progress = min(1.0, (step - warmup_steps - 1) / (total_steps - warmup_steps))
    if lr_schedule == "constant":
        factor = 1.0
    elif lr_schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        factor = 1.0 - progress
    return peak_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * factor)
