"""``Trajectory``: one episode as the trainer sees it, token-exact, and the collation into padded tensors.

Alignment convention (everything per-token is aligned with ``input_ids``):

* ``loss_mask[t] == 1`` means token ``input_ids[t]`` was sampled by the model (an assistant turn's content
  token or its end-of-turn token). System, user and tool tokens and the template's own tokens
  (``<|im_start|>assistant\\n``, the ``\\n`` after ``<|im_end|>``) are 0.
* ``logprobs[t]`` is the sampler's log-probability of ``input_ids[t]`` given ``input_ids[:t]``
  (``log_softmax(logits / T)``); 0.0 where the mask is 0.
* A causal LM predicts token ``t`` from the logits at position ``t - 1``. So the trainer computes
  ``logp[:, t] = log_softmax(logits[:, t - 1])[input_ids[:, t]]`` for ``t >= 1`` (``gather_token_logprobs``
  does exactly that and puts 0.0 at ``t = 0``) and then uses ``loss_mask``/``old_logprobs`` unshifted.
  ``loss_mask[:, 0]`` is always 0 (the first token is never generated).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Trajectory:
    """One episode: token ids exactly as the model saw and sampled them, plus what training needs.

    Attributes:
        input_ids: the whole conversation's tokens (prompt, sampled turns, environment deltas).
        loss_mask: 1 on model-sampled tokens only (content + end-of-turn token of every assistant turn).
        logprobs: the sampler's log-probs aligned with ``input_ids`` (0.0 where ``loss_mask`` is 0;
            0.0 everywhere for expert trajectories).
        reward: the episode reward (sum of the environment's step rewards).
        group_id: the GRPO group (same prompt) this sample belongs to.
        is_expert: True for trajectories built from expert data rather than sampled.
        turn_spans: ``(start, end)`` (end exclusive) of the tokens of each assistant turn that are masked.
        info: the environment's info plus ``task_id``, ``messages`` (the full conversation),
            ``truncation`` (None or the reason), ``render_mismatch`` (see ``agents.rollout``).
        prompt_len: number of tokens of the opening prompt (up to and including the first generation prompt).
    """

    input_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float]
    reward: float = 0.0
    group_id: Any = None
    is_expert: bool = False
    turn_spans: list[tuple[int, int]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    prompt_len: int = 0

    def __post_init__(self) -> None:
        n = len(self.input_ids)
        if len(self.loss_mask) != n or len(self.logprobs) != n:
            raise ValueError(f"misaligned trajectory: {n} ids, {len(self.loss_mask)} mask, "
                             f"{len(self.logprobs)} logprobs")
        self.turn_spans = [tuple(s) for s in self.turn_spans]

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def num_generated(self) -> int:
        """Number of model-sampled (masked) tokens."""
        return int(sum(self.loss_mask))

    def validate(self) -> None:
        """Check the internal invariants: mask is 0/1, exactly the turn spans are masked, logprobs are 0.0
        off the mask. Raises ``ValueError`` on the first violation."""
        expected = [0] * len(self.input_ids)
        for start, end in self.turn_spans:
            if not 0 < start <= end <= len(self.input_ids):
                raise ValueError(f"turn span {(start, end)} outside 1..{len(self.input_ids)}")
            expected[start:end] = [1] * (end - start)
        if list(self.loss_mask) != expected:
            raise ValueError("loss_mask differs from the union of turn_spans")
        if any(lp != 0.0 for lp, m in zip(self.logprobs, self.loss_mask, strict=True) if not m):
            raise ValueError("nonzero logprob at an unmasked position")

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["turn_spans"] = [list(s) for s in self.turn_spans]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def save_jsonl(trajectories: Iterable[Trajectory], path: str | Path) -> None:
    """Write one JSON object per line (``info`` must be JSON-serialisable; non-JSON values become strings)."""
    with open(path, "w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(json.dumps(t.to_dict(), default=str) + "\n")


def load_jsonl(path: str | Path) -> list[Trajectory]:
    with open(path, encoding="utf-8") as f:
        return [Trajectory.from_dict(json.loads(line)) for line in f if line.strip()]


def collate(trajectories: Sequence[Trajectory], pad_token_id: int = 0,
            max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad trajectories into a batch for the trainer.

    Returns (``B`` trajectories, ``T`` the longest, or ``max_length`` when given, longer ones cut at the end):

    * ``input_ids`` ``[B, T]`` long, padded with ``pad_token_id``;
    * ``attention_mask`` ``[B, T]`` long, 1 on real tokens;
    * ``loss_mask`` ``[B, T]`` float, 1 where ``input_ids[b, t]`` was sampled by the model (0 on padding);
    * ``old_logprobs`` ``[B, T]`` float, the sampler's log-prob of ``input_ids[b, t]`` (0 off the mask);
    * ``advantages`` ``[B, T]`` float zeros: a placeholder the algorithm fills (e.g. a group-normalised
      reward broadcast over each row's masked tokens);
    * ``rewards`` ``[B]`` float, ``is_expert`` ``[B]`` bool.

    Shift convention: every ``[B, T]`` tensor is aligned with ``input_ids``. Position ``t`` refers to token
    ``t`` being predicted from positions ``< t``, i.e. by ``logits[:, t - 1]``. Compute new log-probs with
    ``gather_token_logprobs(logits, input_ids)`` (same alignment, 0 at ``t = 0``) and combine them with
    ``loss_mask``/``old_logprobs`` directly; do not shift those.
    """
    if not trajectories:
        raise ValueError("collate needs at least one trajectory")
    lengths = [t.num_tokens for t in trajectories]
    T = max(lengths) if max_length is None else max_length
    B = len(trajectories)
    input_ids = torch.full((B, T), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    loss_mask = torch.zeros((B, T), dtype=torch.float32)
    old_logprobs = torch.zeros((B, T), dtype=torch.float32)
    for b, t in enumerate(trajectories):
        n = min(len(t.input_ids), T)
        input_ids[b, :n] = torch.tensor(t.input_ids[:n], dtype=torch.long)
        attention_mask[b, :n] = 1
        loss_mask[b, :n] = torch.tensor(t.loss_mask[:n], dtype=torch.float32)
        old_logprobs[b, :n] = torch.tensor(t.logprobs[:n], dtype=torch.float32)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "loss_mask": loss_mask,
        "old_logprobs": old_logprobs,
        "advantages": torch.zeros((B, T), dtype=torch.float32),
        "rewards": torch.tensor([float(t.reward) for t in trajectories], dtype=torch.float32),
        "is_expert": torch.tensor([bool(t.is_expert) for t in trajectories], dtype=torch.bool),
    }


def gather_token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-prob of each token of ``input_ids`` under ``logits`` (``[B, T, V]``), aligned with ``input_ids``.

    ``out[:, t] = log_softmax(logits[:, t - 1] / temperature)[input_ids[:, t]]`` for ``t >= 1``;
    ``out[:, 0] = 0``. Computed in fp32.
    """
    logp = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
    picked = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return torch.cat([torch.zeros_like(picked[:, :1]), picked], dim=1)
