"""Ground truth rendered as model output: the checker's self-test, never training data.

BFCL ships acceptable values per parameter (``{name: {param: [values]}}``); this module picks one passing
value per parameter and renders the call list in the pythonic format the prompt asks for. Feeding that text
back through the decoder and checker must pass every satisfiable entry, which pins the checker to BFCL's
published ground-truth pass counts. Multi-turn ground truth is a list of call strings per turn, executed as
written by BFCL (positional arguments included); ``keyword_form`` rewrites those calls with keywords only, the
only form BFCL's decoder accepts from a model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from envs.bfcl.decode import DecodedCall, format_call, format_calls, parse_call_string


def _first(acceptable: list[Any]) -> Any:
    """The first acceptable value that is not the "may be omitted" marker ``""``."""
    for value in acceptable:
        if value != "":
            return value
    raise ValueError(f"no concrete acceptable value in {acceptable!r}")


def _mapping(answer: dict[str, list[Any]]) -> dict[str, Any]:
    # a dict-typed parameter's acceptable value is {key: [values]}; optional keys are left out
    return {k: _first(v) for k, v in answer.items() if "" not in v}


def _concrete(value: Any) -> Any:
    if isinstance(value, dict):
        return _mapping(value)
    if isinstance(value, list):  # a list of dicts holds one {key: [values]} mapping per item
        return [_mapping(v) if isinstance(v, dict) else v for v in value]
    return value


def answer_calls(functions: list[dict[str, Any]], answers: list[dict[str, Any]]) -> list[DecodedCall]:
    """One call per answer: optional parameters (``""`` acceptable) are left out unless the schema requires
    them, every other parameter takes its first concrete acceptable value."""
    calls = []
    for answer in answers:
        name, params = next(iter(answer.items()))
        schema = next((f for f in functions if f["name"] == name), None)
        required = set(schema["parameters"].get("required", [])) if schema else set()
        arguments = {}
        for param, acceptable in params.items():
            if "" in acceptable and param not in required:
                continue
            try:
                arguments[param] = _concrete(_first(acceptable))
            except ValueError:
                continue  # unsatisfiable entry (empty acceptable list): leave it out and let the check fail
        calls.append(DecodedCall(name, arguments))
    return calls


def answer_text(functions: list[dict[str, Any]], answers: list[dict[str, Any]]) -> str:
    """``answer_calls`` rendered as ``[f(a=1), ...]``."""
    return format_calls(answer_calls(functions, answers))


def keyword_form(call_source: str, resolve: Callable[[str], Callable[..., Any] | None]) -> str:
    """Rewrite one ground-truth call string with keyword arguments only.

    ``resolve(name)`` returns the backend method the name dispatches to; its signature names the positional
    arguments. Unknown names are returned with their keywords only.
    """
    name, args, kwargs = parse_call_string(call_source)
    if args:
        method = resolve(name)
        if method is None:
            raise ValueError(f"cannot name the positional arguments of unknown function {name!r}")
        bound = inspect.signature(method).bind_partial(*args, **kwargs)
        kwargs = dict(bound.arguments)
    return format_call(name, kwargs)
