"""Why a ToolACE episode failed: one category per failed episode, in the spirit of BFCL's error types.

The strict reward says only pass or fail. To see what training should fix, ``agents.evaluate`` tallies
these categories per suite (``summary.failures``). An episode is classified by its first user turn that
does not match the ground truth, checked in this order:

* ``call_on_no_tool``: the turn wants no call and the agent attempted one;
* ``no_call``: the turn wants calls and the agent made no attempt;
* ``unparsable``: a call list could not be parsed (or was empty);
* ``missing_call`` / ``extra_call``: the tool names made are a strict sub- / super-multiset of the
  expected ones;
* ``wrong_tool``: otherwise different tool names;
* ``missing_argument``: right tools; a call leaves out an argument the ground truth gives (and whose
  schema default, if any, is not the expected value);
* ``unexpected_argument``: right tools; a call passes an argument the ground truth does not give (other
  than its schema default spelled out);
* ``wrong_value``: right tools and argument names; some value differs;
* ``call_error``: the calls match but one failed (a validation or execution error).

If every turn it reached matched, the episode failed at its end: ``turn_cap`` when the turn cap cut it,
``no_answer`` when it ended without a plain-text answer (or before the last user turn).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from envs.toolace.reward import SchemaLookup, match_calls, values_equal, with_defaults
from tools import ToolCall

FAILURES = ("call_on_no_tool", "no_call", "unparsable", "missing_call", "extra_call", "wrong_tool",
            "missing_argument", "unexpected_argument", "wrong_value", "call_error", "turn_cap", "no_answer")


def classify_turn(expected: Sequence[ToolCall], actual: Sequence[ToolCall], errors: int, unparsed: int,
                  schemas: SchemaLookup) -> str | None:
    """The failure category of one user turn, or ``None`` when it matches (the strict reward's turn check).

    ``actual``, ``errors`` and ``unparsed`` are as in ``envs.toolace.reward.turn_score``.
    """
    if not expected:
        return "call_on_no_tool" if actual or unparsed else None
    if not actual and not unparsed:
        return "no_call"
    if unparsed:
        return "unparsable"
    want = Counter(c.name for c in expected)
    got = Counter(c.name for c in actual)
    if got != want:
        if got < want:
            return "missing_call"
        if got > want:
            return "extra_call"
        return "wrong_tool"
    hit, used = match_calls(expected, actual, schemas)
    if all(hit) and all(used):
        return "call_error" if errors else None
    return _argument_failure([e for e, h in zip(expected, hit, strict=True) if not h],
                             [a for a, u in zip(actual, used, strict=True) if not u], schemas)


def _argument_failure(expected: list[ToolCall], actual: list[ToolCall], schemas: SchemaLookup) -> str:
    """Same tool names, unmatched calls: pair each expected call with its same-name partner; the worst
    pair decides (missing, then unexpected arguments, then only values differ)."""
    remaining = list(actual)
    verdicts: set[str | None] = set()
    for e in expected:
        partner = next((a for a in remaining if a.name == e.name), None)
        if partner is not None:  # always found when the name multisets agree
            remaining.remove(partner)
            verdicts.add(_pair_failure(e, partner, _properties(schemas(e.name))))
    for category in ("missing_argument", "unexpected_argument", "wrong_value"):
        if category in verdicts:
            return category
    return "wrong_value"


def _pair_failure(expected: ToolCall, actual: ToolCall, props: Mapping[str, Any]) -> str | None:
    """How one call differs from its expected same-name call, or ``None`` if it does not."""
    given = actual.arguments if isinstance(actual.arguments, Mapping) else {}
    want, got = with_defaults(expected.arguments, props), with_defaults(given, props)

    def same(key: str) -> bool:
        return key in want and key in got and values_equal(want[key], got[key], props.get(key))

    if any(k not in given and not same(k) for k in expected.arguments):
        return "missing_argument"
    if any(k not in expected.arguments and not same(k) for k in given):
        return "unexpected_argument"
    return None if all(same(k) for k in want) else "wrong_value"


def _properties(parameters: Mapping[str, Any] | None) -> Mapping[str, Any]:
    props = (parameters or {}).get("properties", {})
    return props if isinstance(props, Mapping) else {}


def classify_episode(turns: Sequence[str | None], reached: int, answered: bool, cut: bool) -> tuple[str, int] | None:
    """The episode's failure ``(category, user turn)``, or ``None`` when it succeeded.

    ``turns[u]`` is ``classify_turn`` for each user turn up to ``reached`` (the last one the episode got
    to); ``answered`` says whether it ended with a plain-text answer, ``cut`` whether the turn cap ended it.
    """
    for u, category in enumerate(turns[:reached + 1]):
        if category is not None:
            return category, u
    if cut:
        return "turn_cap", reached
    if not answered or reached < len(turns) - 1:
        return "no_answer", reached
    return None
