r"""CHORD's math reward for one response.

=========================================================  ========
response                                                   reward
=========================================================  ========
last ``\boxed{}`` equals the gold answer (math-verify)     +1.0
a well-formed ``\boxed{}`` with a wrong answer             0.0
  (also: unparsable, or verification timed out)
no well-formed ``\boxed{}``                                -0.1
no well-formed ``\boxed{}`` *and* over-long                -1.0
=========================================================  ========

Over-long means longer than ``max_response_chars`` characters, or cut by the generation length cap (the
rollout says so with ``truncated_by_length=True``). A response that is long but still ends with a boxed
answer is graded like any other: the length penalty is for running out of room before answering.

An episode whose final answer is not correct names why in its info's ``failure`` (``envs.episode``):
``wrong_answer``, ``verify_timeout`` (graded wrong because math-verify ran out of time: the check decided,
not the answer), ``no_boxed_answer`` or ``overlong``; ``envs.math.env`` adds ``no_answer`` for an episode
cut at its turn cap before any answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.math.answer import last_boxed
from envs.math.verify import Verifier

CORRECT, WRONG, FORMAT, OVERLONG = 1.0, 0.0, -0.1, -1.0


@dataclass(frozen=True)
class Score:
    """A graded response: ``reward``; ``outcome`` in correct/wrong/format/overlong; the boxed ``answer``."""

    reward: float
    outcome: str
    answer: str | None = None
    timed_out: bool = False
    error: str | None = None
    overlong: bool = False


def score_response(text: str, gold: str, verifier: Verifier, max_response_chars: int = 8_000,
                   truncated_by_length: bool = False) -> Score:
    """Grade ``text`` against ``gold`` (see the module table)."""
    overlong = truncated_by_length or len(text) > max_response_chars
    answer = last_boxed(text)
    if answer is None:
        if overlong:
            return Score(OVERLONG, "overlong", overlong=True)
        return Score(FORMAT, "format")
    verdict = verifier.verify(gold, answer)
    if verdict.correct:
        return Score(CORRECT, "correct", answer, overlong=overlong)
    return Score(WRONG, "wrong", answer, timed_out=verdict.timed_out, error=verdict.error, overlong=overlong)


def failure_of(score: Score) -> str | None:
    """The ``failure`` category of an episode whose final answer scored ``score``; ``None`` when correct."""
    if score.outcome == "correct":
        return None
    if score.outcome == "wrong":
        return "verify_timeout" if score.timed_out else "wrong_answer"
    return "no_boxed_answer" if score.outcome == "format" else "overlong"
