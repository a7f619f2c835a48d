"""Sampling: what an engine is asked for (``SamplingParams``), what it returns (``Generation``), the engine
contract, and the one place a next token is chosen (temperature, top-p, per-row random streams).

Contract (``GenerationEngine``): ``generate(prompts, sampling) -> list[Generation]``, one per prompt, in
order. ``prompts`` are token ids (already rendered by the chat template); the engine never re-tokenises.

Log-prob convention (what RL needs): ``Generation.logprobs[t]`` is ``log_softmax(logits / T)[token_t]``
computed in fp32 from the model's logits at temperature ``T = sampling.temperature``, i.e. exactly what a
trainer computes in a teacher-forced pass at the same temperature. top-p truncation changes which token
can be *sampled* but not the recorded log-prob (the trainer never sees the truncation either). Greedy
decoding records the same quantity for the argmax token (``T = 1`` when ``temperature == 0``). A token
chosen under a constraint or from a hinted mixture (``Hint``) still records the row's own log-prob.

Stopping: the model's EOS ids (tokenizer + generation config; ``<|im_end|>`` for SmolLM2, the token that
closes an assistant turn) end a row with ``finish_reason="eos"``; integer entries of ``sampling.stop`` are
stop token ids and string entries are stop strings (``"stop"``); ``max_new_tokens`` gives ``"length"``;
``repeat_window``/``repeat_count`` cut a row that loops (``"repetition"``, a cut like ``"length"``).
The token that triggers a stop is part of ``token_ids`` and has a log-prob. A stop string is matched on
the decoded text of the generated tokens; generation is cut after the token that completes it (tokens are
never split, so that token's text may run a little past the stop string).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch

FinishReason = Literal["stop", "length", "eos", "repetition"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one batch.

    ``stop`` mixes stop strings (``str``) and stop token ids (``int``). ``greedy`` (or ``temperature=0``)
    takes the argmax. ``seed`` makes sampling reproducible: row ``i`` of a call draws from its own stream
    seeded by ``(seed, i)``, so its tokens do not depend on batch size or on when other rows finish.
    ``row_seeds`` (one per prompt) seeds each row's stream directly instead: a caller that names its rows
    (e.g. an episode id) gets the same tokens for a row whatever else is in the call, on any rank.
    ``repeat_window`` and ``repeat_count`` (both > 0 to switch it on) end a row once some window of
    ``repeat_window`` generated tokens has occurred ``repeat_count`` times (``finish_reason="repetition"``).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str | int, ...] = ()
    greedy: bool = False
    seed: int | None = None
    row_seeds: tuple[int, ...] | None = None
    repeat_window: int = 0
    repeat_count: int = 0

    def __post_init__(self) -> None:
        stop = (self.stop,) if isinstance(self.stop, str | int) else tuple(self.stop or ())
        object.__setattr__(self, "stop", stop)
        if any(not isinstance(s, str | int) or (isinstance(s, str) and not s) for s in stop):
            raise ValueError(f"stop entries must be non-empty strings or token ids, got {stop!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.repeat_window < 0 or self.repeat_count < 0:
            raise ValueError(f"repeat_window and repeat_count must be >= 0, got {self.repeat_window}, "
                             f"{self.repeat_count}")
        if self.row_seeds is not None:
            object.__setattr__(self, "row_seeds", tuple(int(s) for s in self.row_seeds))

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    @property
    def logprob_temperature(self) -> float:
        """The ``T`` in the recorded ``log_softmax(logits / T)`` (1.0 for ``temperature == 0``)."""
        return self.temperature if self.temperature > 0 else 1.0

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return tuple(s for s in self.stop if isinstance(s, str))

    @property
    def stop_token_ids(self) -> frozenset[int]:
        return frozenset(s for s in self.stop if isinstance(s, int))

    @property
    def stops_on_repetition(self) -> bool:
        return self.repeat_window > 0 and self.repeat_count > 0


@dataclass
class Generation:
    """One sampled continuation: tokens as sampled, their log-probs (see module doc), and why it ended."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason


@runtime_checkable
class GenerationEngine(Protocol):
    """What rollouts need from an engine. An engine may also have ``max_context`` (an int: longest prompt +
    generation it takes), which the rollout respects (``agents.rollout``)."""

    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Generation]: ...

    def update_weights(self, model: Any) -> None: ...


@runtime_checkable
class Hint(Protocol):
    """A second stream decoded alongside one row (``HFEngine.generate(..., hints=...)``).

    The engine runs ``prompt`` as an extra row of the batch and feeds it every token the row samples; the
    row's next token is chosen from ``scores(hint_logprobs, own_logprobs)`` (both ``log_softmax`` of the two
    streams' logits at temperature 1, shape ``[V]``; the row's temperature and top-p are applied to the
    result) instead of from its own logits. After each token the row keeps, ``advance(text)`` gets the
    row's generated text so far; once it returns False the hint stream is dropped and the row samples
    from its own logits alone. ``algorithms.hinted.HintedStream`` is the Hinted Decoding mixture.
    """

    prompt: Sequence[int]

    def scores(self, hint_logprobs: torch.Tensor, own_logprobs: torch.Tensor) -> torch.Tensor: ...

    def advance(self, text: str) -> bool: ...


# ----------------------------------------------------------------------------------------------- token choice


def _nucleus(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``probs`` sorted in descending order along the last dimension with every token outside the top-p
    nucleus set to 0 (a token is kept while the mass strictly above it is below ``top_p``, so the most
    likely token always survives), and the sort order."""
    probs, order = probs.sort(dim=-1, descending=True)
    before = probs.cumsum(dim=-1) - probs
    return probs.masked_fill(before >= top_p, 0.0), order


def choose_tokens(logits: torch.Tensor, sampling: SamplingParams,
                  uniforms: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row of ``logits`` [B, V]; return ``(tokens [B], logprobs [B])``.

    ``uniforms`` [B] in [0, 1) drive inverse-CDF sampling (one per row, from the row's own generator);
    unused when greedy. The log-prob is ``log_softmax(logits / T)`` at the chosen token, before top-p.
    """
    logits = logits.float()
    logp = torch.log_softmax(logits / sampling.logprob_temperature, dim=-1)
    if sampling.is_greedy:
        tokens = logits.argmax(dim=-1)
    else:
        assert uniforms is not None
        probs = logp.exp()
        order = None
        if sampling.top_p < 1.0:
            probs, order = _nucleus(probs, sampling.top_p)
        cdf = probs.cumsum(dim=-1)
        target = (uniforms.to(cdf) * cdf[:, -1]).unsqueeze(-1)
        idx = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1)
        # float round-off can land on a zero-probability token at the very end: step back to a real one
        bad = probs.gather(-1, idx) <= 0
        if bad.any():
            idx = torch.where(bad, (probs > 0).cumsum(-1).argmax(-1, keepdim=True), idx)
        tokens = (order.gather(-1, idx) if order is not None else idx).squeeze(-1)
    return tokens, logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, sampling: SamplingParams) -> torch.Tensor:
    """``log_softmax(logits / T)`` [B, V] at ``tokens`` [B]: the log-prob ``choose_tokens`` records."""
    logp = torch.log_softmax(logits.float() / sampling.logprob_temperature, dim=-1)
    return logp.gather(-1, tokens.to(logp.device).unsqueeze(-1)).squeeze(-1)


def admissible_token(logits: torch.Tensor, sampling: SamplingParams, gen: torch.Generator | None,
                     admissible: Callable[[int], bool], redraws: int = 16) -> int:
    """An admissible token for one row [V]: greedy takes the best admissible one; sampling re-draws from the
    distribution with each rejected token removed (up to ``redraws`` times, then the most likely admissible
    one). Raises when no token of the vocabulary is admissible (a grammar bug, never a model's fault)."""
    logits = logits.float()
    if not sampling.is_greedy and gen is not None:
        probs = torch.softmax(logits / sampling.logprob_temperature, dim=-1)
        if sampling.top_p < 1.0:
            kept, order = _nucleus(probs, sampling.top_p)
            probs = torch.zeros_like(probs).scatter_(0, order, kept)
        for _ in range(redraws):
            total = float(probs.sum())
            if total <= 0:
                break
            u = float(torch.rand((), generator=gen)) * total
            t = int(torch.searchsorted(probs.cumsum(0), torch.tensor([u]), right=True).clamp_(max=len(probs) - 1))
            if probs[t] > 0 and admissible(t):
                return t
            probs[t] = 0.0
    for t in logits.argsort(descending=True).tolist():
        if admissible(t):
            return t
    raise RuntimeError("guided decoding: no token of the vocabulary continues the call list")


def row_generators(n: int, seed: int | None, row_seeds: Sequence[int] | None = None) -> list[torch.Generator]:
    """One CPU generator per row: seeded by ``row_seeds[i]`` when given, else by ``(seed, i)``; without
    either, the base seed comes from the global torch RNG."""
    if row_seeds is not None:
        if len(row_seeds) != n:
            raise ValueError(f"row_seeds has {len(row_seeds)} entries for {n} prompts")
        seeds = [int(s) % (2**63 - 1) for s in row_seeds]
    else:
        base = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        seeds = [(base * 1_000_003 + i) % (2**63 - 1) for i in range(n)]
    gens = []
    for s in seeds:
        g = torch.Generator()
        g.manual_seed(s)
        gens.append(g)
    return gens


# ----------------------------------------------------------------------------------------------- repetition


def repeated_window(ids: Sequence[int], window: int, count: int) -> bool:
    """True if some run of ``window`` consecutive tokens occurs at least ``count`` times in ``ids``
    (occurrences may overlap). The reference the incremental ``RepetitionDetector`` must agree with."""
    if window < 1 or count < 1 or len(ids) < window:
        return False
    seen = Counter(tuple(ids[i:i + window]) for i in range(len(ids) - window + 1))
    return max(seen.values()) >= count


class RepetitionDetector:
    """Incremental ``repeated_window``: ``push`` each generated token, it returns True once a
    ``window``-token window has been seen ``count`` times. O(window) per token."""

    def __init__(self, window: int, count: int):
        self.window, self.count = int(window), int(count)
        self.ids: list[int] = []
        self.seen: Counter[tuple[int, ...]] = Counter()

    def push(self, token: int) -> bool:
        self.ids.append(int(token))
        if self.window < 1 or self.count < 1 or len(self.ids) < self.window:
            return False
        key = tuple(self.ids[-self.window:])
        self.seen[key] += 1
        return self.seen[key] >= self.count
