"""Group-relative advantages for GRPO (and Dr.GRPO).

Each prompt is rolled out G times; the G trajectories form a *group*. A trajectory's advantage is its
reward relative to the other samples of the same prompt:

    A_i = (r_i - mean_g(r)) / (std_g(r) + eps)        scale="std"   (GRPO, unbiased std)
    A_i =  r_i - mean_g(r)                             scale="none"  (Dr.GRPO: no std division)

A group with a single sample carries no comparison signal and gets A = 0. The advantage is per trajectory;
the policy loss broadcasts it to every trainable token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

AdvantageScale = Literal["std", "none"]


def _group_index(group_ids: Sequence | Tensor, n: int, device: torch.device) -> Tensor:
    """Map arbitrary hashable group ids (ints, strings, tensors) to dense indices 0..n_groups-1."""
    if isinstance(group_ids, Tensor):
        group_ids = group_ids.tolist()
    if len(group_ids) != n:
        raise ValueError(f"group_ids has {len(group_ids)} entries, rewards has {n}")
    dense: dict = {}
    index = [dense.setdefault(g, len(dense)) for g in group_ids]
    return torch.tensor(index, dtype=torch.long, device=device)


def group_advantages(
    rewards: Tensor,
    group_ids: Sequence | Tensor,
    scale: AdvantageScale = "std",
    eps: float = 1e-6,
) -> Tensor:
    """Per-trajectory group-normalised advantages.

    Args:
        rewards: [N] scalar reward of each trajectory.
        group_ids: [N] id of the prompt group of each trajectory (any hashable values; groups need not be
            contiguous or equally sized).
        scale: "std" divides by the group's unbiased standard deviation + eps (GRPO); "none" only
            subtracts the group mean (Dr.GRPO).
        eps: added to the std so groups with identical rewards give A = 0 instead of 0/0.

    Returns:
        [N] advantages (float, no gradient), 0 for every member of a group of size one.
    """
    if scale not in ("std", "none"):
        raise ValueError(f"scale must be 'std' or 'none', got {scale!r}")
    rewards = rewards.detach().reshape(-1)
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.float32
    r = rewards.to(torch.float64)
    n = r.numel()
    if n == 0:
        return torch.zeros(0, dtype=out_dtype, device=rewards.device)
    g = _group_index(group_ids, n, r.device)
    n_groups = int(g.max()) + 1

    count = torch.zeros(n_groups, dtype=torch.float64, device=r.device).index_add_(0, g, torch.ones_like(r))
    group_sum = torch.zeros_like(count).index_add_(0, g, r)
    group_mean = group_sum / count
    centred = r - group_mean[g]

    if scale == "none":
        advantages = centred
    else:
        sq_dev_sum = torch.zeros_like(count).index_add_(0, g, centred**2)
        unbiased_var = sq_dev_sum / (count - 1).clamp(min=1)
        group_std = unbiased_var.sqrt()
        advantages = centred / (group_std[g] + eps)

    singleton = count[g] < 2
    advantages = torch.where(singleton, torch.zeros_like(advantages), advantages)
    return advantages.to(out_dtype)
