"""A set of tools that validates calls, runs them under limits, and turns every failure into a result.

A rollout must never crash on what a model wrote or on what a tool did, so ``Toolset.execute`` never
raises for a bad call: an unknown name, invalid arguments, an exception in the tool, a time-out, a
result that is not JSON or is too large, each comes back as a ``ToolResult`` with ``error`` set, and the
error text goes to the model in the tool message.

Limits:
* Time: each call runs in its own daemon thread and is waited for ``timeout_s`` seconds. A tool still
  running then is abandoned, not killed (Python cannot kill a thread): it keeps its thread until it
  returns, and being a daemon thread it does not keep the interpreter alive. Tools with side effects
  should therefore be quick or respect their own deadlines. ``timeout_s=None`` runs calls inline with no
  limit (cheaper, for trusted pure functions).
* Output: the result is serialised to JSON; if the text is longer than ``max_output_chars`` the call
  is an error ("output too large: N characters, limit M") rather than a silently truncated, invalid
  JSON value. A tool that can return a lot should take a limit argument (page size, top-k).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

from tools.calls import ToolCall
from tools.schema import Tool, tool

__all__ = ["ToolResult", "Toolset", "tool_message"]

_MAX_LISTED_NAMES = 40  # tool names listed in an "unknown tool" error


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """The outcome of one call: ``content`` (a JSON value) on success, or ``error`` (a message)."""

    name: str
    content: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_message_item(self) -> dict[str, Any]:
        """``{"name", "results"}`` or ``{"name", "error"}``: one entry of a tool message's JSON list."""
        if self.error is not None:
            return {"name": self.name, "error": self.error}
        return {"name": self.name, "results": self.content}


def tool_message(results: Iterable[ToolResult]) -> dict[str, str]:
    """The ``tool`` chat message for one executed call list: content is the JSON text of the items."""
    items = [r.to_message_item() for r in results]
    return {"role": "tool", "content": json.dumps(items, ensure_ascii=False)}


class Toolset:
    """Tools by name, with validation, a per-call time limit and an output cap.

    ``tools`` may hold ``Tool`` objects or plain functions (wrapped with ``@tool``). Duplicate names
    raise ``ValueError``.
    """

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]], timeout_s: float | None = 5.0,
                 max_output_chars: int = 4096):
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive or None, got {timeout_s}")
        if max_output_chars < 1:
            raise ValueError(f"max_output_chars must be >= 1, got {max_output_chars}")
        self.timeout_s = timeout_s
        self.max_output_chars = max_output_chars
        self._tools: dict[str, Tool] = {}
        for t in tools:
            t = t if isinstance(t, Tool) else tool(t)
            if t.name in self._tools:
                raise ValueError(f"duplicate tool name {t.name!r}")
            self._tools[t.name] = t

    # -- lookup ------------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._tools)

    @property
    def tools(self) -> list[Tool]:
        return list(self._tools.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.names})"

    def subset(self, names: Iterable[str]) -> Toolset:
        """A toolset (same kind, same limits) holding only ``names``, in that order."""
        names = list(names)
        missing = [n for n in names if n not in self._tools]
        if missing:
            raise KeyError(f"unknown tools {missing}; available: {', '.join(self.names)}")
        new = copy.copy(self)
        new._tools = {n: self._tools[n] for n in names}
        return new

    def renamed(self, names: Mapping[str, str]) -> Toolset:
        """A toolset (same kind, same limits, same order) whose tools answer to new names: ``names`` maps
        old to new; tools it leaves out keep theirs. The schemas and functions are shared, not rebuilt."""
        unknown = [n for n in names if n not in self._tools]
        if unknown:
            raise KeyError(f"unknown tools {unknown}; available: {', '.join(self.names)}")
        tools = [t.renamed(names[t.name]) if t.name in names else t for t in self._tools.values()]
        new = copy.copy(self)
        new._tools = {}
        for t in tools:
            if t.name in new._tools:
                raise ValueError(f"duplicate tool name {t.name!r} after renaming")
            new._tools[t.name] = t
        return new

    def schemas(self, style: Literal["openai", "toolace"] = "openai") -> list[dict[str, Any]]:
        """Every tool's schema, in OpenAI's ``{"type": "function", ...}`` form or ToolACE's dialect."""
        if style == "openai":
            return [t.openai_schema() for t in self._tools.values()]
        if style == "toolace":
            return [t.toolace_schema() for t in self._tools.values()]
        raise ValueError(f"unknown schema style {style!r}; use 'openai' or 'toolace'")

    # -- checking and running ------------------------------------------------------------------------------
    def validate(self, call: ToolCall) -> str | None:
        """``None`` if ``call`` names a tool here with valid arguments, else an error text for the model."""
        name = getattr(call, "name", None)
        if not isinstance(name, str) or name not in self._tools:
            return self._unknown(name)
        return self._tools[name].validate(call.arguments)

    def execute(self, call: ToolCall) -> ToolResult:
        """Validate and run one call; every failure is a ``ToolResult`` with ``error`` set."""
        name = getattr(call, "name", None)
        name = name if isinstance(name, str) else repr(name)
        error = self.validate(call)
        if error is not None:
            return ToolResult(name, error=error)
        try:
            return self._run(self._tools[name], dict(call.arguments))
        except Exception as e:  # a bug in a subclass's _run must still not reach the rollout
            return ToolResult(name, error=f"{type(e).__name__}: {e}")

    def execute_all(self, calls: Iterable[ToolCall]) -> list[ToolResult]:
        """Run calls one after another, in order (later calls may depend on state earlier ones changed)."""
        return [self.execute(c) for c in calls]

    @staticmethod
    def tool_message(results: Iterable[ToolResult]) -> dict[str, str]:
        """See ``tools.toolset.tool_message``."""
        return tool_message(results)

    # -- internals ---------------------------------------------------------------------------------------
    def _unknown(self, name: Any) -> str:
        listed = self.names[:_MAX_LISTED_NAMES]
        more = f" (and {len(self.names) - len(listed)} more)" if len(self.names) > len(listed) else ""
        available = ", ".join(listed) + more if listed else "none"
        return f"unknown tool {name!r}; available tools: {available}"

    def _run(self, t: Tool, arguments: dict[str, Any]) -> ToolResult:
        """Call the tool's function under the time limit, then check its result."""
        if t.fn is None:
            return ToolResult(t.name, error=f"{t.name}: tool has no implementation here")
        if self.timeout_s is None:
            try:
                value = t.fn(**arguments)
            except Exception as e:
                return ToolResult(t.name, error=_exception_text(t.name, e))
            return self._result(t.name, value)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = t.fn(**arguments)  # type: ignore[misc]
            except BaseException as e:  # noqa: BLE001 - reported to the caller, this thread ends here
                box["error"] = e

        worker = threading.Thread(target=target, name=f"tool-{t.name}", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            return ToolResult(t.name, error=f"{t.name}: timed out after {self.timeout_s:g} s")
        if "error" in box:
            return ToolResult(t.name, error=_exception_text(t.name, box["error"]))
        return self._result(t.name, box.get("value"))

    def _result(self, name: str, value: Any) -> ToolResult:
        """Check that ``value`` is JSON within the output cap; return it as plain JSON data."""
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as e:
            return ToolResult(name, error=f"{name}: result is not JSON-serialisable "
                                          f"({type(value).__name__}: {e})")
        if len(text) > self.max_output_chars:
            return ToolResult(name, error=f"{name}: output too large: {len(text)} characters "
                                          f"(limit {self.max_output_chars}); ask for less")
        return ToolResult(name, content=json.loads(text))


def _exception_text(name: str, error: BaseException) -> str:
    message = str(error)
    return f"{name}: {type(error).__name__}: {message}" if message else f"{name}: {type(error).__name__}"

