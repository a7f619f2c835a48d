"""Matching an agent's calls against the ground truth, and the episode rewards built on it.

Values are compared type-aware, by the parameter's schema: for a ``number`` parameter ``1 == 1.0``;
otherwise the JSON types must agree (``"1" != 1``, ``True != 1``, ``1.0`` is not an ``integer``).
Strings compare after stripping surrounding whitespace and case-folding (``"paris" == "Paris "``); lists
elementwise in order; objects key by key. Optional parameters left out are filled with their schema
default on both sides, so ``f(city="Oslo")`` matches ``f(city="Oslo", unit="celsius")`` when
``celsius`` is the default.
"""

from __future__ import annotations

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
        e_full, a_full = _with_defaults(expected, props), _with_defaults(actual, props)
        if set(e_full) != set(a_full):
            return False
        return all(values_equal(e_full[k], a_full[k], props.get(k, extra)) for k in e_full)
    return False


def _with_defaults(arguments: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
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
