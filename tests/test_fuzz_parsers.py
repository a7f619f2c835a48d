"""Property tests: no text makes a call parser raise anything but ToolCallParseError.

Over 10,000 examples in all: mutations of valid call strings (deleted, inserted and replaced characters,
splices), random unicode, and deeply nested brackets. Whatever parses must also round-trip. Every example
also goes through each reply format of ``tools.call_formats`` (pythonic, Hermes, Llama-3 JSON, Tool-N1):
a ``ParsedReply`` always comes back (a one-line error, never an exception), and what it reads renders back
to the same calls.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools import (
    ToolCallParseError,
    format_json,
    format_pythonic,
    looks_like_calls,
    parse_json_calls,
    parse_pythonic,
    parse_tool_calls,
)
from tools.call_formats import CALL_FORMATS, ParsedReply, get_call_format

SEEDS = [
    "[get_weather(city='Paris', unit='c')]",
    "[a.b.c(x=-1.5, y=[1, (2, 3)], z={'k': None, 'l': [True, False]}), g()]",
    "f(a='x', b=\"y\\n\")",
    "```python\n[f(a=1), g(b=[{'c': 'd'}])]\n```",
    '{"name": "f", "arguments": {"a": 1, "b": [1, 2, {"c": null}]}}',
    '[{"name": "f", "arguments": "{\\"a\\": 1}"}, {"name": "g", "parameters": {}}]',
    '<tool_call>\n{"name": "f", "arguments": {"a": "x"}}\n</tool_call>\n<tool_call>{"name": "g"}</tool_call>',
    "[f(a=true, b=null, c=1e10, d=0x1f, e='\\u00e9')]",
    '<think>\nplan: call f\n</think>\n\n<tool_call>\n{"name": "f", "arguments": {"a": [1, {"b": "c"}]}}\n</tool_call>',
    '<|python_tag|>{"name": "f", "parameters": {"a": 1}}; {"name": "g", "parameters": {}}',
    '<think>x</think>\n<tool_call>\n[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]\n</tool_call>',
    'Sure.\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>',
]
FORMATS = [get_call_format(name) for name in sorted(CALL_FORMATS)]
ALPHABET = "[](){}=,.:'\"`\\ \n-+*/<>_#@!0123456789abcxyzéλ\U0001f600\x00"
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def parse_all(text: str) -> None:
    """Run every parser; only ToolCallParseError may escape, and successes must round-trip."""
    for parse, fmt in ((parse_pythonic, format_pythonic), (parse_json_calls, format_json)):
        try:
            calls = parse(text)
        except ToolCallParseError:
            continue
        assert isinstance(calls, list)
        if not calls:  # "[]": no calls; the Hermes form of no calls is empty text, which is not a call list
            continue
        try:
            formatted = fmt(calls)
        except ValueError:  # e.g. a JSON name with a space has no pythonic form
            continue
        assert parse(formatted) == calls
    for syntax in ("pythonic", "json", "auto"):
        try:
            parse_tool_calls(text, syntax)
        except ToolCallParseError:
            pass
        assert isinstance(looks_like_calls(text, syntax), bool)
    for fmt in FORMATS:  # the model's own formats: never an exception, one-line errors, what reads renders back
        reply = fmt.parse(text)
        assert isinstance(reply, ParsedReply)
        if reply.error is not None:
            assert reply.calls == [] and "\n" not in reply.error
            continue
        try:
            again = fmt.render(reply.calls, content=reply.content, think=reply.think)
        except ValueError:  # e.g. calls beside text in a format that holds only one of them
            continue
        assert fmt.parse(again) == reply


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "splice", "duplicate"]))
        i = draw(st.integers(0, len(text)))
        if op == "delete" and text:
            j = draw(st.integers(i, min(len(text), i + 4)))
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.text(alphabet=ALPHABET, min_size=1, max_size=4)) + text[i:]
        elif op == "replace" and i < len(text):
            text = text[:i] + draw(st.characters()) + text[i + 1:]
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            text = text[:i] + other[draw(st.integers(0, len(other))):]
        elif op == "duplicate":
            text = text[:i] + text[i:i + 10] * draw(st.integers(2, 5)) + text[i:]
    return text


@settings(FUZZ, max_examples=6000)
@given(mutated())
def test_mutated_calls(text: str) -> None:
    parse_all(text)


@settings(FUZZ, max_examples=3000)
@given(st.one_of(st.text(max_size=200), st.text(alphabet=ALPHABET, max_size=200)))
def test_random_text(text: str) -> None:
    parse_all(text)


@st.composite
def nested(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 3000))
    opener, closer = draw(st.sampled_from([("[", "]"), ("(", ")"), ("{", "}"), ('{"a":', "}"), ("f(a=", ")"),
                                           ("-", ""), ("not ", ""), ("[f(a=", ")]")]))
    core = draw(st.sampled_from(["1", "f(a=1)", '"x"', "", "null"]))
    close = draw(st.booleans())
    return opener * depth + core + (closer * depth if close else "")


@settings(FUZZ, max_examples=1200)
@given(nested())
def test_deep_nesting(text: str) -> None:
    parse_all(text)


def test_seeds_parse() -> None:
    """Every seed is a valid call list: for the legacy parser, or else in one of the model's own formats."""
    for seed in SEEDS:
        try:
            parse_tool_calls(seed, "auto")
        except ToolCallParseError:
            assert any(fmt.parse(seed).calls and fmt.parse(seed).error is None for fmt in FORMATS), seed
