"""BFCL decoder and AST checker: hand-made rule cases, and the ground truth fed back as model output."""

from __future__ import annotations

import pytest

from envs.bfcl import data
from envs.bfcl.checker import check_ast, check_relevance, normalise
from envs.bfcl.decode import BFCLDecodeError, decode, has_call, parse_call_string, try_decode
from envs.bfcl.ground_truth import answer_text
from envs.call_prompt import add_python_hint

needs_data = pytest.mark.skipif(not data.is_available(), reason="bfcl-eval not installed (pip install --no-deps bfcl-eval)")

FN = {
    "name": "geo.find",
    "description": "Find a place.",
    "parameters": {
        "type": "dict",
        "properties": {
            "city": {"type": "string"},
            "count": {"type": "integer"},
            "radius": {"type": "float"},
            "exact": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "point": {"type": "tuple", "items": {"type": "float"}},
            "filters": {"type": "dict", "properties": {}},
        },
        "required": ["city", "count"],
    },
}
ANSWER = [{"geo.find": {
    "city": ["New York, NY", "NYC"],
    "count": [5],
    "radius": [2.0, ""],
    "exact": [True, ""],
    "tags": [["cafe", "bar"], ""],
    "point": [[1.0, 2.0], ""],
    "filters": [{"open": [True], "price": ["cheap", ""]}, ""],
}}]


def simple(text: str):
    return check_ast("simple_python", [FN], decode(text), ANSWER)


# -- decoder ------------------------------------------------------------------------------------------
def test_decoder_shapes():
    assert decode("[f(a=1), g.h(b='x')]")[1].name == "g.h"
    assert decode("```\nf(a=1)\n```")[0].arguments == {"a": 1}
    assert decode("f(a=1), g(b=2)")[1].arguments == {"b": 2}
    assert decode("[]") == []
    assert decode("f(1, 2, a=-3)")[0].arguments == {"a": -3}  # positional args are silently dropped
    assert decode("f(a=(1, 2), b={'k': [None, True]}, c=2**3, d=x)")[0].arguments == {
        "a": (1, 2), "b": {"k": [None, True]}, "c": 8, "d": "x"}
    for bad in ("Sure, here it is", "[f(a=1), 3]", "[f(a=lambda: 1)]", "f(**k)", "[f()()]"):
        with pytest.raises(BFCLDecodeError):
            decode(bad)
    assert not has_call("I cannot help with that.") and not has_call("[]") and has_call("[f()]")


def test_decoder_never_evaluates(tmp_path):
    marker = tmp_path / "pwned"
    text = f"[f(a=__import__('os').system('touch {marker}'))]"
    calls, _ = try_decode(text)
    assert calls is not None and isinstance(calls[0].arguments["a"], str)
    assert not marker.exists()


def test_ground_truth_call_strings_keep_positional():
    assert parse_call_string("sort('a.txt')") == ("sort", ("a.txt",), {})
    assert parse_call_string("mv(source='a', destination='b')")[2] == {"source": "a", "destination": "b"}


# -- AST checker rules ------------------------------------------------------------------------------------
GOOD = "[geo.find(city='New York, NY', count=5)]"


def test_good_and_optional_omitted():
    assert simple(GOOD)
    assert simple("[geo.find(city='NYC', count=5, radius=2.0, exact=True, tags=['cafe', 'bar'])]")


@pytest.mark.parametrize("text, error_type", [
    ("[geo.where(city='NYC', count=5)]", "wrong_func_name"),
    ("[geo.find(city='NYC')]", "missing_required"),
    ("[geo.find(city='NYC', count=5, zoom=3)]", "unexpected_param"),
    ("[geo.find(city='NYC', count='5')]", "type_error"),
    ("[geo.find(city='NYC', count=True)]", "type_error"),  # bool is not int
    ("[geo.find(city='NYC', count=5.0)]", "type_error"),  # float is not int
    ("[geo.find(city='Boston', count=5)]", "value_error:string"),
    ("[geo.find(city='NYC', count=5, tags=['bar', 'cafe'])]", "value_error:list"),  # order matters
    # BFCL's one-level item check is skipped when "" is acceptable; the value check still fails
    ("[geo.find(city='NYC', count=5, tags=[1, 2])]", "value_error:list"),
    ("[geo.find(city='NYC', count=5, filters={'open': True, 'stars': 4})]", "dict_key"),
    ("[geo.find(city='NYC', count=5, filters={'price': 'cheap'})]", "dict_key"),  # missing required key
    ("[geo.find(city='NYC', count=5, filters={'open': False})]", "dict_value"),
    ("[geo.find(city='NYC', count=5), geo.find(city='NYC', count=5)]", "wrong_count"),
])
def test_rule_failures(text, error_type):
    verdict = simple(text)
    assert not verdict and error_type in verdict.error_type and verdict.reason


def test_rule_passes():
    assert simple("[geo.find(city='new york ny', count=5)]")  # normalisation: case, spaces, punctuation
    assert simple("[geo.find(city='NYC', count=5, radius=2)]")  # int accepted for float
    assert simple("[geo.find(city='NYC', count=5, point=(1.0, 2.0))]")  # tuple -> list
    assert simple("[geo.find(city='NYC', count=5, filters={'open': True})]")  # optional dict key omitted
    assert simple("[geo.find(city='NYC', count=5, filters={'open': True, 'price': 'CHEAP'})]")
    assert normalise("April 1, 2024") == normalise("april 1 2024") == "april12024"


def test_optional_omission_needs_empty_marker():
    answer = [{"geo.find": {"city": ["NYC"], "count": [5], "radius": [2.0]}}]
    assert not check_ast("simple_python", [FN], decode("[geo.find(city='NYC', count=5)]"), answer)


def test_nested_item_types():
    answer = [{"geo.find": {"city": ["NYC"], "count": [5], "tags": [["cafe", "bar"]]}}]
    verdict = check_ast("simple_python", [FN], decode("[geo.find(city='NYC', count=5, tags=[1, 2])]"), answer)
    assert not verdict and verdict.error_type == "type_error:nested"


def test_parallel_order_insensitive_and_count():
    answers = [{"geo.find": {"city": ["NYC"], "count": [1]}}, {"geo.find": {"city": ["LA"], "count": [2]}}]
    both = "[geo.find(city='LA', count=2), geo.find(city='NYC', count=1)]"
    assert check_ast("parallel", [FN], decode(both), answers)
    assert not check_ast("parallel", [FN], decode("[geo.find(city='LA', count=2)]"), answers)
    assert not check_ast("parallel", [FN], decode("[geo.find(city='LA', count=2), geo.find(city='LA', count=2)]"),
                         answers)


def test_relevance():
    assert check_relevance("irrelevance", None) and check_relevance("live_irrelevance", [])
    assert not check_relevance("irrelevance", decode("[f(a=1)]"))
    assert check_relevance("live_relevance", decode("[f(a=1)]")) and not check_relevance("live_relevance", None)


# -- ground truth fed back: BFCL's own checker gives the same counts ----------------------------------------
GT_PASS = {
    "simple_python": (400, 400), "multiple": (200, 200), "parallel": (200, 200), "parallel_multiple": (200, 200),
    "live_simple": (256, 258), "live_multiple": (1050, 1053), "live_parallel": (16, 16),
    "live_parallel_multiple": (24, 24),
}
GT_UNSATISFIABLE = {
    "live_simple": {"live_simple_106-63-0", "live_simple_112-68-0"},
    "live_multiple": {"live_multiple_507-149-4", "live_multiple_862-181-3", "live_multiple_964-207-0"},
}


@needs_data
@pytest.mark.parametrize("category", list(GT_PASS))
def test_ground_truth_passes(category):
    answers = data.load_answers(category)
    failed = set()
    entries = data.load_entries(category)
    for entry in entries:
        functions = add_python_hint(entry["function"])
        calls = decode(answer_text(functions, answers[entry["id"]]))
        if not check_ast(category, functions, calls, answers[entry["id"]]):
            failed.add(entry["id"])
    assert (len(entries) - len(failed), len(entries)) == GT_PASS[category]
    assert failed == GT_UNSATISFIABLE.get(category, set())
