"""envs.toolcalls.data: users' tool-calling files (OpenAI, ToolACE, Tool-N1/Trinity-RFT) read into one shape.

The fixtures (tests/fixtures/toolcalls/, rebuilt by make_fixtures.py there) come with ``expected.json``, an
oracle written from the tasks' ground truth and the hand-written definitions, not from the loader.
"""

from __future__ import annotations

import gzip
import inspect
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from envs.toolace.data import generate_all, read_tasks
from envs.toolace.export import catalog_schemas, export_tasks, task_record
from envs.toolace.task import KINDS
from envs.toolcalls import data as tc
from envs.toolcalls import records as record_reader
from envs.toolcalls.data import DataFormatError, LoadReport, detect_format, iter_samples, load_samples
from tests.doc_runner import FENCE, doc_blocks, run_python_blocks, run_shell_block
from tools.calls import ToolCall

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "toolcalls"
EXPECTED = json.loads((FIX / "expected.json").read_text(encoding="utf-8"))


def dicts(calls) -> list[dict]:
    return [c.to_dict() for c in calls]


def turns(sample) -> list[list[dict]]:
    return [dicts(t) for t in sample.turn_calls()]


def check_shape(sample) -> None:
    """What every loaded sample promises, whatever its format."""
    offered = {t["function"]["name"] for t in sample.tools}
    for t in sample.tools:
        assert t["type"] == "function" and set(t["function"]) == {"name", "description", "parameters"}
        assert t["function"]["parameters"]["type"] == "object"
    ids = set()
    for m in sample.messages:
        assert m["role"] in ("system", "user", "assistant", "tool")
        assert set(m) <= {"role", "content", "name", "tool_calls", "tool_call_id", "reasoning"}
        if m["role"] == "assistant":
            assert m["content"] is None or isinstance(m["content"], str)
            for c in m.get("tool_calls", []):
                assert c["type"] == "function" and isinstance(c["function"]["arguments"], dict)
                assert c["function"]["name"] in offered
                ids.add(c.get("id"))
        elif m["role"] == "tool":
            assert isinstance(m["name"], str) and m["name"] and isinstance(m["content"], str)
            if "tool_call_id" in m:
                assert m["tool_call_id"] in ids
        else:
            assert isinstance(m["content"], str)


# -- each format loads its fixture ---------------------------------------------------------------------------

def test_openai_fixture_loads_with_the_expected_calls():
    samples, report = load_samples(FIX / "openai.jsonl", "openai", on_error="raise")
    want = EXPECTED["openai"]
    assert (report.read, report.loaded, report.skipped, report.errors) == (34, 34, 0, [])
    assert [s.id for s in samples] == want["ids"]
    assert [turns(s) for s in samples] == want["turn_calls"]
    kinds = [k for k in want["kinds"] if k]
    assert all(kinds.count(k) >= 6 for k in KINDS) and len(kinds) == 32
    for s, line in zip(samples, range(1, 35), strict=True):
        check_shape(s)
        assert s.source == f"{FIX / 'openai.jsonl'}:{line}" and s.meta == {"format": "openai"}
    assert any(len(t[0]) >= 2 for t in want["turn_calls"])  # parallel calls
    assert any(len(t) >= 2 for t in want["turn_calls"])  # several user turns
    assert any(t == [[]] for t in want["turn_calls"])  # text-only answers


def test_openai_input_variants_are_normalised():
    samples, _ = load_samples(FIX / "openai.jsonl", "openai", on_error="raise")
    uni, nested = samples[-2], samples[-1]
    # tools given as JSON text, bare ToolACE-dialect schemas -> OpenAI function tools, JSON schema types
    weather = uni.tools[0]["function"]
    assert weather["name"] == "get_weather_forecast" and weather["parameters"]["properties"]["days"]["default"] == 1
    assert uni.tools[1]["function"]["parameters"]["type"] == "object"
    assert uni.tools[1]["function"]["parameters"]["properties"]["amount"] == {"type": "number"}
    system, user, call, r1, r2, answer = uni.messages
    assert system["content"].endswith("你好!") and "☀️" in user["content"]
    assert call == {"role": "assistant", "content": None, "reasoning": "Zwei Städte: zwei Aufrufe.", "tool_calls": [
        {"id": "w1", "type": "function", "function": {"name": "get_weather_forecast",
                                                       "arguments": {"city": "München", "days": 2}}},
        {"id": "w2", "type": "function", "function": {"name": "get_weather_forecast",
                                                       "arguments": {"city": "東京", "days": 2}}}]}
    # results named after their calls through tool_call_id; a JSON object result becomes its text
    assert r1 == {"role": "tool", "name": "get_weather_forecast", "content": '{"city": "München", "high_c": [21, 23]}',
                  "tool_call_id": "w1"}
    assert json.loads(r2["content"]) == {"city": "東京", "high_c": [27, 29]} and r2["tool_call_id"] == "w2"
    assert answer == {"role": "assistant", "content": "München: 21–23 °C; 東京: 27–29 °C. 🌤"}  # "weight" dropped
    # nested arguments stay as they are; text parts are joined; a text-only second turn has no calls
    args = nested.messages[1]["tool_calls"][0]["function"]["arguments"]
    assert args["address"]["geo"] == {"lat": 38.71, "lon": -9.14} and args["gift"] is None
    assert nested.messages[1]["content"] == ""
    assert nested.messages[4] == {"role": "user", "content": "Thanks! Any book tips?"}
    assert [len(t) for t in nested.turn_calls()] == [1, 0]
    assert nested.tools[0]["function"]["parameters"]["properties"]["gift"] == {"type": ["boolean", "null"]}


def test_toolace_fixture_loads_with_the_expected_calls():
    samples, report = load_samples(FIX / "toolace.jsonl", on_error="raise")
    want = EXPECTED["toolace"]
    assert report.format == "toolace" and report.loaded == want["count"] == 35 and report.skipped == 0
    assert [turns(s) for s in samples] == want["turn_calls"]
    openai, _ = load_samples(FIX / "openai.jsonl", on_error="raise")
    for s, o in zip(samples, openai, strict=False):
        check_shape(s)
        assert s.id == f"toolace.jsonl:{samples.index(s) + 1}" and s.messages[0]["role"] == "system"
        assert [t["function"]["name"] for t in s.tools] == [t["function"]["name"] for t in o.tools]
        # the same results, one tool message per result, named after the call
        assert [(m["name"], json.loads(m["content"])) for m in s.messages if m["role"] == "tool"] == [
            (m["name"], json.loads(m["content"])) for m in o.messages if m["role"] == "tool"]
    spaced = samples[-1]
    assert spaced.tools[0]["function"]["name"] == "Sports Live Events"
    assert spaced.messages[-2] == {"role": "tool", "name": "Sports Live Events", "content": '{"count": 14}'}


def test_tool_n1_rl_fixture_loads_tasks_with_their_answers():
    samples, report = load_samples(FIX / "tool_n1_rl.jsonl", on_error="raise")
    want = EXPECTED["tool_n1_rl"]
    assert report.format == "tool_n1" and report.loaded == want["count"] == 39
    for s, answer in zip(samples, want["answers"], strict=True):
        check_shape(s)
        assert s.meta == {"format": "tool_n1", "split": "rl"}
        assert s.messages[0]["role"] == "system" and s.messages[0]["content"].endswith("that you can invoke:\n")
        last = s.messages[-1]
        assert last["role"] == "assistant" and dicts(ToolCall(c["function"]["name"], c["function"]["arguments"])
                                                     for c in last["tool_calls"]) == answer
    # a later call turn carries its history: earlier function_call turns and their results
    history = next(s for s in samples if sum(bool(m.get("tool_calls")) for m in s.messages) >= 2)
    assert any(m["role"] == "tool" for m in history.messages)


def test_tool_n1_rl_json_array_is_read_element_by_element():
    array, report = load_samples(FIX / "tool_n1_rl.json", on_error="raise")
    lines, _ = load_samples(FIX / "tool_n1_rl.jsonl", on_error="raise")
    assert report.format == "tool_n1" and len(array) == EXPECTED["tool_n1_rl"]["json_array_count"] == 12
    assert [(s.tools, s.messages) for s in array] == [(s.tools, s.messages) for s in lines[:12]]
    text = (FIX / "tool_n1_rl.json").read_text(encoding="utf-8").splitlines()
    for s in array:  # the source names the line where the element starts
        line = int(s.source.rsplit(":", 1)[1])
        assert text[line - 1].strip() == "{" and text[line - 2].strip() in ("[", "},")


def test_tool_n1_sft_fixture_loads_think_and_tool_call_text():
    samples, report = load_samples(FIX / "tool_n1_sft.jsonl", on_error="raise")
    want = EXPECTED["tool_n1_sft"]
    assert report.format == "tool_n1" and report.loaded == want["count"] == 34
    for s, calls in zip(samples, want["first_reply_calls"], strict=True):
        check_shape(s)
        assert s.meta == {"format": "tool_n1", "split": "sft"} and s.tools  # tools from the <tools> block
        reply = s.messages[-1]
        assert reply["reasoning"] and "<think>" not in (reply["content"] or "")
        assert dicts(ToolCall(c["function"]["name"], c["function"]["arguments"])
                     for c in reply.get("tool_calls", [])) == calls
        assert (reply["content"] is None) == bool(calls)
    assert sum(bool(c) for c in want["first_reply_calls"]) == 26  # the others open with a text reply


# -- auto-detection --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fmt", [("openai.jsonl", "openai"), ("toolace.jsonl", "toolace"),
                                       ("tool_n1_rl.jsonl", "tool_n1"), ("tool_n1_sft.jsonl", "tool_n1"),
                                       ("tool_n1_rl.json", "tool_n1")])
def test_auto_detects_each_fixture(name, fmt):
    report = LoadReport(str(FIX / name))
    first = next(iter_samples(FIX / name, report=report))
    assert report.format == fmt == first.meta["format"]


def test_detect_format_from_keys():
    assert detect_format({"messages": [], "tools": []}) == "openai"
    assert detect_format({"system": "", "conversations": []}) == "toolace"
    assert detect_format({"raw_system": "", "tools": "[]", "conversations": [], "answer": "[]"}) == "tool_n1"
    assert detect_format({"system_prompt": "", "query": "", "output": "", "instruction": ""}) == "tool_n1"
    tagged = {"messages": [{"role": "assistant", "content": '<think>x</think><tool_call>[]</tool_call>'}]}
    assert detect_format(tagged) == "tool_n1"
    with pytest.raises(ValueError, match=r"cannot tell the format from the keys \(prompt, response\)"):
        detect_format({"prompt": "", "response": ""})


def test_a_later_record_of_another_shape_is_an_error_of_that_record(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = (FIX / "toolace.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    lines.insert(1, (FIX / "openai.jsonl").read_text(encoding="utf-8").splitlines()[0])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    samples, report = load_samples(path)
    assert [s.source for s in samples] == [f"{path}:1", f"{path}:3"]
    assert report.errors == [f"{path}:2: this record has the keys of openai data, but the file is read as toolace "
                             f"(detected from line 1)"]
    _, asked = load_samples(FIX / "toolace.jsonl", format="openai")
    assert asked.loaded == 0 and asked.skipped == 35 and asked.errors[0].endswith("read as openai (as asked)")


def test_auto_skips_an_unreadable_first_record_before_deciding(tmp_path):
    path = tmp_path / "late.jsonl"
    path.write_text("{oops\n" + (FIX / "toolace.jsonl").read_text(encoding="utf-8").splitlines()[0] + "\n")
    samples, report = load_samples(path)
    assert report.format == "toolace" and len(samples) == 1 and report.errors[0].startswith(f"{path}:1: invalid JSON")


# -- broken records: one message each, raised or skipped -----------------------------------------------------

BROKEN = EXPECTED["broken"]["lines"]


def test_broken_records_are_skipped_counted_and_logged(caplog):
    path = FIX / "broken.jsonl"
    with caplog.at_level(logging.WARNING, logger="envs.toolcalls.data"):
        samples, report = load_samples(path)
    assert [s.id for s in samples] == EXPECTED["broken"]["good_ids"] == ["good-1", "good-2", "good-3", "good-4"]
    assert (report.read, report.loaded, report.skipped) == (16, 4, 12) == (16, 4, len(BROKEN))
    assert len(report.errors) == len(BROKEN)
    for error, want in zip(report.errors, BROKEN, strict=True):
        assert error.startswith(f"{path}:{want['line']}: {want['problem']}"), error
        assert "\n" not in error
    logged = [r.getMessage() for r in caplog.records]
    assert logged[:-1] == [f"skipped {e}" for e in report.errors]
    assert logged[-1] == f"{path}: 4 sample(s) loaded, 12 skipped of 16 record(s) read (format openai)"


@pytest.mark.parametrize("want", BROKEN, ids=[str(b["line"]) for b in BROKEN])
def test_each_broken_record_raises_its_message(tmp_path, want):
    lines = (FIX / "broken.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "one.jsonl"
    path.write_text(lines[0] + "\n" + lines[want["line"] - 1] + "\n" + lines[0] + "\n", encoding="utf-8")
    it = iter_samples(path, on_error="raise")
    assert next(it).id == "good-1"
    with pytest.raises(DataFormatError) as caught:
        next(it)
    assert str(caught.value).startswith(f"{path}:2: {want['problem']}")
    assert isinstance(caught.value, ValueError) and caught.value.line == 2 and caught.value.path == str(path)


def test_skipped_errors_are_capped_in_the_log(tmp_path, caplog):
    path = tmp_path / "many.jsonl"
    good = (FIX / "broken.jsonl").read_text(encoding="utf-8").splitlines()[0]
    path.write_text(good + "\n" + "{bad\n" * 30 + good + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="envs.toolcalls.data"):
        samples, report = load_samples(path)
    assert len(samples) == 2 and report.skipped == 30 and len(report.errors) == tc.MAX_REPORTED_ERRORS == 20
    assert len(caplog.records) == 20 + 2  # the first 20, one "more" line, the summary


def write_records(tmp_path: Path, name: str, records: list) -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


TOOLACE_SYSTEM = ("You are an expert in composing functions.\nHere is a list of functions in JSON format that you "
                  "can invoke:\n" + json.dumps([{"name": "get_weather", "description": "", "parameters": {
                      "type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
                  + ". \nShould you decide to return the function call(s)...")


def toolace(*turns: tuple[str, str], system: str = TOOLACE_SYSTEM) -> dict:
    return {"system": system, "conversations": [{"from": f, "value": v} for f, v in turns]}


@pytest.mark.parametrize("record, problem", [
    (toolace(("user", "Paris?"), ("assistant", "[get_weather(city=Paris)]")),
     "conversations[1].value: not a valid call list: get_weather(city=...): 'Paris' is a bare name"),
    (toolace(("user", "Paris?"), ("assistant", "[book(city='Paris')]")),
     "conversations[1].value (call 1, book): tool 'book' is not offered (offered: get_weather)"),
    (toolace(("user", "hi"), system="You are helpful."), "system: no JSON list of tools in the text"),
    (toolace(("user", "hi"), ("tool", '[{"results": {}}]')),
     'conversations[1].value[0]: a result without "name", and no assistant call before it'),
    (toolace(("user", "hi"), ("tool", "plain")), "conversations[1].value: a tool result with no assistant call"),
    (toolace(("moderator", "hi")), "conversations[0].from: unknown speaker \"moderator\""),
    ({"system": TOOLACE_SYSTEM}, 'missing field "conversations"'),
    (toolace(("user", 5)), "conversations[0].value: must be a string, got a number"),
    (toolace(("user", "hi"), system=TOOLACE_SYSTEM.replace('"string"', '"str1ng"')),
     "system tools[0].parameters: invalid JSON schema: unknown schema type 'str1ng'"),
])
def test_toolace_broken_records(tmp_path, record, problem):
    good = toolace(("user", "Paris?"), ("assistant", "[get_weather(city='Paris')]"),
                   ("tool", '[{"name": "get_weather", "results": {"temp": 18}}]'), ("assistant", "18 degrees."))
    path = write_records(tmp_path, "t.jsonl", [good, record, good])
    samples, report = load_samples(path, "toolace")
    assert len(samples) == 2 and len(report.errors) == 1, report.errors
    assert report.errors[0].startswith(f"{path}:2: {problem}"), report.errors[0]
    with pytest.raises(DataFormatError, match=r":2: "):
        list(iter_samples(path, "toolace", on_error="raise"))


def test_toolace_results_pair_with_calls_by_name_then_order(tmp_path):
    rec = toolace(("user", "Paris and Rome?"), ("assistant", "[get_weather(city='Paris'), get_weather(city='Rome')]"),
                  ("tool", '[{"results": {"t": 18}}, {"name": "get_weather", "results": {"t": 25}}]'))
    (sample,), _ = load_samples(write_records(tmp_path, "p.jsonl", [rec]), on_error="raise")
    assert [(m["name"], m["content"]) for m in sample.messages[3:]] == [("get_weather", '{"t": 18}'),
                                                                         ("get_weather", '{"t": 25}')]


N1_SYSTEM = ("You are an expert in composing functions.\n# Tool\n\n<tools>\n"
             + json.dumps({"type": "function", "function": {"name": "get_weather", "description": "", "parameters": {
                 "type": "dict", "properties": {"city": {"type": "string"}}}}}) + "\n</tools>\n")


def sft(reply: str, **extra) -> dict:
    return {"messages": [{"role": "system", "content": N1_SYSTEM}, {"role": "user", "content": "Paris?"},
                         {"role": "assistant", "content": reply}], **extra}


def rl(**fields) -> dict:
    base = {"tools": json.dumps([{"name": "get_weather", "description": "", "parameters": {
        "type": "dict", "properties": {"city": {"type": "string"}}}}]),
        "conversations": [{"from": "user", "value": "Paris?"}],
        "answer": json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}]), "raw_system": "You are..."}
    return {k: v for k, v in {**base, **fields}.items() if v is not None}


GOOD_SFT = '<think>weather</think>\n<tool_call>\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n</tool_call>'


@pytest.mark.parametrize("record, problem", [
    (rl(answer=None), 'missing field "answer"'),
    (rl(answer='[{"name": "get_weather", "arguments": "[1]"}]'),
     "answer[0].arguments: must be a JSON object of argument names and values, got an array"),
    (rl(answer='[{"name": "get_time", "arguments": {}}]'), "answer[0].name: tool 'get_time' is not offered"),
    (rl(tools="[{]"), "tools: invalid JSON"),
    (rl(conversations=[{"from": "function_call", "value": "[{\"name\": \"get_weather\", \"arguments\": 3}]"}]),
     "conversations[0].value[0].arguments: must be a JSON object"),
    (sft("<think>x</think><tool_call>[{\"name\": get_weather}]</tool_call>"),
     "messages[2].content: not a valid <tool_call> block: invalid JSON"),
    (sft('<tool_call>[{"name": "get_time", "arguments": {}}]</tool_call>'),
     "messages[2].content (call 1, get_time): tool 'get_time' is not offered (offered: get_weather)"),
    ({"system_prompt": N1_SYSTEM, "query": "Paris?", "output": '<tool_call>[{"name": 1}]</tool_call>'},
     "output: not a valid <tool_call> block"),
])
def test_tool_n1_broken_records(tmp_path, record, problem):
    path = write_records(tmp_path, "n.jsonl", [rl(), record, sft(GOOD_SFT)])
    samples, report = load_samples(path, "tool_n1")
    assert len(samples) == 2 and len(report.errors) == 1, report.errors
    assert report.errors[0].startswith(f"{path}:2: {problem}"), report.errors[0]


def test_tool_n1_llama_factory_shape_and_categories(tmp_path):
    alpaca = {"system_prompt": N1_SYSTEM, "query": "Paris?", "output": GOOD_SFT, "instruction": ""}
    path = write_records(tmp_path, "n1.jsonl", [alpaca, rl(id="toolace_single_turn", answer="[]")])
    (a, r), _ = load_samples(path, on_error="raise")
    assert a.meta == {"format": "tool_n1", "split": "sft"} and a.messages[1] == {"role": "user", "content": "Paris?"}
    assert dicts(a.calls()) == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert a.messages[-1]["reasoning"] == "weather"
    # Tool-N1's "id" names its subset, not the sample; an empty answer: no call expected
    assert r.id == "n1.jsonl:2" and r.meta["category"] == "toolace_single_turn"
    assert r.messages[-1] == {"role": "assistant", "content": ""} and r.calls() == []


@pytest.mark.parametrize("record, problem", [
    ({"messages": [{"role": "developer", "content": "x"}]}, "messages[0].role: must be one of"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "{}"}]},
     "messages[1].name: missing, and no assistant call before it to take the name from"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]},
     "messages[1]: an assistant message needs content or tool_calls"),
    ({"messages": [{"role": "user", "content": {"text": "x"}}]}, "messages[0].content: must be a string"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "a"}},
                                                                {"name": "a", "description": "other"}]},
     "tools[1].name: tool 'a' is offered twice with different definitions"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "a", "parameters": {"type": "array"}}]},
     "tools[0].parameters.type: the parameters must be a schema of type object (or dict), got \"array\""),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": " "}}]},
     "tools[0].function.name: missing, or not a non-empty string"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": {"name": "a"}}]},
     "messages[1].tool_calls: must be a list, got an object"),
    ({"messages": []}, "messages: is empty"),
])
def test_openai_broken_records(tmp_path, record, problem):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path = write_records(tmp_path, "o.jsonl", [good, record])
    samples, report = load_samples(path, "openai")
    assert len(samples) == 1 and report.errors[0].startswith(f"{path}:2: {problem}"), report.errors


def test_openai_tools_without_parameters_identical_duplicates_and_ids(tmp_path):
    rec = {"id": 7, "messages": json.dumps([{"role": "user", "content": "x"},
                                           {"role": "assistant", "content": None,
                                            "tool_calls": [{"function": {"name": "ping"}}]},
                                           {"role": "tool", "content": "pong"}]),
           "tools": [{"name": "ping"}, {"type": "function", "function": {"name": "ping", "description": ""}}]}
    path = write_records(tmp_path, "ids.jsonl", [rec, {"messages": [{"role": "user", "content": "x"}]}])
    (a, b), report = load_samples(path, on_error="raise")
    assert a.id == "7" and b.id == "ids.jsonl:2" and report.skipped == 0
    assert a.tools == [{"type": "function", "function": {"name": "ping", "description": "",
                                                         "parameters": {"type": "object", "properties": {}}}}]
    assert a.messages[1]["tool_calls"][0]["function"]["arguments"] == {}
    assert a.messages[2] == {"role": "tool", "name": "ping", "content": "pong"}


def test_invalid_utf8_and_blank_lines(tmp_path):
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n\n   \n" + b'{"messages": "\xff"}\n' + good + b"\n")
    samples, report = load_samples(path)
    assert [s.source for s in samples] == [f"{path}:1", f"{path}:5"]
    assert report.errors == [f"{path}:4: the line is not valid UTF-8 (byte 15)"]


# -- arguments, streaming, gzip, JSON arrays ------------------------------------------------------------------

def test_arguments_are_checked_at_once(tmp_path):
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        iter_samples(FIX / "openai.jsonl", format="csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_error must be"):
        iter_samples(FIX / "openai.jsonl", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no such data file"):
        iter_samples(tmp_path / "missing.jsonl")


def test_load_samples_limit_reads_no_further():
    samples, report = load_samples(FIX / "openai.jsonl", limit=3)
    assert len(samples) == 3 and report.read == 3


@pytest.fixture
def opened(monkeypatch):
    """The files iter_samples opens, to see how far it has read."""
    files = []
    real = tc.open_binary

    def spy(path):
        f = real(path)
        files.append(f)
        return f

    monkeypatch.setattr(tc, "open_binary", spy)
    return files


def test_jsonl_is_streamed(tmp_path, opened):
    line = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    path = tmp_path / "big.jsonl"
    path.write_text((line + "\n") * 100_000, encoding="utf-8")
    it = iter_samples(path)
    assert inspect.isgenerator(it) and opened == []  # nothing read before the first next()
    first = next(it)
    assert first.source == f"{path}:1"
    consumed = opened[0].tell()
    assert consumed < 20 * (len(line) + 1) < path.stat().st_size / 1000  # a few lines of 100,000
    assert next(it).source == f"{path}:2"
    it.close()


def test_json_array_is_streamed(tmp_path, opened):
    element = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path = tmp_path / "big.json"
    text = json.dumps(element, indent=2).replace("\n", "\n  ")
    path.write_text("[\n  " + ",\n  ".join([text] * 100_000) + "\n]", encoding="utf-8")
    it = iter_samples(path)
    assert next(it).source == f"{path}:2"
    assert opened[0].tell() <= 2 * record_reader._CHUNK < path.stat().st_size / 50
    it.close()


def test_json_array_element_larger_than_a_chunk(tmp_path):
    big = {"id": "big", "messages": [{"role": "user", "content": "x" * (5 * record_reader._CHUNK)}]}
    small = {"id": "small", "messages": [{"role": "user", "content": "é ☀️" * 10}]}
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([small, big, small], ensure_ascii=False, indent=1), encoding="utf-8")
    samples, report = load_samples(path, on_error="raise")
    assert [s.id for s in samples] == ["small", "big", "small"] and report.read == 3
    assert samples[1].messages[0]["content"] == big["messages"][0]["content"]


@pytest.mark.parametrize("text, line, problem", [
    ('[\n {"messages": [{"role": "user", "content": "a"}]},\n {"messages": [}\n]', 3, "invalid JSON in the array "
                                                                                      "element starting on line 3"),
    ('[\n {"messages": [{"role": "user", "content": "a"}]},\n', 3, "the JSON array ends without its closing ']'"),
    ('[\n {"messages": [{"role": "user", "content": "a"}]}\n {"x": 1}]', 3, "expected ',' or ']' after the array"),
    ('[\n {"messages": [{"role": "user", "content": "a"}]}\n] extra', 3, "unexpected text after the JSON array"),
])
def test_json_array_syntax_errors_end_the_reading(tmp_path, text, line, problem):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    samples, report = load_samples(path)
    assert len(samples) == 1 and len(report.errors) == 1, report.errors
    assert report.errors[0].startswith(f"{path}:{line}: {problem}"), report.errors[0]


def test_empty_array_and_empty_file(tmp_path):
    (tmp_path / "e.json").write_text(" [ ] ")
    (tmp_path / "e.jsonl").write_text("")
    assert load_samples(tmp_path / "e.json")[1].read == 0 and load_samples(tmp_path / "e.jsonl")[1].read == 0


@pytest.mark.parametrize("name", ["openai.jsonl.gz", "openai.data"])
def test_gzip_is_read_by_its_magic_number(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(gzip.compress((FIX / "openai.jsonl").read_bytes()))
    zipped, report = load_samples(path, on_error="raise")
    plain, _ = load_samples(FIX / "openai.jsonl", on_error="raise")
    assert report.loaded == 34 and [(s.id, s.messages, s.tools) for s in zipped] == [
        (s.id, s.messages, s.tools) for s in plain]
    assert zipped[0].source == f"{path}:1"


# -- the exporter -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_split(tmp_path_factory):
    directory = tmp_path_factory.mktemp("toolace")
    generate_all(directory, seed=3, sizes={"train": 60, "val": 4, "test": 4})
    return directory


def test_export_round_trip_through_the_command_line(small_split, tmp_path):
    out = tmp_path / "train.openai.jsonl"
    done = subprocess.run([sys.executable, "-m", "envs.toolace.export", "--split", "train", "--out", str(out),
                           "--limit", "50", "--data-dir", str(small_split)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote 50 train task(s) to {out}"
    tasks = read_tasks(small_split / "train.jsonl")[:50]
    assert {t.kind for t in tasks} == set(KINDS)
    samples, report = load_samples(out, format="openai", on_error="raise")
    assert (report.loaded, report.skipped) == (50, 0)
    for task, sample in zip(tasks, samples, strict=True):
        check_shape(sample)
        assert sample.id == task.id and [t["function"]["name"] for t in sample.tools] == task.tools
        assert sample.turn_calls() == [task.turn_calls(u) for u in range(task.n_turns)]
        assert [m["content"] for m in sample.messages if m["role"] == "user"] == task.user_messages
        results = [m for m in sample.messages if m["role"] == "tool"]
        assert len(results) == sum(len(t) for t in sample.turn_calls()) and all("tool_call_id" in m for m in results)
        assert sample.messages[-1]["role"] == "assistant" and sample.messages[-1]["content"]


def test_export_with_system_prompt_to_gzip(small_split, tmp_path):
    tasks = read_tasks(small_split / "val.jsonl")
    out = tmp_path / "val.jsonl.gz"
    assert export_tasks(tasks, out, system="toolace") == len(tasks) == 4
    samples, _ = load_samples(out, on_error="raise")
    for task, sample in zip(tasks, samples, strict=True):
        assert sample.messages[0]["role"] == "system" and "you can invoke" in sample.messages[0]["content"]
        assert sample.turn_calls() == [task.turn_calls(u) for u in range(task.n_turns)]


def test_export_refuses_a_task_whose_expert_is_not_its_ground_truth(small_split):
    task = next(t for t in read_tasks(small_split / "train.jsonl") if t.kind == "single")
    task.ground_truth[0][0][0]["arguments"]["extra"] = 1
    with pytest.raises(ValueError, match=f"task {task.id}: the expert's calls of user turn 0"):
        task_record(task, catalog_schemas())


# -- the documentation's commands ---------------------------------------------------------------------------------

def test_every_command_in_the_data_formats_doc_runs(monkeypatch):
    doc = REPO / "docs" / "data-formats.md"
    blocks = doc_blocks(doc)
    assert len(blocks.shell) >= 4 and blocks.python
    for script in blocks.shell:
        done = run_shell_block(script, REPO, timeout=300)
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    monkeypatch.chdir(REPO)
    namespace = run_python_blocks(blocks.python, doc)
    assert namespace["report"].loaded == 34


def test_the_doc_examples_load_as_their_format(tmp_path):
    examples = [(info, body) for lang, info, body in FENCE.findall((REPO / "docs" / "data-formats.md").read_text())
                if lang == "json"]
    assert len(examples) == 4
    for k, (info, body) in enumerate(examples):
        path = tmp_path / f"example{k}.jsonl"
        path.write_text(body, encoding="utf-8")
        samples, report = load_samples(path, on_error="raise")
        assert len(samples) == 1 and f"format={report.format}" in info, (info, report)
        assert samples[0].calls()
