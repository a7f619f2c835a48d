"""Call syntax: pythonic and JSON parsing, formatting round trips, and every parse error kind."""

from __future__ import annotations

import json

import pytest

from tools import (
    ToolCall,
    ToolCallParseError,
    format_json,
    format_pythonic,
    looks_like_calls,
    parse_json_calls,
    parse_pythonic,
    parse_tool_calls,
)
from tools.calls import MAX_INPUT_CHARS

CALLS = [
    ToolCall("get_weather", {"city": "Paris", "unit": "c"}),
    ToolCall("news.top.headlines", {"n": -3, "x": 2.5e-07, "ok": True, "none": None, "tags": ["a", "b'\""],
                                    "nested": {"k": [1, {"z": False}], "é": "ünï"}}),
    ToolCall("noargs", {}),
]


def test_pythonic_round_trip():
    text = format_pythonic(CALLS)
    assert text.startswith("[get_weather(city='Paris', unit='c'), news.top.headlines(n=-3")
    assert parse_pythonic(text) == CALLS


def test_json_round_trip():
    assert parse_json_calls(format_json(CALLS)) == CALLS
    assert parse_json_calls(format_json(CALLS, hermes=False)) == CALLS
    assert json.loads(format_json(CALLS[:1], hermes=False)) == [CALLS[0].to_dict()]


def test_pythonic_forms_accepted():
    one = [ToolCall("f", {"a": 1})]
    for text in ["[f(a=1)]", "f(a=1)", "  [f(a=1)]\n", "`[f(a=1)]`", "```python\n[f(a=1)]\n```", "```\nf(a=1)\n```",
                 "[f(a=+1)]", "[f(a=(1))]"]:
        assert parse_pythonic(text) == one, text
    assert parse_pythonic("[f(a=(1, 2))]") == [ToolCall("f", {"a": [1, 2]})]
    assert parse_pythonic("[f(a=true, b=false, c=null)]") == [ToolCall("f", {"a": True, "b": False, "c": None})]
    assert parse_pythonic("f(a=1), g(b='x')") == [ToolCall("f", {"a": 1}), ToolCall("g", {"b": "x"})]
    assert parse_pythonic("[]") == []
    assert parse_pythonic("[f(s='a' 'b')]") == [ToolCall("f", {"s": "ab"})]


@pytest.mark.parametrize("text, fragment", [
    ("", "empty text"),
    ("hello there", "not valid call syntax"),
    ("[f(a=1]", "not valid call syntax"),
    ("[x]", "every element must be a function call"),
    ("['a']", "every element must be a function call"),
    ("[f(1)]", "positional arguments are not allowed"),
    ("[f(**kw)]", "**kwargs unpacking is not allowed"),
    ("[f(a=1, a=2)]", "given more than once"),
    ("[f(a=x)]", "'x' is a bare name"),
    ("[f(a=g(b=1))]", "nested function call"),
    ("[f(a=f'{x}')]", "f-string"),
    ("[f(a=1+2)]", "arithmetic expression"),
    ("[f(a={1, 2})]", "a set"),
    ("[f(a=b'x')]", "bytes values are not allowed"),
    ("[f(a=1j)]", "complex values are not allowed"),
    ("[f(a=1e999)]", "finite"),
    ("[f(a={1: 2})]", "dict keys must be strings"),
    ("[f(a={**d})]", "unpacking inside a dict"),
    ("[f(a=lambda: 1)]", "lambda"),
    ("[f()(a=1)]", "plain or dotted name"),
    ("[f(a=-'x')]", "unary expression"),
    ("[f(a=" + "[" * 100 + "]" * 100 + ")]", "nested more than"),
    ("[" * 1000, "not valid call syntax"),
    ("x" * (MAX_INPUT_CHARS + 1), "too long"),
])
def test_pythonic_errors(text, fragment):
    with pytest.raises(ToolCallParseError) as info:
        parse_pythonic(text)
    assert fragment in str(info.value)


def test_parse_error_is_a_value_error_with_the_expected_form():
    with pytest.raises(ValueError) as info:
        parse_pythonic("[f(1)]")
    assert "f(param=value)" in str(info.value)
    with pytest.raises(ToolCallParseError) as info:
        parse_pythonic("nonsense here")
    assert "[func1(a=1, b='x')" in str(info.value)


def test_json_forms_accepted():
    one = [ToolCall("f", {"a": 1})]
    for text in ['{"name": "f", "arguments": {"a": 1}}', '[{"name": "f", "arguments": {"a": 1}}]',
                 '{"name": "f", "arguments": "{\\"a\\": 1}"}', '{"name": "f", "parameters": {"a": 1}}',
                 '{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}',
                 '```json\n{"name": "f", "arguments": {"a": 1}}\n```',
                 'I will call it.\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>',
                 '<tool_call>{"name": "f", "arguments": {"a": 1}}']:
        assert parse_json_calls(text) == one, text
    two = '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>\n<tool_call>{"name": "g"}</tool_call>'
    assert parse_json_calls(two) == [ToolCall("f", {"a": 1}), ToolCall("g", {})]


@pytest.mark.parametrize("text, fragment", [
    ("", "empty text"),
    ("{not json", "invalid JSON in the text"),
    ('[1, 2]', "each call must be a JSON object"),
    ('{"arguments": {}}', 'needs a "name" string'),
    ('{"name": "f", "arguments": [1]}', '"arguments" must be an object'),
    ('{"name": "f", "arguments": "{bad"}', 'in the "arguments" string of f'),
    ('{"name": "f", "args": {}}', "unexpected key"),
    ('{"name": "f", "arguments": {"a": NaN}}', "not a JSON value"),
    ("<tool_call>not json</tool_call>", "inside <tool_call>"),
    ("<tool_call></tool_call>", "empty JSON"),
    ("[" * 50_000 + "]" * 50_000, "invalid JSON"),
])
def test_json_errors(text, fragment):
    with pytest.raises(ToolCallParseError) as info:
        parse_json_calls(text)
    assert fragment in str(info.value)


def test_parse_tool_calls_dispatch():
    assert parse_tool_calls("[f(a=1)]") == [ToolCall("f", {"a": 1})]
    assert parse_tool_calls('{"name": "f", "arguments": {"a": 1}}', "json") == [ToolCall("f", {"a": 1})]
    for text in ["[f(a=1)]", '{"name": "f", "arguments": {"a": 1}}', '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>',
                 '[{"name": "f", "arguments": {"a": 1}}]']:
        assert parse_tool_calls(text, "auto") == [ToolCall("f", {"a": 1})], text
    with pytest.raises(ToolCallParseError, match="not valid call syntax"):
        parse_tool_calls("plain answer", "auto")
    with pytest.raises(ValueError, match="unknown call syntax"):
        parse_tool_calls("[f(a=1)]", "xml")  # type: ignore[arg-type]


def test_looks_like_calls():
    assert looks_like_calls("[get_weather(city='Paris')]")
    assert looks_like_calls("[get_weather(city=")  # malformed, but clearly an attempt
    assert looks_like_calls("```python\n[a.b(x=1)]\n```")
    assert looks_like_calls("get_weather(city='Paris')")
    assert not looks_like_calls("The weather in Paris is sunny.")
    assert not looks_like_calls("[1, 2, 3] are the numbers")
    assert not looks_like_calls("[]")
    assert not looks_like_calls("")
    assert not looks_like_calls('{"name": "f"}')
    assert looks_like_calls('{"name": "f"', "json")
    assert looks_like_calls("<tool_call>oops", "json")
    assert looks_like_calls('[{"name": "f", "arguments": {}}]', "auto")
    assert not looks_like_calls("Sure, here you go.", "auto")
    assert looks_like_calls("[f(a=1)] " + "x" * MAX_INPUT_CHARS)


def test_tool_call_hash_and_key():
    a = ToolCall("f", {"b": 1, "a": [1, 2]})
    b = ToolCall("f", {"a": [1, 2], "b": 1})
    assert a == b and hash(a) == hash(b) and a.key == b.key
    assert len({a, b, ToolCall("f", {"a": 1})}) == 2
    with pytest.raises(AttributeError):
        a.name = "g"  # type: ignore[misc]


def test_format_refuses_what_cannot_round_trip():
    with pytest.raises(ValueError):
        format_pythonic([ToolCall("has space", {})])
    with pytest.raises(ValueError):
        format_pythonic([ToolCall("lambda", {})])
    with pytest.raises(ValueError):
        format_pythonic([ToolCall("f", {"a": float("nan")})])
    with pytest.raises(ValueError):
        format_pythonic([ToolCall("f", {"a": {1, 2}})])


def test_error_message_of_a_value_nested_deeper_than_the_recursion_limit():
    """The fuzzer found it: json.loads accepted a list nested ~1,000 deep, then building the error message
    (json.dumps of the offending item) raised RecursionError instead of ToolCallParseError."""
    from tools.schema import _short

    nested: list = [1]
    for _ in range(5_000):
        nested = [nested]
    assert _short(nested) == "<list nested too deep to show>"
    assert _short({"a": 1}) == '{"a": 1}'
