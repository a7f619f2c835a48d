r"""Hinted Decoding ("Towards On-Policy SFT"): rewrite an expert reply in the model's own distribution.

Two streams of the *same* model are decoded together, token by token, and always receive the same token:

* the **hinted** stream p sees the conversation plus the reference reply (``hint_messages``: a system
  instruction to turn the reference into its own reply without mentioning it, and the reference itself);
* the **student** stream q sees the conversation alone (the opening messages the environment gives).

Per step (``mix_logprobs``, applied by ``HintedStream``; exactly the formulas of docs ALGORITHMS.md):

    first token:      sampled from p                                  (lam is not defined yet)
    then:             lam   = clamp(beta * H(p) / log|V|, 0, 1)
                      mixed = log_softmax(p) * (1 - lam) + log_softmax(q) * lam     (geometric mixture)
                      token ~ top_p(softmax(mixed / temperature))                    (T = 0.3, top-p 0.95)
    after the marker: token ~ top_p(softmax(log_softmax(q) / temperature))          (q alone)

Low entropy in p (the reference decides the token) keeps lam near 0; where p is unsure the student's own
preference takes over. beta = 0 is plain sampling from p (self-distillation). The *marker* is the final
answer's opening (math: ``\boxed{``; tool calls: ``[`` starting a pythonic call list); once it is in the
generated text, the rest comes from q alone. Decoding stops on the end-of-turn token, a length cap, or a
``repeat_window``-token window seen ``repeat_count`` times.

This module holds the method (the mixture, the markers, the hint prompt, the parameters); decoding is the
engine's: q is a row of ``agents.HFEngine.generate`` and p its hint (``HintedStream``, an
``agents.sampling.Hint``), an extra row of the same batch that is fed every token q samples and is
dropped at the switch. So the KV cache, the prefix reuse, top-p and the per-row random streams (one
uniform per sampled token, seeded per row: a row's tokens do not depend on the rest of the batch) are
those of every other rollout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from agents.sampling import SamplingParams

HINT_INSTRUCTION = (
    "A reference reply to the conversation is given at the end of the last message. Write your own reply "
    "that reaches exactly the same result (the same final answer, the same function calls with the same "
    "arguments), in your own words and step by step where reasoning is needed. Never mention or refer to "
    "the reference reply: answer as if you had worked it out yourself."
)
REFERENCE_HEADER = "Reference reply (rewrite it as your own; do not mention it):"


# ----------------------------------------------------------------------------------------------- parameters


@dataclass
class HintedParams:
    """Parameters of one Hinted Decoding run (defaults: the paper's).

    beta: lam = clamp(beta * H(p) / log|V|, 0, 1); 0 samples from the hinted stream alone.
    temperature, top_p: applied to the mixed log-probabilities (temperature first, then the nucleus);
        temperature <= 0 is greedy.
    max_new_tokens: length cap per reply.
    repeat_window, repeat_count: stop when a window of ``repeat_window`` tokens has occurred
        ``repeat_count`` times among the generated tokens.
    """

    beta: float = 1.0
    temperature: float = 0.3
    top_p: float = 0.95
    max_new_tokens: int = 512
    repeat_window: int = 30
    repeat_count: int = 5

    def sampling(self) -> SamplingParams:
        """The engine's ``SamplingParams`` for these (temperature <= 0 is greedy)."""
        return SamplingParams(temperature=max(self.temperature, 0.0), top_p=self.top_p,
                              max_new_tokens=self.max_new_tokens, repeat_window=self.repeat_window,
                              repeat_count=self.repeat_count)


# ----------------------------------------------------------------------------------------------- markers

Marker = Callable[[str], bool]

_CALL_LIST = re.compile(r"\[\s*[A-Za-z_][\w.]*\s*\(")


def boxed_marker(text: str) -> bool:
    r"""Math: the final answer starts with ``\boxed{``."""
    return "\\boxed{" in text


def call_list_marker(text: str) -> bool:
    """Tool calls: a ``[`` that starts a pythonic call list, i.e. ``[`` + a (dotted) name + ``(``.

    The name and ``(`` are required so a plain ``[`` in prose (a list, a citation) does not switch.
    """
    return _CALL_LIST.search(text) is not None


def never_marker(text: str) -> bool:
    """No switch: the mixture is used to the end of the reply."""
    return False


MARKERS: dict[str, Marker] = {"boxed": boxed_marker, "call_list": call_list_marker, "none": never_marker}


def resolve_marker(marker: str | Marker | None) -> Marker:
    """A marker callable from a name in ``MARKERS``, a callable, or ``None`` (never switch)."""
    if marker is None:
        return never_marker
    if callable(marker):
        return marker
    try:
        return MARKERS[marker]
    except KeyError:
        raise ValueError(f"unknown marker {marker!r}; use one of {sorted(MARKERS)} or a callable") from None


# ----------------------------------------------------------------------------------------------- the mixture


def entropy_from_logprobs(logp: Tensor) -> Tensor:
    """H = -sum_v p(v) log p(v) over the last dimension (``logp`` are log-probabilities)."""
    return -(logp.exp() * logp).sum(-1)


def mix_logprobs(logp_p: Tensor, logp_q: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """The geometric mixture of one step, per row.

    lam = clamp(beta * H(p) / log|V|, 0, 1);  mixed = logp_p * (1 - lam) + logp_q * lam.
    ``logp_*`` are [R, V] log-probabilities (log_softmax of the logits); returns (mixed [R, V], lam [R]).
    -inf entries are clamped to the most negative finite float first, so 0 * (-inf) never makes a NaN and
    lam = 0 returns ``logp_p`` exactly.
    """
    lo = torch.finfo(logp_p.dtype).min
    logp_p, logp_q = logp_p.clamp(min=lo), logp_q.clamp(min=lo)
    lam = (beta * entropy_from_logprobs(logp_p) / math.log(logp_p.shape[-1])).clamp(0.0, 1.0)
    mixed = logp_p * (1.0 - lam).unsqueeze(-1) + logp_q * lam.unsqueeze(-1)
    return mixed, lam


@dataclass
class HintedStream:
    """The hinted stream p of one reply, as a hint of the student row q (``agents.sampling.Hint``):
    ``HFEngine.generate(student_prompts, params.sampling(), hints=[HintedStream(p_prompt, beta, marker)])``.

    prompt: p's prompt (the conversation with the hint, ``hint_messages``, rendered with the generation
        prompt).
    beta, marker: as in ``HintedParams`` and ``resolve_marker`` (a name, a callable or None).
    After decoding, the trace: ``switch_pos`` is the index of the reply's first token sampled from q alone
    (the marker was complete just before it), ``None`` if the marker never appeared; ``lams`` holds lam
    of every mixed step (not the first token, not the tokens after the switch).
    """

    prompt: list[int]
    beta: float = 1.0
    marker: str | Marker | None = None
    lams: list[float] = field(default_factory=list)
    switch_pos: int | None = None
    tokens: int = 0  # tokens of the reply sampled so far

    def __post_init__(self) -> None:
        self.marker = resolve_marker(self.marker)

    def scores(self, hint_logprobs: Tensor, own_logprobs: Tensor) -> Tensor:
        """p alone for the first token, then the geometric mixture of p and q."""
        if self.tokens == 0:
            return hint_logprobs
        mixed, lam = mix_logprobs(hint_logprobs[None], own_logprobs[None], self.beta)
        self.lams.append(float(lam[0]))
        return mixed[0]

    def advance(self, text: str) -> bool:
        """Count the reply's newest token; False (switch to q alone) once ``text`` holds the marker."""
        self.tokens += 1
        if self.marker(text):  # type: ignore[operator]
            self.switch_pos = self.tokens
            return False
        return True

    @property
    def mean_lam(self) -> float:
        """Mean lam over the mixed steps (0.0 when there were none)."""
        return sum(self.lams) / len(self.lams) if self.lams else 0.0


# ----------------------------------------------------------------------------------------------- prompts


def hint_messages(conversation: Sequence[dict[str, Any]], reference: str,
                  instruction: str = HINT_INSTRUCTION) -> list[dict[str, Any]]:
    """The hinted stream's conversation: ``conversation`` (what the student sees) with ``instruction``
    appended to the system message (one is inserted if there is none) and the reference reply appended
    to the last message, right before the reply to write, where a small model attends to it best.

    The environment's own system prompt (task rules, tool schemas) is kept, so p and q differ only by the
    hint. ``conversation`` must end with a user or tool message.
    """
    msgs = [{"role": m["role"], "content": m["content"]} for m in conversation]
    if not msgs or msgs[-1]["role"] == "assistant":
        raise ValueError("hint_messages needs a conversation that ends before the assistant's reply")
    if msgs[0]["role"] == "system":
        msgs[0]["content"] = f"{msgs[0]['content']}\n\n{instruction}"
    else:
        msgs.insert(0, {"role": "system", "content": instruction})
    msgs[-1]["content"] = f"{msgs[-1]['content']}\n\n{REFERENCE_HEADER}\n{reference}"
    return msgs
