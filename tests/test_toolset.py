"""Toolset: lookup, validation, execution limits, and errors as results."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tools import Tool, ToolCall, ToolResult, Toolset, parse_pythonic, tool, tool_message


@tool
def add(a: int, b: int = 0) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


@tool
def boom(message: str) -> None:
    """Raise an error.

    Args:
        message: The error text.
    """
    raise RuntimeError(message)


_release = threading.Event()


@tool
def hang() -> None:
    """Block until released (never, in practice)."""
    _release.wait()


@tool
def big(n: int) -> str:
    """Return n characters.

    Args:
        n: How many.
    """
    return "x" * n


@tool
def weird() -> object:
    """Return something that is not JSON."""
    return object()


def plain(text: str) -> list[str]:
    """Split text into words.

    Args:
        text: The text.
    """
    return text.split()


@pytest.fixture
def toolset() -> Toolset:
    return Toolset([add, boom, hang, big, weird, plain], timeout_s=0.3, max_output_chars=100)


def test_lookup(toolset):
    assert toolset.names == ["add", "boom", "hang", "big", "weird", "plain"]
    assert len(toolset) == 6 and "add" in toolset and "nope" not in toolset
    assert toolset["plain"].parameters["required"] == ["text"]
    assert isinstance(toolset["add"], Tool)
    assert [t.name for t in toolset] == toolset.names


def test_duplicate_names_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        Toolset([add, add])


def test_schemas(toolset):
    openai = toolset.schemas()
    assert openai[0]["type"] == "function" and openai[0]["function"]["name"] == "add"
    toolace = toolset.schemas("toolace")
    assert toolace[0]["parameters"]["type"] == "dict"
    with pytest.raises(ValueError):
        toolset.schemas("xml")  # type: ignore[arg-type]


def test_subset(toolset):
    sub = toolset.subset(["plain", "add"])
    assert sub.names == ["plain", "add"] and sub.timeout_s == toolset.timeout_s
    assert len(toolset) == 6
    with pytest.raises(KeyError):
        toolset.subset(["nope"])


def test_success(toolset):
    assert toolset.execute(ToolCall("add", {"a": 2, "b": 3})) == ToolResult("add", content=5)
    assert toolset.execute(ToolCall("plain", {"text": "a b"})).content == ["a", "b"]


def test_validate_and_unknown_tool(toolset):
    assert toolset.validate(ToolCall("add", {"a": 1})) is None
    assert toolset.validate(ToolCall("add", {})) == "add: missing required parameter 'a'"
    msg = toolset.validate(ToolCall("mul", {"a": 1}))
    assert msg == "unknown tool 'mul'; available tools: add, boom, hang, big, weird, plain"
    result = toolset.execute(ToolCall("mul", {}))
    assert result.error == msg and not result.ok


def test_invalid_arguments_never_run(toolset):
    result = toolset.execute(ToolCall("boom", {"message": 1}))
    assert result.error == "boom: parameter 'message' must be of type string, got integer 1"


def test_exception_becomes_error(toolset):
    result = toolset.execute(ToolCall("boom", {"message": "disk on fire"}))
    assert result.error == "boom: RuntimeError: disk on fire"
    assert result.to_message_item() == {"name": "boom", "error": "boom: RuntimeError: disk on fire"}


def test_timeout_returns_within_the_limit(toolset):
    start = time.monotonic()
    result = toolset.execute(ToolCall("hang", {}))
    elapsed = time.monotonic() - start
    assert result.error == "hang: timed out after 0.3 s"
    assert elapsed < 0.3 + 0.5
    assert toolset.execute(ToolCall("add", {"a": 1})).content == 1  # the process goes on


def test_output_cap(toolset):
    assert toolset.execute(ToolCall("big", {"n": 50})).ok
    result = toolset.execute(ToolCall("big", {"n": 500}))
    assert result.error == "big: output too large: 502 characters (limit 100); ask for less"


def test_non_json_result(toolset):
    result = toolset.execute(ToolCall("weird", {}))
    assert "not JSON-serialisable" in result.error


def test_results_are_plain_json():
    @tool
    def pair() -> tuple:
        """A tuple."""
        return (1, 2)

    assert Toolset([pair]).execute(ToolCall("pair", {})).content == [1, 2]


def test_inline_execution_without_timeout():
    ts = Toolset([add, boom], timeout_s=None)
    assert ts.execute(ToolCall("add", {"a": 4})).content == 4
    assert ts.execute(ToolCall("boom", {"message": "x"})).error == "boom: RuntimeError: x"


def test_execute_all_and_tool_message(toolset):
    calls = parse_pythonic("[add(a=1, b=2), boom(message='no'), mul(x=1)]")
    results = toolset.execute_all(calls)
    assert [r.ok for r in results] == [True, False, False]
    message = toolset.tool_message(results)
    assert message["role"] == "tool"
    items = json.loads(message["content"])
    assert items[0] == {"name": "add", "results": 3}
    assert items[1] == {"name": "boom", "error": "boom: RuntimeError: no"}
    assert items[2]["name"] == "mul" and "unknown tool" in items[2]["error"]
    assert tool_message(results) == message


def test_never_raises_for_garbage_calls(toolset):
    for call in [ToolCall("add", None), ToolCall("add", [1]), ToolCall(None, {}), "add(a=1)", None]:  # type: ignore[arg-type]
        result = toolset.execute(call)  # type: ignore[arg-type]
        assert isinstance(result, ToolResult) and result.error


def test_many_tools_listed_briefly():
    tools = [Tool(f"t{i}", "d", {"type": "object", "properties": {}}, fn=lambda: 0) for i in range(100)]
    msg = Toolset(tools).validate(ToolCall("x", {}))
    assert "t39" in msg and "t40" not in msg and "(and 60 more)" in msg


def test_pickle_round_trip():
    import pickle

    ts = pickle.loads(pickle.dumps(Toolset([add, plain], timeout_s=1.0)))
    assert ts.names == ["add", "plain"] and ts["add"] is add  # @tool functions pickle by reference
    assert ts.execute(ToolCall("plain", {"text": "a b"})).content == ["a", "b"]
    assert ts.validate(ToolCall("add", {"a": "x"})) == "add: parameter 'a' must be of type integer, got string \"x\""


def test_new_limits_have_defaults_and_are_checked():
    ts = Toolset([add])
    assert (ts.timeout_s, ts.max_output_chars, ts.isolation, ts.max_memory_bytes, ts.max_calls_per_reply,
            ts.max_message_chars) == (5.0, 4096, "process", 1 << 30, 32, 16_384)
    for bad in ({"max_calls_per_reply": 0}, {"max_message_chars": -1}, {"max_memory_bytes": 1.5},
                {"isolation": "none"}):
        with pytest.raises(ValueError):
            Toolset([add], **bad)
    assert Toolset([add], max_calls_per_reply=None, max_message_chars=None, max_memory_bytes=None).execute(
        ToolCall("add", {"a": 1})).content == 1


def test_close_stops_the_worker_and_the_next_call_starts_another(toolset):
    assert toolset.execute(ToolCall("add", {"a": 1})).content == 1
    first = toolset._worker.pid
    toolset.close()
    assert toolset._worker is None
    assert toolset.execute(ToolCall("add", {"a": 2})).content == 2 and toolset._worker.pid != first
    toolset.close()
