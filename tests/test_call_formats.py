"""Call formats (tools.call_formats) and the chat templates of configs/chat_templates.

Round trips for every format, malformed and hostile replies (an error, never an exception), and the
templates rendered by the embedded SmolLM2 tokenizer (tokenizer only, no model): tools, tool calls, tool
results, format detection, the expert text of a call turn being exactly ``fmt.render(calls)`` in the
template's assistant markup, and the Qwen3 template rewriting earlier turns' thinking.
"""

from __future__ import annotations

import copy
import json
import keyword

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.chat_render import ChatRenderer
from agents.models import load_tokenizer
from tests.doc_runner import REPO, doc_blocks, run_python_blocks
from tools.call_formats import (
    CALL_FORMATS,
    TEMPLATE_CALL_FORMATS,
    ParsedReply,
    detect_call_format,
    get_call_format,
    load_chat_template,
    openai_tool,
    renders_tools,
    tool_call_message,
)
from tools.calls import MAX_INPUT_CHARS, ToolCall
from tools.schema import Tool

CALLS = [
    ToolCall("get_weather", {"city": "Zürich 東京 🚀", "unit": "c"}),
    ToolCall("convert", {"from": "USD", "to": "EUR", "class": "fx", "import": True, "if": None}),
    ToolCall("news.top", {"n": -3, "x": 2.5e-07, "nested": {"k": [1, {"z": False, "é": ["ünï", {}]}], "l": []},
                          "text": "</tool_call> <tool_call> <think> ; \n {\"name\": 1}"}),
    ToolCall("noargs", {}),
]
JSON_FORMATS = ("hermes", "llama3_json", "tool_n1")
HOSTILE_SETTINGS = settings(deadline=None, database=None, max_examples=300, suppress_health_check=list(HealthCheck))


# -- round trips ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CALL_FORMATS))
def test_round_trip_calls(name):
    fmt = get_call_format(name)
    for calls in (CALLS, CALLS[:1], []):
        text = fmt.render(calls)
        assert fmt.parse(text) == ParsedReply(calls, "", None, None), text


@pytest.mark.parametrize("name", sorted(CALL_FORMATS))
def test_round_trip_think(name):
    fmt = get_call_format(name)
    text = fmt.render(CALLS, think="First the weather, then the rate.\nTwo lines.")
    assert text.startswith("<think>\nFirst the weather")
    assert fmt.parse(text) == ParsedReply(CALLS, "", "First the weather, then the rate.\nTwo lines.", None)


@pytest.mark.parametrize("name", ["hermes", "tool_n1"])
def test_round_trip_content_beside_calls(name):
    fmt = get_call_format(name)
    text = fmt.render(CALLS, content="Let me look that up.", think="plan")
    assert fmt.parse(text) == ParsedReply(CALLS, "Let me look that up.", "plan", None)


@pytest.mark.parametrize("name", sorted(CALL_FORMATS))
def test_plain_text_is_content(name):
    fmt = get_call_format(name)
    for text in ("The weather in Paris is sunny.", "[1] see above", "{curly} but not JSON", ""):
        assert fmt.parse(f"  {text} \n") == ParsedReply([], text, None, None)
    assert fmt.parse("<think> hmm </think> It is 3 o'clock.") == ParsedReply([], "It is 3 o'clock.", "hmm", None)


def test_the_exact_renderings():
    calls = [ToolCall("f", {"a": 1}), ToolCall("g", {})]
    assert get_call_format("hermes").render(calls, content="Hi.") == (
        'Hi.\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n'
        '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>')
    assert get_call_format("llama3_json").render(calls) == '{"name": "f", "parameters": {"a": 1}}; {"name": "g", "parameters": {}}'
    assert get_call_format("tool_n1").render(calls, think="t", content="done") == (
        '<think>\nt\n</think>\n<tool_call>\n[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]\n'
        "</tool_call>\ndone")
    assert get_call_format("pythonic").render(calls) == "[f(a=1), g()]"


def test_lenient_spellings_are_read():
    assert get_call_format("llama3_json").parse(
        '<|python_tag|>{"name": "f", "parameters": {"a": 1}}\n{"name": "g", "parameters": {}};') == ParsedReply(
        [ToolCall("f", {"a": 1}), ToolCall("g", {})])
    assert get_call_format("llama3_json").parse('```json\n{"name": "f", "parameters": {}}\n```').calls == [
        ToolCall("f", {})]
    # OpenAI data: "arguments" as a JSON string
    assert get_call_format("hermes").parse(
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": [1]}"}</tool_call>').calls == [ToolCall("f", {"a": [1]})]
    assert get_call_format("hermes").parse(
        'A <tool_call>{"name": "f"}</tool_call> B <tool_call>{"name": "g"}</tool_call> C') == ParsedReply(
        [ToolCall("f"), ToolCall("g")], "A\nB\nC")
    # a JSON object that is not a call is a final answer in JSON, not a malformed call
    assert get_call_format("llama3_json").parse('{"temperature": 21}') == ParsedReply([], '{"temperature": 21}')


@pytest.mark.parametrize("name, kwargs, match", [
    ("pythonic", {"content": "also text"}, "not both"),
    ("llama3_json", {"content": "also text"}, "not both"),
    ("hermes", {"content": "see <tool_call> here"}, "does not parse back"),
    ("tool_n1", {"content": "</tool_call>"}, "does not parse back"),
    ("hermes", {"think": "a </think> b"}, "cannot contain"),
])
def test_render_refuses_what_would_not_parse_back(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_call_format(name).render([ToolCall("f", {"a": 1})], **kwargs)


def test_render_refuses_pythonic_content_that_reads_as_calls():
    with pytest.raises(ValueError, match="unambiguously"):
        get_call_format("pythonic").render([], content="[f(a=1)]")


# hypothesis: any calls with JSON arguments round-trip in every format that can write them

_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}(\.[a-z_][a-z0-9_]{0,5})?", fullmatch=True).filter(
    lambda n: all(not keyword.iskeyword(p) for p in n.split(".")))
_arg_names = st.sampled_from(["from", "class", "import", "if", "lambda", "city", "città", "x_1", "_"])
_scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
_calls = st.lists(st.builds(ToolCall, _names, st.dictionaries(_arg_names, _values, max_size=4)), max_size=3)
_prose = st.from_regex(r"[A-Za-z][A-Za-z ,.!?'0-9]{0,30}", fullmatch=True).map(str.strip)


@HOSTILE_SETTINGS
@given(st.sampled_from(sorted(CALL_FORMATS)), _calls, st.none() | _prose)
def test_round_trip_property(name, calls, think):
    fmt = get_call_format(name)
    assert fmt.parse(fmt.render(calls, think=think)) == ParsedReply(calls, "", think, None)


@HOSTILE_SETTINGS
@given(st.sampled_from(["hermes", "tool_n1"]), _calls, _prose)
def test_round_trip_property_with_content(name, calls, content):
    fmt = get_call_format(name)
    assert fmt.parse(fmt.render(calls, content=content)) == ParsedReply(calls, content, None, None)


# -- malformed and hostile replies -------------------------------------------------------------------------------

DEEP = "[" * 40_000 + "]" * 40_000  # far deeper than json or ast can recurse, under MAX_INPUT_CHARS
MALFORMED = [
    # every format
    *[(name, "<think> never closed", "unclosed <think>") for name in CALL_FORMATS],
    *[(name, "x" * (MAX_INPUT_CHARS + 1), "too long") for name in CALL_FORMATS],
    # hermes
    ("hermes", 'Sure. <tool_call>\n{"name": "f", "arguments": {"a": 1}}', "unclosed <tool_call>"),
    ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": 1}\n</tool_call>', "invalid JSON"),
    ("hermes", '<tool_call>[{"name": "f", "arguments": {}}]</tool_call>', "found a JSON array"),
    ("hermes", '<tool_call>{"name": "f"} and more</tool_call>', "unexpected text after the JSON"),
    ("hermes", '{"name": "f"}</tool_call>', "</tool_call> without a <tool_call>"),
    ("hermes", "<tool_call></tool_call>", "empty <tool_call>"),
    ("hermes", '<tool_call>{"arguments": {}}</tool_call>', 'needs a "name"'),
    ("hermes", '<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "must be an object"),
    ("hermes", '<tool_call>{"name": "f", "arguments": {"a": NaN}}</tool_call>', "NaN"),
    ("hermes", f'<tool_call>{{"name": "f", "arguments": {{"a": {DEEP}}}}}</tool_call>', "invalid JSON"),
    ("hermes", '<tool_call>{"name": "f", "arguments": {"a": "' + "y" * 99_000, "unclosed <tool_call>"),
    ("hermes", '<tool_call>{"name": "f"}</tool_call><tool_call>{"name": "g"', "unclosed <tool_call>"),
    # llama3_json
    ("llama3_json", '{"name": "f", "parameters": {"a": 1}', "invalid JSON"),
    ("llama3_json", '[{"name": "f", "parameters": {}}]', "found a JSON array"),
    ("llama3_json", '{"name": "f", "parameters": {}} Done!', "unexpected text after a call"),
    ("llama3_json", '{"name": "f", "parameters": {}}{"name": "g"}', 'expected ";"'),
    ("llama3_json", "<|python_tag|>get the weather", "invalid JSON"),
    ("llama3_json", "<|python_tag|>", "nothing after"),
    ("llama3_json", '{"name": "f", "parameters": "not json"}', "invalid JSON"),
    ("llama3_json", '{"name": "f", "parameters": {"a": ' + DEEP + "}}", "invalid JSON"),
    ("llama3_json", '{"name": "f", "parameters": {}}; 42', "unexpected text after a call"),
    # tool_n1
    ("tool_n1", '<think>x</think>\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', "found a JSON object"),
    ("tool_n1", '<tool_call>[{"name": "f"}]</tool_call>\n<tool_call>[{"name": "g"}]</tool_call>', "more than one"),
    ("tool_n1", '<tool_call>\n[{"name": "f", "arguments": {}}', "unclosed <tool_call>"),
    ("tool_n1", '<tool_call>[{"name": "f"}, 3]</tool_call>', "must be a JSON object"),
    ("tool_n1", "<tool_call>[" + DEEP + "]</tool_call>", "invalid JSON"),
    ("tool_n1", "text </tool_call>", "</tool_call> without a <tool_call>"),
    # pythonic
    ("pythonic", "[get_weather(city=Paris)]", "bare name"),
    ("pythonic", "[f(a=g(b=1))]", "nested function call"),
    ("pythonic", "[f(a=1, b=)]", "not valid call syntax"),
    ("pythonic", "[f(a=" + DEEP + ")]", "nested"),
]


@pytest.mark.parametrize("name, text, match", MALFORMED, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(MALFORMED)])
def test_malformed_reply_is_an_error_not_an_exception(name, text, match):
    fmt = get_call_format(name)
    reply = fmt.parse(text)
    assert reply.error is not None and match in reply.error, reply.error
    assert reply.calls == [] and not reply.ok
    assert "\n" not in reply.error
    assert reply.error.endswith(fmt.form) or "<think>" in match, reply.error  # names the expected form


def test_malformed_reply_keeps_the_text_before_the_markup():
    reply = get_call_format("hermes").parse('Checking.\n<tool_call>{"name": "f"')
    assert reply.content == "Checking." and reply.error


@pytest.mark.parametrize("name", sorted(CALL_FORMATS))
def test_non_str_input_raises_type_error(name):
    with pytest.raises(TypeError, match="must be a str"):
        get_call_format(name).parse(None)  # type: ignore[arg-type]


_MARKUP = ["<tool_call>", "</tool_call>", "<think>", "</think>", "<|python_tag|>", '{"name": "f", ',
           '"arguments": ', '"parameters": ', "{", "}", "[", "]", ";", "\n", '"', "f(a=", ")", "NaN", "1e999"]


@HOSTILE_SETTINGS
@given(st.sampled_from(sorted(CALL_FORMATS)),
       st.lists(st.sampled_from(_MARKUP) | st.text(max_size=4), max_size=30).map("".join))
def test_any_text_parses_without_exception(name, text):
    reply = get_call_format(name).parse(text)
    assert isinstance(reply, ParsedReply)
    assert reply.error is None or (reply.calls == [] and "\n" not in reply.error)


def test_get_call_format_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown call format 'qwen'; known formats: hermes, llama3_json, pythonic, tool_n1"):
        get_call_format("qwen")
    with pytest.raises(ValueError, match="known templates"):
        load_chat_template("chatml")


# -- OpenAI-shape helpers -------------------------------------------------------------------------------------

def test_openai_tool_accepts_every_tool_shape():
    tool = Tool("get_weather", "Weather of a city.", {"type": "object", "properties": {"city": {"type": "string"}}})
    expected = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}}
    assert openai_tool(tool) == expected
    toolace = {"name": "get_weather", "description": "Weather of a city.",
               "parameters": {"type": "dict", "properties": {"city": {"type": "string"}}}}
    assert openai_tool(toolace) == expected
    copied = openai_tool(expected)
    assert copied == expected and copied["function"] is not expected["function"]
    with pytest.raises(ValueError, match="name"):
        openai_tool({"description": "nameless"})
    with pytest.raises(TypeError):
        openai_tool("get_weather")  # type: ignore[arg-type]


def test_tool_call_message_shape():
    message = tool_call_message([ToolCall("f", {"a": {"b": 1}})])
    assert message == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": {"a": {"b": 1}}}}]}
    assert tool_call_message([], content="Hi") == {"role": "assistant", "content": "Hi"}
    assert tool_call_message([], think="t")["content"] == "<think>\nt\n</think>\n\n"


# -- the chat templates, rendered by the embedded tokenizer ---------------------------------------------------------

@pytest.fixture(scope="module")
def embedded():
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def templated(embedded):
    """name -> a copy of the embedded tokenizer carrying that template."""
    out = {}
    for name in TEMPLATE_CALL_FORMATS:
        tok = copy.copy(embedded)
        tok.chat_template = load_chat_template(name)
        out[name] = tok
    return out


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
USER = [{"role": "user", "content": "Weather in Paris and Zürich?"}]
PAIR = [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Zürich"})]
RESULTS = [{"role": "tool", "content": "sunny", "name": "get_weather", "tool_call_id": "call_0"},
           {"role": "tool", "content": {"temp_c": 3}, "name": "get_weather", "tool_call_id": "call_1"}]
CLOSE = {"hermes": "<|im_end|>\n", "qwen3_thinking": "<|im_end|>\n", "llama3_json": "<|im_end|>"}


def render(tok, messages, generation=True, **kwargs):
    return tok.apply_chat_template(messages, tools=[WEATHER], tokenize=False, add_generation_prompt=generation,
                                   **kwargs)


@pytest.mark.parametrize("name", sorted(TEMPLATE_CALL_FORMATS))
def test_template_starts_with_the_comment_naming_what_it_mirrors(name):
    text = load_chat_template(name)
    assert text.startswith("{#-") and "-#}" in text
    comment = text[:text.index("-#}")]
    assert {"hermes": "Qwen2.5", "qwen3_thinking": "Qwen3", "llama3_json": "Llama-3.1"}[name] in comment
    assert "Simplified" in comment


def test_hermes_templates_list_the_tools(templated):
    for name in ("hermes", "qwen3_thinking"):
        prompt = render(templated[name], [{"role": "system", "content": "Be brief."}, *USER])
        assert f"<tools>\n{json.dumps(WEATHER, ensure_ascii=False)}\n</tools>" in prompt, name
        assert prompt.startswith("<|im_start|>system\n") and "Be brief." in prompt
        assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' in prompt
        assert prompt.endswith("<|im_start|>user\nWeather in Paris and Zürich?<|im_end|>\n<|im_start|>assistant\n")


def test_llama_template_lists_the_tools_in_the_first_user_turn(templated):
    tok = templated["llama3_json"]
    prompt = render(tok, [{"role": "system", "content": "Be brief."}, *USER])
    user_turn = prompt[prompt.index("<|im_start|>user\n\n"):]
    assert "Environment: ipython\n" in prompt[:prompt.index("<|im_end|>")]
    assert json.dumps(WEATHER, indent=4) in user_turn
    assert 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}' in user_turn
    assert user_turn.endswith("Weather in Paris and Zürich?<|im_end|><|im_start|>assistant\n\n")
    in_system = render(tok, USER, tools_in_user_message=False)
    assert json.dumps(WEATHER, indent=4) in in_system[:in_system.index("<|im_end|>")]


@pytest.mark.parametrize("name", sorted(TEMPLATE_CALL_FORMATS))
def test_template_renders_tool_results(templated, name):
    text = render(templated[name], [*USER, tool_call_message(PAIR), *RESULTS])
    if name == "llama3_json":
        assert text.endswith('<|im_end|><|im_start|>ipython\n\nsunny<|im_end|><|im_start|>ipython\n\n{"temp_c": 3}'
                             "<|im_end|><|im_start|>assistant\n\n")
    else:  # both results grouped in one user turn
        assert text.endswith("</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n"
                             '<tool_response>\n{"temp_c": 3}\n</tool_response><|im_end|>\n<|im_start|>assistant\n')


EXPERT_CASES = [(name, kwargs) for name in sorted(TEMPLATE_CALL_FORMATS) for kwargs in
                ({}, {"content": "Checking both."}, {"think": "Two cities: two calls."},
                 {"think": "Plan.", "content": "Checking."})
                if name != "llama3_json" or not kwargs]  # Llama's template drops the content of a call turn


@pytest.mark.parametrize("name, kwargs", EXPERT_CASES)
def test_expert_call_turn_is_the_format_rendering_in_assistant_markup(templated, name, kwargs):
    """Training on the template's rendering of an expert call turn teaches exactly what the parser reads."""
    tok = templated[name]
    fmt = get_call_format(TEMPLATE_CALL_FORMATS[name])
    for calls in (PAIR, CALLS):
        prompt = render(tok, USER)
        full = render(tok, [*USER, tool_call_message(calls, **kwargs)], generation=False)
        assert full == prompt + fmt.render(calls, **kwargs) + CLOSE[name]
        reply = fmt.parse(full[len(prompt):-len(CLOSE[name])])
        assert (reply.calls, reply.content, reply.think) == (calls, kwargs.get("content", ""), kwargs.get("think"))


@pytest.mark.parametrize("name", sorted(TEMPLATE_CALL_FORMATS))
def test_json_string_arguments_render_as_given(templated, name):
    as_dict = tool_call_message(PAIR)
    as_string = copy.deepcopy(as_dict)
    for call in as_string["tool_calls"]:
        call["function"]["arguments"] = json.dumps(call["function"]["arguments"], ensure_ascii=False)
    assert render(templated[name], [*USER, as_string]) == render(templated[name], [*USER, as_dict])
    odd = copy.deepcopy(as_string)
    odd["tool_calls"][0]["function"]["arguments"] = '{"city":"Paris"}'  # as given, not re-serialised
    assert '{"city":"Paris"}' in render(templated[name], [*USER, odd])


@pytest.mark.parametrize("name", sorted(TEMPLATE_CALL_FORMATS))
def test_turn_markers_are_the_embedded_special_tokens(templated, name):
    tok = templated[name]
    renderer = ChatRenderer(tok)
    assert renderer.eot_id == tok.convert_tokens_to_ids("<|im_end|>")
    ids = tok(render(tok, [*USER, tool_call_message(PAIR)], generation=False), add_special_tokens=False)["input_ids"]
    assert ids.count(renderer.eot_id) == render(tok, USER).count("<|im_end|>") + 1


def test_detect_call_format(embedded, templated):
    assert {name: detect_call_format(tok) for name, tok in templated.items()} == TEMPLATE_CALL_FORMATS
    assert all(renders_tools(tok) for tok in templated.values())
    # SmolLM2's own template ignores tools and tool_calls (and fails on a None content)
    assert detect_call_format(embedded) is None
    assert renders_tools(embedded) is False


@pytest.mark.parametrize("template, expected", [
    ("{% for m in messages %}{% if m.tool_calls %}<tool_call>\n"
     "{{ m.tool_calls | map(attribute='function') | list | tojson }}\n</tool_call>{% else %}{{ m.content }}"
     "{% endif %}{% endfor %}", "tool_n1"),
    ("{% for m in messages %}{% if m.tool_calls %}[{% for c in m.tool_calls %}{{ c.function.name }}("
     "{% for k, v in c.function.arguments.items() %}{{ k }}={{ v | tojson }}{% endfor %})"
     "{% endfor %}]{% else %}{{ m.content }}{% endif %}{% endfor %}", "pythonic"),
    ("{% for m in messages %}{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% else %}{{ m.content }}"
     "{% endif %}{% endfor %}", None),  # OpenAI-shape JSON: none of our formats
    ("{{ raise_exception('no tools here') }}", None),
    # content + str fails on OpenAI's None content: the probe is rendered again with ""
    ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content }}{% for c in m.tool_calls or [] %}"
     "<tool_call>\n{{ c.function | tojson }}\n</tool_call>{% endfor %}<|im_end|>\n{% endfor %}"
     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}", "hermes"),
])
def test_detect_other_templates(embedded, template, expected):
    tok = copy.copy(embedded)
    tok.chat_template = template
    assert detect_call_format(tok) == expected


# -- the Qwen3 template rewrites earlier turns ------------------------------------------------------------------------

def test_qwen3_template_strips_earlier_thinking(templated):
    tok = templated["qwen3_thinking"]
    answer = {"role": "assistant", "content": "<think>\nParis is in France.\n</think>\n\nIt is sunny."}
    first = render(tok, [*USER, answer], generation=False)
    assert first.endswith("<|im_start|>assistant\n<think>\nParis is in France.\n</think>\n\nIt is sunny.<|im_end|>\n")
    later = render(tok, [*USER, answer, {"role": "user", "content": "And tomorrow?"}])
    assert "<think>" not in later and "<|im_start|>assistant\nIt is sunny.<|im_end|>\n" in later
    assert not later.startswith(first)  # not append-only: the renderer must render deltas against a fixed base
    # the hermes template (Qwen2.5) keeps the turn as written: append-only
    hermes = templated["hermes"]
    assert render(hermes, [*USER, answer, {"role": "user", "content": "And tomorrow?"}]).startswith(
        render(hermes, [*USER, answer], generation=False))


def test_qwen3_template_keeps_thinking_within_a_tool_loop(templated):
    """Tool results are no new user query: the thinking of every turn since the last query stays."""
    tok = templated["qwen3_thinking"]
    call_turn = tool_call_message(PAIR, think="Two cities: two calls.")
    before = render(tok, [*USER, call_turn], generation=False)
    after = render(tok, [*USER, call_turn, *RESULTS])
    assert "<think>\nTwo cities: two calls.\n</think>" in before and after.startswith(before)
    reasoning = {"role": "assistant", "content": "Sunny, 3 C.", "reasoning_content": "Both answered."}
    assert "<|im_start|>assistant\n<think>\nBoth answered.\n</think>\n\nSunny, 3 C.<|im_end|>" in render(
        tok, [*USER, call_turn, *RESULTS, reasoning], generation=False)
    no_thinking = render(tok, USER, enable_thinking=False)
    assert no_thinking.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_the_doc_page_runs():
    """docs/call-formats.md: its Python blocks run as written (their asserts included)."""
    page = REPO / "docs" / "call-formats.md"
    blocks = doc_blocks(page)
    assert len(blocks.python) == 3 and blocks.shell == [".venv/bin/python -m pytest -q tests/test_call_formats.py\n"]
    run_python_blocks(blocks.python, page)
