"""Dynamic sampling (DAPO, section 3.2; verl's group filtering) and a pass-rate filter over the prompt pool.

A GRPO group whose G rewards all tie has advantage 0 for every member (``algorithms.advantages``), so it adds
nothing to the policy gradient: with the strict 0/1 tool-call reward and a small model almost every group is
all-0 (or, on easy tasks, all-1), and the on-policy half of CHORD then trains on nothing. Two remedies:

* **Dynamic sampling** (``trainer.dynamic_sampling=true``): after the step's batch of prompts is rolled out,
  the trainer keeps drawing further batches of fresh prompts, at most ``trainer.max_extra_batches`` of them,
  until ``trainer.informative_groups`` groups (default: ``prompts_per_step``) have rewards that differ. Only
  informative groups are trained on, the first ``informative_groups`` of them in draw order; tied groups are
  dropped (they would have been skipped by the loss anyway, but would still count in nothing but cost).
  When the budget runs out first, the step trains on the informative groups it has (DAPO's verl recipe
  raises instead; one hard step should not end a run).
* **Pass-rate filter** (``trainer.prompt_filter_visits=k``, k > 0): a train task whose last k visits each
  gave a tied group (every sample solved it, or none did, under a 0/1 reward) is skipped when prompts are
  drawn, as curricula in the field do; a task with fewer than k visits is never skipped, and when every
  task would be skipped the draw takes them anyway, so a step always has its prompts.

Every rank sees every group's outcome (``GroupOutcome`` vectors are all-reduced by the trainer), so the
history, the stopping decision and which groups are kept are the same on all ranks, and the result does not
depend on how the batch is split over ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

TIE_TOLERANCE = 1e-9
PASS_RATE_BINS = (  # (metric suffix, lower bound, upper bound, lower inclusive, upper inclusive)
    ("0", 0.0, 0.0, True, True),
    ("0-0.25", 0.0, 0.25, False, True),
    ("0.25-0.5", 0.25, 0.5, False, True),
    ("0.5-0.75", 0.5, 0.75, False, True),
    ("0.75-1", 0.75, 1.0, False, False),
    ("1", 1.0, 1.0, True, True),
)


def is_informative(rewards: Sequence[float]) -> bool:
    """Whether a group's rewards differ (so its GRPO advantages are not all 0)."""
    return len(rewards) > 1 and max(rewards) - min(rewards) > TIE_TOLERANCE


def pass_rate(rewards: Sequence[float]) -> float:
    """The share of a group's samples that solved the task (reward >= 1, the accuracy's threshold)."""
    return sum(r >= 1.0 for r in rewards) / max(1, len(rewards))


def pass_rate_histogram(rates: Iterable[float]) -> dict[str, float]:
    """How many groups fall in each pass-rate bin: ``pass_rate/0`` (none solved), ``pass_rate/0-0.25`` (more
    than 0, at most a quarter), ..., ``pass_rate/1`` (all solved)."""
    counts = {f"pass_rate/{name}": 0.0 for name, *_ in PASS_RATE_BINS}
    for rate in rates:
        for name, low, high, low_in, high_in in PASS_RATE_BINS:
            if (rate > low or (low_in and rate == low)) and (rate < high or (high_in and rate == high)):
                counts[f"pass_rate/{name}"] += 1
                break
    return counts


@dataclass(frozen=True)
class GroupOutcome:
    """One group of a step, as every rank sees it: its draw (``batch``, 0 = the step's own batch), its slot
    in that batch, the train task, its pass rate and whether its rewards differ."""

    batch: int
    slot: int
    task: int
    pass_rate: float
    informative: bool


def kept_groups(outcomes: Sequence[GroupOutcome], target: int) -> set[tuple[int, int]]:
    """``(batch, slot)`` of the first ``target`` informative groups in draw order: the ones the step trains on."""
    informative = sorted((o.batch, o.slot) for o in outcomes if o.informative)
    return set(informative[:target])


class PromptHistory:
    """Per train task, whether each of its last visits was informative; JSON-serialisable for checkpoints."""

    def __init__(self, visits: int, state: dict[str, list[bool]] | None = None) -> None:
        self.visits = visits
        self._seen: dict[int, list[bool]] = {int(k): list(v) for k, v in (state or {}).items()}

    def record(self, task: int, informative: bool) -> None:
        """Note one visit (nothing is kept while the filter is off)."""
        if self.visits <= 0:
            return
        seen = self._seen.setdefault(task, [])
        seen.append(bool(informative))
        del seen[:-self.visits]

    def skip(self, task: int) -> bool:
        """True when the filter is on and the task's last ``visits`` visits all gave tied groups."""
        seen = self._seen.get(task, [])
        return self.visits > 0 and len(seen) >= self.visits and not any(seen[-self.visits:])

    def state_dict(self) -> dict[str, list[bool]]:
        return {str(k): v for k, v in sorted(self._seen.items())}

    def __len__(self) -> int:
        return len(self._seen)


def draw_prompts(rng: np.random.Generator, num_tasks: int, size: int, *, exclude: set[int] | None = None,
                 skip: Callable[[int], bool] | None = None) -> tuple[list[int], int]:
    """``size`` train-task indices, and how many were passed over by ``skip``.

    Without ``exclude`` and ``skip`` this is the plain uniform draw (without replacement when the pool is
    large enough), so runs without the filter draw what they always drew. Otherwise tasks are taken in a
    random order, leaving out ``exclude`` (tasks already drawn this step) and those ``skip`` rejects; when
    too few remain, rejected and then excluded tasks fill the batch in the same random order.
    """
    if not exclude and skip is None:
        return [int(i) for i in rng.choice(num_tasks, size=size, replace=num_tasks < size)], 0
    exclude = exclude or set()
    order = [int(i) for i in rng.permutation(num_tasks)]
    chosen: list[int] = []
    rejected: list[int] = []
    for task in order:
        if len(chosen) == size:
            break
        if task in exclude:
            continue
        (rejected if skip is not None and skip(task) else chosen).append(task)
    passed_over = len(rejected)
    # The filter (or this step's earlier draws) left too few: never stall a step.
    fallback = rejected + [i for i in order if i in exclude]
    chosen += fallback[:size - len(chosen)]
    while len(chosen) < size:  # a pool smaller than the batch: with replacement, as the plain draw does
        chosen.append(int(rng.integers(num_tasks)))
    return chosen, passed_over
