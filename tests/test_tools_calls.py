"""Call syntax: pythonic and JSON parsing, formatting round trips, and every parse error kind."""

from __future__ import annotations

import json
import keyword

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from tools.schema import is_call_name

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


# -- Python keywords as argument names --------------------------------------------------------------------

KEYWORD_VALUES = ["USD", "from='x', to=1", 3, -2.5, True, None, ["in", {"class": "if"}], {"from": {"import": [1]}}]


@pytest.mark.parametrize("word", sorted(set(keyword.kwlist + keyword.softkwlist + ["type"])))
def test_keyword_argument_names_round_trip(word):
    calls = [ToolCall("convert", {word: value, "amount": i}) for i, value in enumerate(KEYWORD_VALUES)]
    calls.append(ToolCall("convert", {"a": 1, word: "x", "b": 2}))  # between ordinary names
    text = format_pythonic(calls)
    assert f"convert({word}='USD', amount=0)" in text  # the natural spelling, as BFCL writes it
    assert parse_pythonic(text) == calls
    assert parse_tool_calls(text, "auto") == calls
    assert looks_like_calls(text) and looks_like_calls(text[1:-1], "auto")


def test_keyword_argument_names_as_models_write_them():
    expected = [ToolCall("convert", {"from": "USD", "to": "EUR", "amount": 3})]
    for text in ["[convert(from='USD', to='EUR', amount=3)]", "convert(from='USD', to='EUR', amount=3)",
                 '```python\n[convert(from="USD", to="EUR", amount=3)]\n```',
                 "[convert( from = 'USD' , to='EUR',\n  amount=3)]",
                 "[convert(from  # the currency we have\n  ='USD', to='EUR', amount=3)]",
                 "[convert(from \\\n='USD', to='EUR', amount=3)]"]:
        assert parse_pythonic(text) == expected, text
        assert parse_tool_calls(text, "auto") == expected, text
    assert looks_like_calls("convert(from='USD')")  # no '[': recognised because it parses
    assert parse_pythonic("[f(True=1, None=2, async=3, await=4, lambda=5), g(if=True, class=None)]") == [
        ToolCall("f", {"True": 1, "None": 2, "async": 3, "await": 4, "lambda": 5}),
        ToolCall("g", {"if": True, "class": None})]


def test_keywords_inside_strings_and_dict_keys_are_left_alone():
    assert parse_pythonic("[f(q='from=1, import=2', from='(in=3')]") == [
        ToolCall("f", {"q": "from=1, import=2", "from": "(in=3"})]
    assert parse_pythonic("[f(q=\"\"\"a, from='x'\"\"\", x={'from': 1, 'class': [2]})]") == [
        ToolCall("f", {"q": "a, from='x'", "x": {"from": 1, "class": [2]}})]
    assert parse_pythonic("[f(q='from=1')]") == [ToolCall("f", {"q": "from=1"})]  # needed no rewrite at all


def test_placeholder_like_names_keep_their_meaning():
    """The placeholder a keyword becomes is longer (in leading underscores) than any name in the text, so a
    name that looks like a placeholder is taken as written."""
    for others in [["_kw_from", "__kw_from", "___kw_from"], ["__" + "_" * 40 + "kw_from"], ["__kw_in", "_kw_"]]:
        arguments = {"from": 0, **{name: i + 1 for i, name in enumerate(others)}, "in": -1}
        text = "[f(" + ", ".join(f"{k}={v}" for k, v in arguments.items()) + ")]"
        assert parse_pythonic(text) == [ToolCall("f", arguments)], text
    # a name counts by its NFKC form, as Python reads it: '_\ufe33kw_from' is '__kw_from'
    assert parse_pythonic("[f(from=1, _\ufe33kw_from=2)]") == [ToolCall("f", {"from": 1, "__kw_from": 2})]


def test_keyword_argument_errors():
    with pytest.raises(ToolCallParseError, match="given more than once"):
        parse_pythonic("[f(from=1, from=2)]")
    with pytest.raises(ToolCallParseError, match="positional arguments"):
        parse_pythonic("[f(1, from=2)]")
    with pytest.raises(ToolCallParseError, match="'x' is a bare name"):
        parse_pythonic("[f(from=x)]")
    with pytest.raises(ToolCallParseError, match="nested function call"):
        parse_pythonic("[f(from=g(in=1))]")
    with pytest.raises(ToolCallParseError, match="a lambda"):
        parse_pythonic("[f(from=lambda: 1)]")
    for text in ["[f(from==1)]", "[f(a=(from=1))]", "[f(from.x=1)]", "[f(**from=1)]"]:
        with pytest.raises(ToolCallParseError, match="not valid call syntax"):
            parse_pythonic(text)


@pytest.mark.parametrize("text", ["[from(a=1)]", "[convert.from(a=1)]", "[class(from=1)]", "from(a=1)",
                                  "[if.x(a=1)]"])
def test_keyword_is_no_function_name(text):
    with pytest.raises(ToolCallParseError, match="not valid call syntax"):
        parse_pythonic(text)
    with pytest.raises(ValueError, match="no pythonic form"):
        format_pythonic([ToolCall("from", {"a": 1})])


@pytest.mark.parametrize("text, word", [("[f(a=from)]", "from"), ("[f(a=1, b=import, c=2)]", "import"),
                                        ("[f(a=[1, in])]", "in"), ("[f(from='x', a={'k': class})]", "class")])
def test_keyword_as_a_value_is_an_error_that_says_so(text, word):
    with pytest.raises(ToolCallParseError) as info:
        parse_pythonic(text)
    assert f"'{word}' is a Python keyword, not a value: quote strings, e.g. '{word}'" in str(info.value)


def test_errors_after_a_keyword_argument_point_into_the_text_as_written():
    """The placeholders are longer than the keywords; error columns are those of the text the model wrote."""
    for text in ["[convert(from='USD', to=)]", "[f(from=1, in=2, b=)]", "[f(a='é', if=1, else=2, b=)]",
                 "[f(from=1,\n  b=)]"]:
        with pytest.raises(ToolCallParseError) as info:
            parse_pythonic(text)
        line = text.split("\n")[-1]
        assert f"at column {line.index(')') + 1})" in str(info.value), (text, str(info.value))
        assert "kw_" not in str(info.value)


@pytest.mark.parametrize("text", ["[f(from='unterminated)]", "[f(from='''x, in=1)]", "[f(from=1, in='x\n)]",
                                  "[f(from=1)]\n  g(in=2)", "[f(from=1, " + "[" * 300 + "]",
                                  "[f(from=1, a=\\\n" + "\\" * 10 + ")]", "[f(from=1, $=2)]", "[f(from=1, a='\x00')]"])
def test_tokenizer_failures_are_parse_errors(text):
    with pytest.raises(ToolCallParseError):
        parse_pythonic(text)


@pytest.mark.parametrize("name", ["first-name", "a b", "", "1st", "a.b", "ﬁle", 3])
def test_format_refuses_argument_names_that_are_not_identifiers(name):
    with pytest.raises(ValueError, match="argument name .* is not a Python identifier"):
        format_pythonic([ToolCall("f", {name: 1})])


def test_format_writes_non_ascii_identifiers_that_round_trip():
    calls = [ToolCall("f", {"café": 1, "λ": [2], "from": "é"})]
    assert format_pythonic(calls) == "[f(café=1, λ=[2], from='é')]"
    assert parse_pythonic(format_pythonic(calls)) == calls


KEYWORD_SEEDS = ["[convert(from='USD', to='EUR', amount=3)]", "f(class=1, in=[True, None], x={'if': 'a=1'})",
                 "[g(a=1, import=2), h(lambda='from=', not=-1.5)]", "[f(from=1, __kw_from=2, async=3)]"]
EDIT_ALPHABET = "[](){}=,.:'\"\\ \n#-_0123456789abfromclasinéλ\ufe33\x00"


@settings(deadline=None, database=None, max_examples=3000, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(KEYWORD_SEEDS),
       st.lists(st.tuples(st.integers(0, 60), st.integers(0, 4), st.text(alphabet=EDIT_ALPHABET, max_size=4)),
                min_size=1, max_size=4))
def test_mutated_keyword_calls_raise_only_parse_errors_and_round_trip(seed, edits):
    """As in tests/test_fuzz_parsers.py, from seeds with keyword-named arguments: the tokenizing path lets no
    other exception out, and whatever parses formats and parses back to the same calls."""
    text = seed
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut:]
    try:
        calls = parse_pythonic(text)
    except ToolCallParseError:
        return
    assert looks_like_calls(text) == bool(calls)
    if all(is_call_name(c.name) for c in calls):  # a non-ASCII function name has no pythonic form (yet)
        assert parse_pythonic(format_pythonic(calls)) == calls  # any argument name that parses has one
