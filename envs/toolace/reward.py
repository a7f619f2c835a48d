"""Matching an agent's calls against the ground truth, and the episode rewards built on it.

Values are compared type-aware, by the parameter's schema: for a ``number`` parameter ``1 == 1.0``;
otherwise the JSON types must agree (``"1" != 1``, ``True != 1``, ``1.0`` is not an ``integer``).
Strings compare after stripping surrounding whitespace and case-folding (``"paris" == "Paris "``); lists
elementwise in order; objects key by key. Optional parameters left out are filled with their schema
default on both sides, so ``f(city="Oslo")`` matches ``f(city="Oslo", unit="celsius")`` when
``celsius`` is the default.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tools import ToolCall

SchemaLookup = Callable[[str], Mapping[str, Any] | None]


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def values_equal(expected: Any, actual: Any, schema: Mapping[str, Any] | None = None) -> bool:
    """Does ``actual`` (from the model) equal ``expected`` (ground truth) under ``schema``'s type?"""
    schema = schema or {}
    types = schema.get("type")
    types = set(types) if isinstance(types, list) else {types} if types else set()
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if _is_number(expected) and _is_number(actual):
        if "number" in types or (not types and (isinstance(expected, float) or isinstance(actual, float))):
            return float(expected) == float(actual)
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.strip().casefold() == actual.strip().casefold()
    if isinstance(expected, list) and isinstance(actual, list):
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else None
        return len(expected) == len(actual) and all(values_equal(e, a, items) for e, a in zip(expected, actual, strict=True))
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        props = schema.get("properties", {}) if isinstance(schema.get("properties"), Mapping) else {}
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), Mapping) else None
        e_full, a_full = with_defaults(expected, props), with_defaults(actual, props)
        if set(e_full) != set(a_full):
            return False
        return all(values_equal(e_full[k], a_full[k], props.get(k, extra)) for k in e_full)
    return False


def with_defaults(arguments: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """``arguments`` with every omitted property that has a schema ``default`` filled in."""
    out = dict(arguments)
    for name, prop in properties.items():
        if name not in out and isinstance(prop, Mapping) and "default" in prop:
            out[name] = prop["default"]
    return out


def calls_equal(expected: ToolCall, actual: ToolCall, parameters: Mapping[str, Any] | None) -> bool:
    """Same tool name and equal arguments (defaults filled in) under the tool's parameter schema."""
    if expected.name != actual.name or not isinstance(actual.arguments, Mapping):
        return False
    schema = dict(parameters or {"type": "object", "properties": {}})
    schema.setdefault("properties", {})
    return values_equal(dict(expected.arguments), dict(actual.arguments), schema)


def match_calls(expected: Sequence[ToolCall], actual: Sequence[ToolCall], schemas: SchemaLookup) -> tuple[list[bool], list[bool]]:
    """Greedy multiset matching: (for each expected call, was it matched; for each actual call, was it used).

    Order-insensitive: each expected call takes the first unused actual call equal to it.
    """
    used = [False] * len(actual)
    hit = [False] * len(expected)
    for i, e in enumerate(expected):
        for j, a in enumerate(actual):
            if not used[j] and calls_equal(e, a, schemas(e.name)):
                used[j] = hit[i] = True
                break
    return hit, used


def turn_score(expected: Sequence[ToolCall], actual: Sequence[ToolCall], errors: int, unparsed: int,
               schemas: SchemaLookup) -> tuple[bool, float]:
    """(exact, partial) for one user turn.

    ``actual`` holds every call the agent made in the turn (including ones that then failed), ``errors``
    counts failures of any kind (unparsable call lists, invalid arguments, execution errors) and
    ``unparsed`` the call lists that could not be parsed at all.

    exact: the calls equal the ground truth as multisets and nothing failed. partial:
    matched / max(|expected|, |actual| + unparsed), i.e. extra, wrong and unparsable attempts all dilute
    it; a no-tool turn scores 1.0 without calls and 0.0 with any attempt.
    """
    hit, used = match_calls(expected, actual, schemas)
    exact = all(hit) and all(used) and errors == 0
    denom = max(len(expected), len(actual) + unparsed)
    partial = 1.0 if denom == 0 else sum(hit) / denom
    return exact, partial


def graded_turn_score(expected: Sequence[ToolCall], actual: Sequence[ToolCall], unparsed: int,
                      schemas: SchemaLookup) -> float:
    """ToolRL's correctness reward for one user turn (Qian et al. 2025, sec. 3.3), rescaled to [0, 1].

    Three levels, summed and divided by their maximum ``1 + |G| + sum_j |keys(G_j)|``:

    * tool names: multiset Jaccard ``|N_G & N_P| / |N_G | N_P|`` (an unparsable call list counts as one
      call with no name, so it only dilutes);
    * parameter names: for each expected call ``G_j``, the Jaccard of its keys with those of the actual call
      of the same name it is paired with (0 if none is left);
    * values: for each expected call, the number of its keys whose value the paired call matches (type-aware,
      ``values_equal``).

    Optional parameters are filled with their schema defaults on both sides first, as in ``calls_equal``.
    Pairing is greedy in ground-truth order, each expected call taking the unused same-name call that
    scores best. A no-tool turn scores 1.0 without any attempt and 0.0 with one. Unlike ``turn_score``'s
    partial share, the right tool with wrong arguments earns something, so GRPO groups whose samples all
    fail the exact check can still be ranked.
    """
    if not expected:
        return 1.0 if not actual and unparsed == 0 else 0.0
    want = Counter(call.name for call in expected)
    got = Counter(call.name for call in actual)
    union = sum((want | got).values()) + unparsed
    name_score = sum((want & got).values()) / union

    key_score = value_score = 0.0
    max_score = 1.0 + len(expected)
    used = [False] * len(actual)
    for e in expected:
        props = (schemas(e.name) or {}).get("properties", {}) or {}
        e_args = with_defaults(e.arguments, props)
        max_score += len(e_args)
        best, best_j = (-1.0, 0.0), None
        for j, a in enumerate(actual):
            if used[j] or a.name != e.name or not isinstance(a.arguments, Mapping):
                continue
            a_args = with_defaults(a.arguments, props)
            keys = set(e_args) | set(a_args)
            jaccard = len(set(e_args) & set(a_args)) / len(keys) if keys else 1.0
            values = sum(k in a_args and values_equal(v, a_args[k], props.get(k)) for k, v in e_args.items())
            if jaccard + values > sum(best):
                best, best_j = (jaccard, float(values)), j
        if best_j is not None:
            used[best_j] = True
            key_score += best[0]
            value_score += best[1]
    return (name_score + key_score + value_score) / max_score
