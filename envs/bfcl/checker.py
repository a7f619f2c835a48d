"""BFCL's AST checker (Python categories) and relevance checker, with a verdict and a reason.

The rules follow BFCL's ``ast_checker.py`` exactly, since published scores depend on them:

* the function name must match exactly; every schema-required parameter must be present; a parameter that
  is not in the schema or not in the answer fails; a parameter left out is allowed only when its answer
  list contains ``""``;
* types are compared with ``type(v) is T`` (so ``True`` is not an ``int``); an ``int`` is accepted for a
  ``float`` parameter; a tuple given for a ``tuple`` parameter counts as a list; array/tuple items are
  type-checked one level deep; a value whose type matches the answer's type instead of the schema's is a
  "variable" and is compared by plain membership;
* strings are normalised on both sides (``[ ,./-_*^]`` removed, lower case, ``'`` -> ``"``); list items
  likewise, order kept; dict values likewise, every answer key without ``""`` must be present;
  numbers and booleans are plain membership (``==``, no tolerance);
* simple: exactly one call; multiple: one call, checked against the answer's function; parallel and
  parallel_multiple: as many calls as answers, matched order-insensitively and greedily (for each answer,
  the first unmatched call that passes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from envs.bfcl.decode import DecodedCall

TYPE_MAP: dict[str, type] = {
    "string": str, "integer": int, "float": float, "boolean": bool,
    "array": list, "tuple": list, "dict": dict, "any": str,
}
NESTED_TYPES = ("array", "tuple")
_NORMALISE = re.compile(r"[ ,./\-_*^]")


@dataclass(frozen=True)
class Verdict:
    """Outcome of a check: ``valid``, a human-readable ``reason`` and BFCL's ``error_type`` tag."""

    valid: bool
    reason: str = ""
    error_type: str = ""

    def __bool__(self) -> bool:
        return self.valid


OK = Verdict(True)


def _fail(reason: str, error_type: str) -> Verdict:
    return Verdict(False, reason, error_type)


def normalise(s: str) -> str:
    """BFCL's string standardisation: drop ``[ ,./-_*^]``, lower-case, single quotes to double."""
    return _NORMALISE.sub("", s).lower().replace("'", '"')


def _answer_type(answers: list[Any]) -> type | None:
    for a in answers:
        if a != "":
            return type(a)
    return None


def _type_check(param: str, value: Any, answers: list[Any], expected: str, expected_t: type,
                nested_t: type | None) -> tuple[Verdict, bool]:
    """``(verdict, is_variable)``; one level of nesting, as in BFCL's ``type_checker``."""
    answer_t = _answer_type(answers)
    is_variable = answer_t is not None and answer_t is not expected_t
    if type(value) is expected_t:
        if nested_t is None:
            return OK, is_variable
        for answer in answers:
            ok = True
            if type(answer) is list:
                for item in value:
                    item_verdict, _ = _type_check(param, item, answer, nested_t.__name__, nested_t, None)
                    if not item_verdict:
                        ok = False
                        break
            if ok:
                return OK, is_variable
        return _fail(f"nested type check failed for {param!r}: expected {expected} of "
                     f"{nested_t.__name__}, got {value!r}", "type_error:nested"), is_variable
    if answer_t is not None and type(value) is answer_t:
        return OK, True
    return _fail(f"wrong type for {param!r}: expected {expected}, got {type(value).__name__} ({value!r})",
                 "type_error:simple"), is_variable


def _norm_if_str(x: Any) -> Any:
    return normalise(x) if type(x) is str else x


def _string_check(param: str, value: str, answers: list[Any]) -> Verdict:
    if normalise(value) in [normalise(a) for a in answers if type(a) is str]:
        return OK
    return _fail(f"wrong value for {param!r}: {value!r}, expected one of {answers}", "value_error:string")


def _list_check(param: str, value: list, answers: list[Any]) -> Verdict:
    got = [_norm_if_str(v) for v in value]
    # BFCL iterates every answer, so an optional "" acts as the empty list
    wanted = [[_norm_if_str(x) for x in a] for a in answers if isinstance(a, list | tuple | str)]
    if got in wanted:
        return OK
    return _fail(f"wrong value for {param!r}: {value!r}, expected one of {answers}", "value_error:list/tuple")


def _dict_check(param: str, value: dict, answers: list[Any]) -> Verdict:
    verdict = _fail(f"no acceptable dict for {param!r}", "dict_checker:unclear")
    for answer in answers:
        if answer == "":
            continue
        if not isinstance(answer, dict):
            continue
        verdict = OK
        for key, v in value.items():
            if key not in answer:
                verdict = _fail(f"unexpected key {key!r} in {param!r}", "value_error:dict_key")
                break
            if _norm_if_str(v) not in [_norm_if_str(a) for a in answer[key]]:
                verdict = _fail(f"wrong value for key {key!r} of {param!r}: {v!r}, expected one of "
                                f"{answer[key]}", "value_error:dict_value")
                break
        if verdict:
            for key, acceptable in answer.items():
                if key not in value and "" not in acceptable:
                    verdict = _fail(f"missing key {key!r} in {param!r}", "value_error:dict_key")
                    break
        if verdict:
            return OK
    return verdict


def _list_dict_check(param: str, value: list, answers: list[Any]) -> Verdict:
    verdict = _fail(f"no acceptable list of dicts for {param!r}", "list_dict_checker:unclear")
    for answer in answers:
        answer = [] if answer == "" else answer  # BFCL: an optional "" has length 0
        if not isinstance(answer, list) or len(value) != len(answer):
            verdict = _fail(f"wrong number of dicts in {param!r}", "value_error:list_dict_count")
            continue
        for item, item_answer in zip(value, answer, strict=True):
            verdict = _dict_check(param, item, [item_answer]) if isinstance(item, dict) else _fail(
                f"item of {param!r} is not a dict: {item!r}", "value_error:dict_value")
            if not verdict:
                break
        if verdict:
            return OK
    return verdict


def check_call(function: dict[str, Any], call: DecodedCall, answer: dict[str, dict[str, list[Any]]]) -> Verdict:
    """Check one decoded call against one function schema and one answer ``{name: {param: [values]}}``."""
    answer_params = next(iter(answer.values()))
    name = function["name"]
    if call.name != name:
        return _fail(f"function name {name!r} not found (got {call.name!r})",
                     "simple_function_checker:wrong_func_name")
    properties = function["parameters"].get("properties", {})
    for param in function["parameters"].get("required", []):
        if param not in call.arguments:
            return _fail(f"missing required parameter {param!r}", "simple_function_checker:missing_required")
    for param, value in call.arguments.items():
        if param not in properties or param not in answer_params:
            return _fail(f"unexpected parameter {param!r}", "simple_function_checker:unexpected_param")
        expected = properties[param]["type"]
        if expected not in TYPE_MAP:
            return _fail(f"unsupported schema type {expected!r} for {param!r}", "type_error:schema")
        expected_t = TYPE_MAP[expected]
        nested_t = None
        if expected in NESTED_TYPES:
            item_type = properties[param].get("items", {}).get("type")
            nested_t = TYPE_MAP.get(item_type) if item_type else None
        if expected == "tuple" and type(value) is tuple:
            value = list(value)
        if expected == "float" and type(value) is int:
            try:
                value = float(value)
            except OverflowError:  # BFCL's checker crashes here; an int beyond float range is no answer
                return _fail(f"wrong value for {param!r}: integer too large for a float", "value_error:others")
        acceptable = answer_params[param]
        verdict, is_variable = _type_check(param, value, acceptable, expected, expected_t, nested_t)
        if not verdict:
            return verdict
        if not is_variable:
            if expected_t is dict:
                verdict = _dict_check(param, value, acceptable)
            elif expected_t is list and nested_t is dict:
                verdict = _list_dict_check(param, value, acceptable)
            elif expected_t is str:
                verdict = _string_check(param, value, acceptable)
            elif expected_t is list:
                verdict = _list_check(param, value, acceptable)
            else:
                verdict = OK if value in acceptable else _fail(
                    f"wrong value for {param!r}: {value!r}, expected one of {acceptable}", "value_error:others")
            if not verdict:
                return verdict
            continue
        if value not in acceptable:
            return _fail(f"wrong value for {param!r}: {value!r}, expected one of {acceptable}",
                         "value_error:others")
    for param, acceptable in answer_params.items():
        if param not in call.arguments and "" not in acceptable:
            return _fail(f"parameter {param!r} omitted but not optional", "simple_function_checker:missing_optional")
    return OK


def _find_function(functions: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((f for f in functions if f["name"] == name), None)


def _check_against(functions: list[dict[str, Any]], call: DecodedCall, answer: dict[str, Any]) -> Verdict:
    function = _find_function(functions, next(iter(answer)))
    if function is None:
        return _fail(f"answer function {next(iter(answer))!r} missing from the entry's functions", "data_error")
    return check_call(function, call, answer)


def check_ast(category: str, functions: list[dict[str, Any]], calls: list[DecodedCall],
              answers: list[dict[str, Any]]) -> Verdict:
    """Check decoded calls against an AST category's possible answers (BFCL's ``ast_checker``)."""
    if "parallel" in category:
        if len(calls) != len(answers):
            return _fail(f"wrong number of calls: {len(calls)}, expected {len(answers)}", "parallel:wrong_count")
        matched: set[int] = set()
        for i, answer in enumerate(answers):
            last = _fail("no calls left to match", "parallel:cannot_find_match")
            for j, call in enumerate(calls):
                if j in matched:
                    continue
                last = _check_against(functions, call, answer)
                if last:
                    matched.add(j)
                    break
            if not last:
                return _fail(f"no call matches answer {i} ({next(iter(answer))}): {last.reason}",
                             "parallel:cannot_find_match")
        return OK
    if "multiple" in category:
        if len(calls) != len(answers):
            return _fail(f"wrong number of calls: {len(calls)}, expected {len(answers)}", "multiple:wrong_count")
        return _check_against(functions, calls[0], answers[0])
    if len(calls) != 1:
        return _fail(f"wrong number of calls: {len(calls)}, expected 1", "simple:wrong_count")
    return check_call(functions[0], calls[0], answers[0])


def check_relevance(category: str, calls: list[DecodedCall] | None) -> Verdict:
    """irrelevance / live_irrelevance pass when nothing decodes to a call; live_relevance when something does."""
    has_call = bool(calls)
    if "irrelevance" in category:
        return OK if not has_call else _fail("output contains a function call", "irrelevance_error:decoder_success")
    return OK if has_call else _fail("output contains no function call", "relevance_error:decoder_failed")
