"""Tools from an MCP server: a ``Toolset`` whose tools are listed by, and run on, a Model Context Protocol
server, over stdio (a command we start) or Streamable HTTP (a URL).

Why: many tool servers already speak MCP, so an environment can offer them to the model without porting
them to ``@tool`` functions. ``MCPToolset`` keeps ``Toolset``'s contract: schemas come from the server
once, calls are validated locally (a bad call never reaches the server), and every failure (a tool
error, a time-out, a server that died) is an error ``ToolResult``, never an exception. Only construction
raises: ``ConnectionError`` when the server cannot be started or reached, as with ``HTTPToolset``.

How: the ``mcp`` client is async, so each toolset owns one asyncio event loop in a daemon thread. One
task there opens the transport and the session (handshake, then ``tools/list`` page by page) and holds
them open until ``close()``; each call is submitted to that loop and waited for at most ``timeout_s``
seconds, after which it is cancelled. ``subset``/``renamed`` copies share the connection; ``close()``
on any of them closes it. A toolset nobody closed is closed when the last copy is garbage-collected, or
at interpreter exit, so no server process outlives us.

Results: an MCP error result becomes an error ``ToolResult`` with its text. Otherwise the value is the
result's ``structuredContent`` if any (unwrapping ``{"result": x}`` when the tool's output schema is that
wrapper, which SDKs add around non-object return values), else its content: one text item is parsed as
JSON if it is JSON, else kept as text; several items make a list; images, audio and resources become
short placeholders such as ``{"type": "image", "mimeType": "image/png"}``. The output cap applies.

Safety: as in ``tools.http``, a URL must be loopback (``127.0.0.1``, ``localhost``, ``::1``) unless the
caller passes an explicit ``allowlist``. A stdio server gets the ``mcp`` package's minimal environment
(``HOME``, ``PATH``, ...) plus ``env``, not ours; give the interpreter as ``sys.executable`` to be sure of
which Python runs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tools.http import _allowed, _is_loopback
from tools.schema import Tool, is_call_name
from tools.toolset import ToolResult, Toolset

try:
    import httpx2
    import mcp_types
    from mcp import Client, MCPError, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamable_http_client
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"tools.mcp needs the 'mcp' package (pip install mcp): {e}") from e

__all__ = ["MCPToolset", "mcp_toolset"]

log = logging.getLogger(__name__)

_MAX_PAGES = 1000  # tools/list pages followed before giving up on a server whose cursor never ends
_CLOSE_TIMEOUT_S = 10.0  # for the session to shut down (the stdio transport escalates to a kill by ~4.5 s)
_LOST_GRACE_S = 0.5  # to learn why the connection died when a call was cancelled under us
_SPEC_KEYS = ("command", "url", "env", "cwd", "timeout_s", "connect_timeout_s", "max_output_chars",
              "allowlist")


class _Gone(Exception):
    """The connection is closed or lost; the message says which and why."""


def _one_line(error: BaseException) -> str:
    """``Type: message`` of the first leaf of an exception (group), on one line."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _stderr() -> Any:
    """Where a stdio server's stderr goes: ours if it is a real file, else nowhere."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL
    return sys.stderr


class _Session:
    """One MCP client session held open by a task on a private event loop running in a daemon thread.

    Nothing running on the loop refers back to a toolset, so toolsets can be garbage-collected while
    the session runs; ``close()`` ends the session (and with it a stdio server process), then the loop.
    """

    def __init__(self, transport: Any, label: str, connect_timeout_s: float):
        self.label = label
        self.tools: list[mcp_types.Tool] = []
        self.error: str | None = None  # why the session ended by itself, once it has
        self._client: Client | None = None
        self._connected = False
        self._closed = False
        self._lock = threading.Lock()
        self._stop = asyncio.Event()
        self._finished = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=_run_loop, args=(self._loop,), name="mcp-client", daemon=True)
        self._thread.start()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        asyncio.run_coroutine_threadsafe(self._keep(transport, connect_timeout_s, ready), self._loop)
        try:
            ready.result(timeout=connect_timeout_s)
        except BaseException as e:  # noqa: BLE001 - every failure to connect becomes one ConnectionError
            reason = (f"no answer within connect_timeout_s={connect_timeout_s:g} s"
                      if isinstance(e, TimeoutError) and not ready.done() else _one_line(e))
            self.close()
            raise ConnectionError(f"cannot connect to {label}: {reason}") from None
        self._connected = True

    async def _keep(self, transport: Any, connect_timeout_s: float,
                    ready: concurrent.futures.Future[None]) -> None:
        try:
            if isinstance(transport, str):  # a URL
                timeout = httpx2.Timeout(connect_timeout_s, read=300.0)  # long reads: SSE streams stay open
                async with httpx2.AsyncClient(trust_env=False, timeout=timeout) as http:
                    await self._hold(streamable_http_client(transport, http_client=http), ready)
            else:
                await self._hold(transport, ready)
        except BaseException as e:  # noqa: BLE001 - this task's end is reported through ready / self.error
            if not ready.done():
                ready.set_exception(e if isinstance(e, Exception) else ConnectionError(_one_line(e)))
            elif not isinstance(e, asyncio.CancelledError):
                self.error = _one_line(e)
        finally:
            self._client = None
            if self.error is None:
                self.error = "the session ended"
            self._finished.set()

    async def _hold(self, transport: Any, ready: concurrent.futures.Future[None]) -> None:
        async with Client(transport, cache=None) as client:
            cursor: str | None = None
            seen: set[str] = set()
            for _ in range(_MAX_PAGES):
                page = await client.list_tools(cursor=cursor)
                self.tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
                if cursor in seen:
                    raise ConnectionError(f"tools/list repeated the cursor {cursor!r}")
                seen.add(cursor)
            else:
                raise ConnectionError(f"tools/list did not end after {_MAX_PAGES} pages")
            self._client = client
            ready.set_result(None)
            await self._stop.wait()

    def call(self, name: str, arguments: dict[str, Any], timeout_s: float | None) -> mcp_types.CallToolResult:
        """The server's result; raises ``TimeoutError`` (the call is cancelled), ``_Gone``, or what the
        client raised."""
        client = self._client
        if self._closed:
            raise _Gone(f"the connection to {self.label} is closed")
        if client is None:
            raise _Gone(f"lost the connection to {self.label}: {self.error}")
        try:
            future = asyncio.run_coroutine_threadsafe(client.call_tool(name, arguments), self._loop)
        except RuntimeError:  # the loop is closed: close() ran meanwhile
            raise _Gone(f"the connection to {self.label} is closed") from None
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError as e:
            if future.done():  # the client raised it, not our wait
                raise RuntimeError(f"the client timed out: {_one_line(e)}") from None
            future.cancel()
            raise
        except MCPError as e:
            if e.code == mcp_types.CONNECTION_CLOSED:  # the server went away (a stdio server exited)
                raise _Gone(f"lost the connection to {self.label}: {e.message}") from None
            raise
        except concurrent.futures.CancelledError:  # close(), or the session's task group died with the server
            if self._closed:
                raise _Gone(f"the connection to {self.label} is closed") from None
            self._finished.wait(_LOST_GRACE_S)
            reason = self.error or "the call was cancelled"
            raise _Gone(f"lost the connection to {self.label}: {reason}") from None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """End the session (terminating a stdio server), then the loop and its thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        loop = self._loop
        inside = threading.current_thread() is self._thread  # a finalizer run by the garbage collector there
        try:
            loop.call_soon_threadsafe(self._stop.set)
            if self._connected and not inside:  # let the session end by itself: a clean transport shutdown
                self._finished.wait(_CLOSE_TIMEOUT_S)
            loop.call_soon_threadsafe(loop.stop)  # the loop thread then cancels whatever is left
        except RuntimeError:  # the loop is already closed
            pass
        if not inside:
            self._thread.join(2 * _CLOSE_TIMEOUT_S)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The loop thread: run until stopped, then cancel what is left and close the loop."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=_CLOSE_TIMEOUT_S))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


class _Link:
    """What a toolset and its copies share: the session, closed when the last of them is collected."""

    __slots__ = ("session", "finalizer", "__weakref__")

    def __init__(self, session: _Session):
        self.session = session
        self.finalizer = weakref.finalize(self, session.close)  # also runs at interpreter exit


class _RemoteTool:
    """A ``Tool.fn`` that calls the server; it keeps the server's name for the tool, which renaming
    the ``Tool`` does not change, and whether its structured results wrap a value as ``{"result": x}``."""

    __slots__ = ("link", "name", "wraps_result", "__weakref__")

    def __init__(self, link: _Link, name: str, wraps_result: bool):
        self.link = link
        self.name = name
        self.wraps_result = wraps_result

    def __call__(self, **arguments: Any) -> Any:
        """Call directly (no validation, no time limit); a tool error raises ``RuntimeError``."""
        result = self.link.session.call(self.name, arguments, None)
        if result.is_error:
            raise RuntimeError(_texts(result))
        return _value(result, self.wraps_result)


class MCPToolset(Toolset):
    """A ``Toolset`` whose tools are those of an MCP server; validation stays local.

    Give exactly one of ``command`` (a server to start and talk to over stdio: ``[sys.executable,
    "server.py"]``, optionally with ``env`` and ``cwd``) and ``url`` (a Streamable HTTP endpoint, e.g.
    ``http://127.0.0.1:8000/mcp``; loopback only unless ``allowlist`` names its scheme and host, as in
    ``tools.http``). Construction connects and lists the tools, raising ``ConnectionError`` (one line,
    naming the command or URL) within about ``connect_timeout_s`` if that fails; a tool whose name cannot
    be written as a call, or whose schema cannot be enforced, is skipped with a logged warning. After
    that every failure is an error ``ToolResult``. ``timeout_s`` bounds each call (``None``: no limit).
    """

    def __init__(self, command: str | Sequence[str] | None = None, url: str | None = None, *,
                 env: Mapping[str, str] | None = None, cwd: str | None = None, timeout_s: float | None = 5.0,
                 connect_timeout_s: float = 30.0, max_output_chars: int = 4096,
                 allowlist: Iterable[str] | None = None):
        if (command is None) == (url is None):
            raise ValueError("MCPToolset needs exactly one of command (a stdio server) or url (HTTP)")
        if isinstance(connect_timeout_s, bool) or not isinstance(connect_timeout_s, int | float) \
                or connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be a positive number, got {connect_timeout_s!r}")
        super().__init__([], timeout_s=timeout_s, max_output_chars=max_output_chars)  # check the limits
        transport: Any
        if command is not None:
            if allowlist is not None:
                raise ValueError("allowlist applies to url, not to command")
            argv = shlex.split(command) if isinstance(command, str) else list(command)
            if not argv or not all(isinstance(a, str) and a for a in argv):
                raise ValueError(f"command must be a non-empty list of non-empty strings, got {command!r}")
            label = f"MCP server `{shlex.join(argv)}`"
            params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(env) if env else None,
                                           cwd=cwd)
            transport = stdio_client(params, errlog=_stderr())
            self.command: list[str] | None = argv
            self.url: str | None = None
        else:
            assert url is not None
            if env is not None or cwd is not None:
                raise ValueError("env and cwd apply to command (a stdio server), not to url")
            _check_url(url, allowlist)
            label = f"MCP server at {url}"
            transport = url
            self.command, self.url = None, url
        self.connect_timeout_s = connect_timeout_s
        started = time.monotonic()
        session = _Session(transport, label, connect_timeout_s)
        self._link = _Link(session)
        try:
            tools = _local_tools(session, self._link)
            super().__init__(tools, timeout_s=timeout_s, max_output_chars=max_output_chars)
        except BaseException:
            self.close()
            raise
        log.debug("%s: %d tools in %.2f s", label, len(tools), time.monotonic() - started)

    # -- life ------------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._link.session.closed

    def close(self) -> None:
        """Close the shared session (and stop a stdio server); idempotent. Closes every copy's too."""
        self._link.finalizer()

    def __enter__(self) -> MCPToolset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.url if self.url is not None else shlex.join(self.command or [])
        return f"{type(self).__name__}({where!r}, {self.names})"

    # -- running ---------------------------------------------------------------------------------------
    def _run(self, t: Tool, arguments: dict[str, Any]) -> ToolResult:
        if not isinstance(t.fn, _RemoteTool):  # pragma: no cover - every tool here is built by _local_tools
            return ToolResult(t.name, error=f"{t.name}: tool has no implementation here")
        session = self._link.session
        try:
            result = session.call(t.fn.name, arguments, self.timeout_s)
        except TimeoutError:
            return ToolResult(t.name, error=f"{t.name}: timed out after {self.timeout_s:g} s")
        except _Gone as e:
            return self._error(t.name, str(e))
        except Exception as e:  # a protocol error, a malformed or schema-violating answer, ...
            return self._error(t.name, f"{session.label} failed: {_one_line(e)}")
        if result.is_error:
            return self._error(t.name, _texts(result) or "the tool failed without a message")
        return self._result(t.name, _value(result, t.fn.wraps_result))

    def _error(self, name: str, text: str) -> ToolResult:
        text = f"{name}: {text}"
        if len(text) > self.max_output_chars:
            text = text[: max(self.max_output_chars - 3, 0)] + "..."
        return ToolResult(name, error=text)


# -- construction helpers -------------------------------------------------------------------------------

def _check_url(url: str, allowlist: Iterable[str] | None) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"MCP server URL {url!r} must be http(s)://host[:port]/path")
    if allowlist is None:
        if not _is_loopback(parts.hostname):
            raise ValueError(f"refusing MCP server URL {url!r}: not a loopback host (127.0.0.1, localhost, "
                             f"::1); pass allowlist=[...] to allow others")
    else:
        allowlist = [allowlist] if isinstance(allowlist, str) else list(allowlist)
        if not _allowed(url, allowlist):
            raise ValueError(f"MCP server URL {url!r} is not in the allowlist {allowlist}")


def _local_tools(session: _Session, link: _Link) -> list[Tool]:
    tools: list[Tool] = []
    for remote in session.tools:
        if not is_call_name(remote.name):
            log.warning("%s: skipping tool %r: its name is not a valid call name", session.label, remote.name)
            continue
        try:
            tools.append(Tool(name=remote.name, description=remote.description or "",
                              parameters=dict(remote.input_schema or {}),
                              fn=_RemoteTool(link, remote.name, _wraps_result(remote.output_schema))))
        except ValueError as e:
            log.warning("%s: skipping tool %r: %s", session.label, remote.name, e)
    return tools


def _wraps_result(schema: Mapping[str, Any] | None) -> bool:
    """Does a tool's output schema just wrap a non-object value as ``{"result": value}``? (The Python SDK
    writes that for a function returning ``str``, ``int``, a list...; FastMCP marks it.)"""
    if not schema:
        return False
    props = schema.get("properties")
    return bool(schema.get("x-fastmcp-wrap-result")) or (
        isinstance(props, Mapping) and set(props) == {"result"} and schema.get("required") == ["result"])


# -- results --------------------------------------------------------------------------------------------

def _texts(result: mcp_types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, mcp_types.TextContent)).strip()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def _item(content: Any, parse: bool) -> Any:
    if isinstance(content, mcp_types.TextContent):
        if parse:
            try:
                return json.loads(content.text, parse_constant=_reject_constant)
            except (ValueError, RecursionError):
                pass
        return content.text
    if isinstance(content, mcp_types.ImageContent | mcp_types.AudioContent):
        return {"type": content.type, "mimeType": content.mime_type}
    if isinstance(content, mcp_types.ResourceLink):
        return {"type": "resource_link", "uri": str(content.uri), "name": content.name}
    if isinstance(content, mcp_types.EmbeddedResource):
        resource = content.resource
        out: dict[str, Any] = {"type": "resource", "uri": str(resource.uri), "mimeType": resource.mime_type}
        if isinstance(resource, mcp_types.TextResourceContents):
            out["text"] = resource.text
        return out
    return {"type": getattr(content, "type", type(content).__name__)}


def _value(result: mcp_types.CallToolResult, wraps_result: bool) -> Any:
    structured = result.structured_content
    if structured is not None:
        if wraps_result and isinstance(structured, Mapping) and set(structured) == {"result"}:
            return structured["result"]
        return structured
    items = [_item(c, parse=True) for c in result.content]
    if len(items) == 1:
        return items[0]
    return items or None


# -- from a config ----------------------------------------------------------------------------------------

def mcp_toolset(spec: Mapping[str, Any]) -> MCPToolset:
    """An ``MCPToolset`` from a config mapping: ``{"command": [...], "env": {...}, "cwd": ..., "timeout_s":
    ...}`` or ``{"url": ..., "allowlist": [...]}`` (also ``connect_timeout_s``, ``max_output_chars``).

    A string ``command`` is split like a shell would. Unknown keys, a missing or doubled ``command``/
    ``url`` and values of the wrong type raise ``ValueError`` naming the key.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"an MCP server spec must be a mapping, got {type(spec).__name__}")
    unknown = [k for k in spec if k not in _SPEC_KEYS]
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in the MCP server spec; known: {', '.join(_SPEC_KEYS)}")
    if ("command" in spec) == ("url" in spec):
        raise ValueError("the MCP server spec needs exactly one of 'command' (a stdio server) or 'url'")
    kwargs: dict[str, Any] = {}
    if "command" in spec:
        command = spec["command"]
        if isinstance(command, str):
            command = shlex.split(command)
        if (not isinstance(command, Sequence) or not command
                or not all(isinstance(a, str | int | float) and not isinstance(a, bool) for a in command)):
            raise ValueError(f"'command' must be a non-empty list of strings, got {spec['command']!r}")
        kwargs["command"] = [str(a) for a in command]
    if "url" in spec:
        if not isinstance(spec["url"], str):
            raise ValueError(f"'url' must be a string, got {spec['url']!r}")
        kwargs["url"] = spec["url"]
    if spec.get("env") is not None:
        env = spec["env"]
        if not isinstance(env, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str | int | float) for k, v in env.items()):
            raise ValueError(f"'env' must map names to strings, got {env!r}")
        kwargs["env"] = {k: str(v) for k, v in env.items()}
    if spec.get("cwd") is not None:
        if not isinstance(spec["cwd"], str):
            raise ValueError(f"'cwd' must be a string, got {spec['cwd']!r}")
        kwargs["cwd"] = spec["cwd"]
    for key in ("timeout_s", "connect_timeout_s"):
        if key in spec:
            value = spec[key]
            if value is None and key == "timeout_s":  # no limit, as Toolset allows
                kwargs[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"'{key}' must be a positive number, got {value!r}")
            kwargs[key] = value
    if "max_output_chars" in spec:
        value = spec["max_output_chars"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"'max_output_chars' must be a positive integer, got {value!r}")
        kwargs["max_output_chars"] = value
    if spec.get("allowlist") is not None:
        allowlist = spec["allowlist"]
        allowlist = [allowlist] if isinstance(allowlist, str) else allowlist
        if not isinstance(allowlist, Sequence) or not all(isinstance(a, str) for a in allowlist):
            raise ValueError(f"'allowlist' must be a list of URLs, got {spec['allowlist']!r}")
        kwargs["allowlist"] = list(allowlist)
    return MCPToolset(**kwargs)
