"""Tools for chordgym agents: definition, validation, limited execution, call syntax, HTTP.

A ``Tool`` is a JSON schema plus a Python callable (``@tool`` builds one from type hints and a
Google-style docstring); a ``Toolset`` validates calls and runs them in a worker process under a time
limit that really stops them, a memory limit and an output cap, with caps on the calls and the tool
message of one reply, turning every failure into an error result (``tools.toolset``, ``tools.worker``);
``parse_tool_calls``/``format_pythonic``/``format_json``
speak the pythonic (ToolACE/BFCL) and JSON (Hermes) call syntaxes. ``tools.http`` serves a toolset over
HTTP and offers an ``httpx`` client with the same interface (imported on use, not here).
"""

from tools.calls import (
    ToolCall,
    ToolCallParseError,
    format_json,
    format_pythonic,
    looks_like_calls,
    parse_json_calls,
    parse_pythonic,
    parse_tool_calls,
)
from tools.schema import Tool, normalize_schema, schema_from_function, tool
from tools.toolset import ToolResult, Toolset, tool_message

__all__ = [
    "Tool",
    "ToolCall",
    "ToolCallParseError",
    "ToolResult",
    "Toolset",
    "format_json",
    "format_pythonic",
    "looks_like_calls",
    "normalize_schema",
    "parse_json_calls",
    "parse_pythonic",
    "parse_tool_calls",
    "schema_from_function",
    "tool",
    "tool_message",
]
