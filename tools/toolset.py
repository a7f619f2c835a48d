"""A set of tools that validates calls, runs them under limits, and turns every failure into a result.

A rollout must never crash on what a model wrote or on what a tool did, so ``Toolset.execute`` never
raises for a bad call: an unknown name, invalid arguments, an exception in the tool (``SystemExit``
included), a time-out, a memory limit, a result that is not JSON or is too large, each comes back as a
``ToolResult`` with ``error`` set, and the error text goes to the model in the tool message.

Limits (defaults in brackets):
* Time (``timeout_s``, 5 s): with ``isolation="process"`` (the default) the calls of a toolset run in one
  worker process of its own (``tools.worker``), forked at the toolset's first call so that it inherits the
  tools' closures and state as they are, and kept for the toolset's later calls. A call that is not done
  at ``timeout_s`` gets "NAME: timed out after N s" and its worker is killed (SIGKILL, then reaped): no
  thread, process or CPU time outlives the limit, and the timed-out call cannot change the toolset's
  state afterwards. The worker's state is discarded with it; the next call forks a fresh worker from the
  toolset as it was built and first replays, in order and under the same limits, the calls that had
  completed (tools are expected to be deterministic functions of their state: a seeded world). A call
  that kills its worker (``os._exit``, a crash, the CPU backstop) is reported and handled the same way.
  The worker is killed when the toolset is garbage-collected and at interpreter exit. At most
  ``max_live_workers()`` toolsets of a process keep a worker at once (``CHORDGYM_MAX_TOOL_WORKERS``, else
  a fifth of physical memory at 150 MB a worker: 32 on a 24 GiB machine):
  each worker costs its page tables and the pages either side writes after the fork (measured: ~50 MB
  each under a 4 GB trainer, and 124 of them under a 12 GB one ran a 24 GB machine out of memory in a
  200-task evaluation), so a toolset starting one past the cap first stops the least recently used idle
  worker, whose toolset replays its completed calls into a fresh worker at its next call, as after a
  time-out. A toolset busy in a call, or past the replay limit, is never the one stopped. Its own state is
  the worker's: the parent's objects (the ``World``) do not change when tools run, so read results, not
  the parent's state. ``isolation="thread"`` runs each call in a daemon thread instead, abandoned (not
  killed: Python cannot kill a thread) at the time-out, for tools that must share the parent's state or
  live connections; ``timeout_s=None`` runs calls inline with no limit (for trusted pure functions).
* Memory (``max_memory_bytes``, 1 GiB): how much address space a worker may add to what it inherited; an
  allocation past it raises ``MemoryError`` in the tool, which becomes the call's error (process
  isolation only).
* Output (``max_output_chars``, 4096): the result is serialised to JSON; if the text is longer the call is
  an error ("output too large: N characters, limit M") rather than a silently truncated, invalid JSON
  value. A tool that can return a lot should take a limit argument (page size, top-k). Error texts
  (exception messages with their class name, and every other error) are cut to the same length (at
  least 256 characters), with a note of how long they were.
* Per reply (``execute_all``): at most ``max_calls_per_reply`` calls (32) run; the others are not run and
  one ``invalid_call`` error result says so. Results are kept while the tool message
  (``tool_message``) stays within ``max_message_chars`` characters (16,384); a result past that is
  replaced by a short error, so the message stays within the limit plus about 200 characters per
  replaced item.

Process isolation is for local functions (``Tool.fn``) run by ``Toolset._run``; subclasses whose ``_run``
calls elsewhere (``tools.http.HTTPToolset``, ``tools.mcp.MCPToolset``) apply their own limits there.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pickle
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from multiprocessing.connection import Connection
from typing import Any, Literal

from tools import worker as _worker
from tools.calls import ToolCall
from tools.schema import Tool, tool

__all__ = ["LIVE_WORKERS", "ToolResult", "Toolset", "max_live_workers", "tool_message"]

_MAX_LISTED_NAMES = 40  # tool names listed in an "unknown tool" error
_MIN_ERROR_CHARS = 256  # error texts are cut at max(max_output_chars, this)
_MAX_REPLAY = 1024  # completed calls remembered for a replacement worker; past it, replay stops (see _record)
_ERROR_NAME_CHARS = 80  # a name quoted in a replaced item is cut to this
_WORKER_STATE = ("_lock", "_worker", "_finalizer")
_RESULT, _ERROR, _REPLAYED = b"R", b"E", b"."

Isolation = Literal["process", "thread"]
_WORKER_MEMORY_SHARE = 0.2  # of physical memory, budgeted for tool workers by the default cap
_WORKER_BYTES = 150 << 20  # a worker's measured cost under an 11.5 GB trainer (copy-on-write, page tables)


def default_max_live_workers() -> int:
    """A fifth of physical memory at 150 MB a worker, at least 8: 32 on a 24 GiB machine, ~170 on 128 GiB,
    so that a GPU host's large rollout batches keep their workers between turns."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 32
    return max(8, int(_WORKER_MEMORY_SHARE * physical / _WORKER_BYTES))


def max_live_workers() -> int:
    """How many toolsets of this process may keep a worker process at once: ``CHORDGYM_MAX_TOOL_WORKERS``
    (a positive integer), else ``default_max_live_workers()``. Past it, stopped workers are re-forked (and
    their calls replayed) at their toolset's next call."""
    text = os.environ.get("CHORDGYM_MAX_TOOL_WORKERS", "").strip()
    if not text:
        return default_max_live_workers()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"CHORDGYM_MAX_TOOL_WORKERS must be a positive integer, got {text!r}")
    return value


class _LiveWorkers:
    """The toolsets of this process whose worker runs, least recently used first (weakly held), and how
    many workers were stopped to keep them within ``max_live_workers()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._order: OrderedDict[int, weakref.ref[Toolset]] = OrderedDict()
        self.stopped = 0

    def __len__(self) -> int:
        return sum(t._worker is not None for t in self._snapshot())

    def touch(self, toolset: Toolset) -> None:
        """``toolset`` (which has a worker) was just used."""
        with self._lock:
            self._order[id(toolset)] = weakref.ref(toolset)
            self._order.move_to_end(id(toolset))

    def drop(self, toolset: Toolset) -> None:
        with self._lock:
            ref = self._order.get(id(toolset))
            if ref is not None and ref() in (toolset, None):
                del self._order[id(toolset)]

    def _snapshot(self) -> list[Toolset]:
        """The registered toolsets still alive, least recently used first (forgetting the collected ones)."""
        with self._lock:
            alive = [(key, ref()) for key, ref in self._order.items()]
            for key, toolset in alive:
                if toolset is None:
                    del self._order[key]
            return [toolset for _, toolset in alive if toolset is not None]

    def make_room(self, starting: Toolset) -> None:
        """Before ``starting`` forks a worker: stop the least recently used idle workers of other toolsets
        until one more fits under the cap. Busy toolsets (in a call, their lock held) and toolsets past
        the replay limit (their state could not be restored) are passed over."""
        running = [t for t in self._snapshot() if t is not starting and t._worker is not None]
        excess = len(running) + 1 - max_live_workers()
        for toolset in running:
            if excess <= 0:
                return
            if toolset._replay is None or not toolset._lock.acquire(blocking=False):
                continue
            try:
                if toolset._worker is not None:
                    toolset._stop_worker()
                    self.stopped += 1
                    excess -= 1
            finally:
                toolset._lock.release()


LIVE_WORKERS = _LiveWorkers()


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
    """Tools by name, with validation, per-call time and memory limits, an output cap and per-reply caps.

    ``tools`` may hold ``Tool`` objects or plain functions (wrapped with ``@tool``). Duplicate names
    raise ``ValueError``. The limits and their defaults are described in the module docstring:
    ``timeout_s`` (5 s; ``None``: inline, no limit), ``max_output_chars`` (4096), ``isolation``
    (``"process"``, or ``"thread"``), ``max_memory_bytes`` (1 GiB; ``None``: no limit),
    ``max_calls_per_reply`` (32) and ``max_message_chars`` (16,384) (``None``: no cap).

    A toolset may be used from several threads: calls on one toolset run one at a time.
    """

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]], timeout_s: float | None = 5.0,
                 max_output_chars: int = 4096, *, isolation: Isolation = "process",
                 max_memory_bytes: int | None = 1 << 30, max_calls_per_reply: int | None = 32,
                 max_message_chars: int | None = 16_384):
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive or None, got {timeout_s}")
        if max_output_chars < 1:
            raise ValueError(f"max_output_chars must be >= 1, got {max_output_chars}")
        if isolation not in ("process", "thread"):
            raise ValueError(f"isolation must be 'process' or 'thread', got {isolation!r}")
        for name, value in (("max_memory_bytes", max_memory_bytes), ("max_calls_per_reply", max_calls_per_reply),
                            ("max_message_chars", max_message_chars)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        self.timeout_s = timeout_s
        self.max_output_chars = max_output_chars
        self.isolation: Isolation = isolation
        self.max_memory_bytes = max_memory_bytes
        self.max_calls_per_reply = max_calls_per_reply
        self.max_message_chars = max_message_chars
        self._tools: dict[str, Tool] = {}
        for t in tools:
            t = t if isinstance(t, Tool) else tool(t)
            if t.name in self._tools:
                raise ValueError(f"duplicate tool name {t.name!r}")
            self._tools[t.name] = t
        self._replay: list[tuple[Tool, bytes]] | None = []
        self._init_worker_state()

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
        new = _copy(self)
        new._tools = {n: self._tools[n] for n in names}
        return new

    def renamed(self, names: Mapping[str, str]) -> Toolset:
        """A toolset (same kind, same limits, same order) whose tools answer to new names: ``names`` maps
        old to new; tools it leaves out keep theirs. The schemas and functions are shared, not rebuilt."""
        unknown = [n for n in names if n not in self._tools]
        if unknown:
            raise KeyError(f"unknown tools {unknown}; available: {', '.join(self.names)}")
        tools = [t.renamed(names[t.name]) if t.name in names else t for t in self._tools.values()]
        new = _copy(self)
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

    # -- copies and pickling: a copy gets its own worker (none yet) and the calls to replay ------------------
    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in _WORKER_STATE}
        replay = state.get("_replay")
        state["_replay"] = list(replay) if replay is not None else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_replay", [])
        self._init_worker_state()

    def close(self) -> None:
        """Stop this toolset's worker process now, if it has one (also done when it is collected); the
        next call starts a new one. Subclasses close their connections here."""
        self._stop_worker()

    def stop_worker(self) -> None:
        """Stop this toolset's worker process now, if it has one; the next call starts a new one. Unlike
        ``close`` it keeps the connections a subclass holds (an MCP server's, shared by other toolsets)."""
        self._stop_worker()

    # -- checking and running ------------------------------------------------------------------------------
    def validate(self, call: ToolCall) -> str | None:
        """``None`` if ``call`` names a tool here with valid arguments, else an error text for the model."""
        name = getattr(call, "name", None)
        if not isinstance(name, str) or name not in self._tools:
            return self._unknown(name)
        return self._tools[name].validate(call.arguments)

    def execute(self, call: ToolCall) -> ToolResult:
        """Validate and run one call; every failure is a ``ToolResult`` with ``error`` set (its text cut at
        the error limit). Only ``KeyboardInterrupt`` is raised: see ``_run``."""
        name = getattr(call, "name", None)
        name = name if isinstance(name, str) else repr(name)
        error = self.validate(call)
        if error is None:
            try:
                result = self._run(self._tools[name], dict(call.arguments))
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001 - a bug in a subclass's _run must still not reach the rollout
                result = ToolResult(name, error=_exception_text(name, e, self._error_chars))
            error = result.error
            if error is None or len(error) <= self._error_chars:
                return result
        return ToolResult(name, error=_cut(error, self._error_chars))

    def execute_all(self, calls: Iterable[ToolCall], max_calls: int | None = None,
                    max_message_chars: int | None = None) -> list[ToolResult]:
        """Run calls one after another, in order (later calls may depend on state earlier ones changed).

        At most ``max_calls`` run (and at most the toolset's ``max_calls_per_reply``); if there are more,
        they are not run and one more result, named ``invalid_call``, says so: the list then has one item
        more than the calls that ran. A result whose message item would take the tool message past
        ``max_message_chars`` characters (and the toolset's own limit) is replaced by a short error (the
        call did run). ``None``: only the toolset's limit.
        """
        cap = _smaller(self.max_calls_per_reply, max_calls)
        budget = _smaller(self.max_message_chars, max_message_chars)
        calls = iter(calls)
        taken = list(calls) if cap is None else list(itertools.islice(calls, cap))
        skipped = 0 if cap is None else sum(1 for _ in calls)
        results, used = [], 2  # the brackets of the JSON list
        for call in taken:
            result = self.execute(call)
            if budget is not None:
                size = len(json.dumps(result.to_message_item(), ensure_ascii=False)) + 2  # ", " between items
                if used + size > budget:
                    result = _withheld(result.name, budget)
                    size = len(json.dumps(result.to_message_item(), ensure_ascii=False)) + 2
                used += size
            results.append(result)
        if skipped:
            total = len(taken) + skipped
            results.append(ToolResult("invalid_call", error=f"too many calls: {total} in one reply; the first "
                                      f"{len(taken)} ran and the other {skipped} did not (at most {cap} calls "
                                      f"per reply)"))
        return results

    @staticmethod
    def tool_message(results: Iterable[ToolResult]) -> dict[str, str]:
        """See ``tools.toolset.tool_message``."""
        return tool_message(results)

    # -- internals ---------------------------------------------------------------------------------------
    @property
    def _error_chars(self) -> int:
        return max(self.max_output_chars, _MIN_ERROR_CHARS)

    def _unknown(self, name: Any) -> str:
        listed = self.names[:_MAX_LISTED_NAMES]
        more = f" (and {len(self.names) - len(listed)} more)" if len(self.names) > len(listed) else ""
        available = ", ".join(listed) + more if listed else "none"
        return f"unknown tool {name!r}; available tools: {available}"

    def _run(self, t: Tool, arguments: dict[str, Any]) -> ToolResult:
        """Call the tool's function under the limits, then check its result.

        Inline (``timeout_s=None``) every exception becomes an error result except ``KeyboardInterrupt``:
        in the caller's own thread a tool raising it cannot be told from the user's Ctrl-C, which must
        still stop the run. In a worker process or thread it can only come from the tool (a worker
        ignores SIGINT; signals reach the main thread only), so there it is an error result too.
        """
        if t.fn is None:
            return ToolResult(t.name, error=f"{t.name}: tool has no implementation here")
        if self.timeout_s is None:
            try:
                value = t.fn(**arguments)
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001 - SystemExit & co. must not end the rollout
                return ToolResult(t.name, error=_exception_text(t.name, e, self._error_chars))
            return self._result(t.name, value)
        if self.isolation == "process" and _worker.CAN_FORK:
            return self._run_in_worker(t, arguments)
        return self._run_in_thread(t, arguments)

    def _run_in_thread(self, t: Tool, arguments: dict[str, Any]) -> ToolResult:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = t.fn(**arguments)  # type: ignore[misc]
            except BaseException as e:  # noqa: BLE001 - reported to the caller, this thread ends here
                box["error"] = e

        thread = threading.Thread(target=target, name=f"tool-{t.name}", daemon=True)
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():
            return ToolResult(t.name, error=f"{t.name}: timed out after {self.timeout_s:g} s")
        if "error" in box:
            return ToolResult(t.name, error=_exception_text(t.name, box["error"], self._error_chars))
        return self._result(t.name, box.get("value"))

    def _result(self, name: str, value: Any) -> ToolResult:
        """Check that ``value`` is JSON within the output cap; return it as plain JSON data."""
        text, error = self._encode(name, value)
        if error is not None:
            return ToolResult(name, error=error)
        return ToolResult(name, content=json.loads(text))  # type: ignore[arg-type]

    def _encode(self, name: str, value: Any) -> tuple[str | None, str | None]:
        """(JSON text, None) for a value within the output cap, else (None, error text)."""
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as e:
            return None, _cut(f"{name}: result is not JSON-serialisable ({type(value).__name__}: {e})",
                              self._error_chars)
        if len(text) > self.max_output_chars:
            return None, (f"{name}: output too large: {len(text)} characters (limit {self.max_output_chars}); "
                          f"ask for less")
        return text, None

    # -- the worker process (see tools.worker) -------------------------------------------------------------
    def _init_worker_state(self) -> None:
        self._lock = threading.Lock()
        self._worker: _worker.Worker | None = None
        self._finalizer: weakref.finalize | None = None

    def _stop_worker(self) -> str:
        """Kill the worker (if any) and wait for it: how it ended."""
        worker, finalizer = self._worker, self._finalizer
        self._worker = self._finalizer = None
        LIVE_WORKERS.drop(self)
        if finalizer is not None:
            finalizer.detach()
        return worker.kill() if worker is not None else "not started"

    def _run_in_worker(self, t: Tool, arguments: dict[str, Any]) -> ToolResult:
        try:
            request = pickle.dumps((t.name, arguments), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - a caller's odd argument object
            return ToolResult(t.name, error=f"{t.name}: the arguments cannot be passed to the tool's process "
                                            f"({type(e).__name__})")
        max_bytes = 4 * max(self.max_output_chars, self._error_chars) + 64
        with self._lock:
            sent = time.monotonic()
            try:
                problem = self._start_worker()
                if problem is not None:
                    return ToolResult(t.name, error=f"{t.name}: {problem}")
                assert self._worker is not None
                sent = time.monotonic()
                self._worker.send(request)
                reply = self._worker.receive(self.timeout_s, max_bytes)
            except _worker.Gone:
                how = self._stop_worker()
                if time.monotonic() - sent >= self.timeout_s:  # ended by its own backstop, after the limit
                    return ToolResult(t.name, error=f"{t.name}: timed out after {self.timeout_s:g} s")
                return ToolResult(t.name, error=f"{t.name}: the tool's process ended ({how}); the call had no "
                                                f"effect")
            except BaseException:  # Ctrl-C while waiting: the worker's state is unknown, end it
                self._stop_worker()
                raise
            if reply is None:
                self._stop_worker()
                return ToolResult(t.name, error=f"{t.name}: timed out after {self.timeout_s:g} s")
            self._record(t, request)
            LIVE_WORKERS.touch(self)
        body = reply[1:].decode("utf-8", "surrogatepass")
        if reply[:1] == _RESULT:
            return ToolResult(t.name, content=json.loads(body))
        return ToolResult(t.name, error=body)

    def _start_worker(self) -> str | None:
        """Make sure a worker runs, replaying the completed calls into a new one; an error text if the
        replay failed (the calls from the failed one on are then forgotten)."""
        if self._worker is not None and self._worker.alive:
            return None
        replay = list(self._replay or ())
        LIVE_WORKERS.make_room(self)
        worker = _worker.Worker(lambda connection: self._serve(connection, replay), self.max_memory_bytes)
        self._worker = worker
        LIVE_WORKERS.touch(self)
        self._finalizer = weakref.finalize(self, worker.kill, False)
        for k, (t, _) in enumerate(replay):
            try:
                reply = worker.receive(self.timeout_s, 16)
            except _worker.Gone:
                reply = b""
            if reply != _REPLAYED:
                ended = self._stop_worker()
                how = "timed out" if reply is None else f"ended its process ({ended})"
                del self._replay[k:]  # type: ignore[index]
                return (f"could not restore the tools' state: replaying call {k + 1} of {len(replay)} "
                        f"({t.name}) {how}; the calls from that one on are forgotten")
        return None

    def _record(self, t: Tool, request: bytes) -> None:
        """Remember a completed call for replay. Past ``_MAX_REPLAY`` calls (a long-lived toolset, not an
        episode's) replay stops: a replacement worker then starts from the toolset as it was built."""
        if self._replay is not None:
            self._replay.append((t, request))
            if len(self._replay) > _MAX_REPLAY:
                self._replay = None

    def _serve(self, connection: Connection, replay: list[tuple[Tool, bytes]]) -> None:
        """The worker's loop (in the child): replay, then answer calls until the pipe closes."""
        for t, request in replay:
            self._call(t, pickle.loads(request)[1])
            connection.send_bytes(_REPLAYED)
        while True:
            try:
                request = connection.recv_bytes()
            except (EOFError, OSError):
                return
            name, arguments = pickle.loads(request)
            kind, text = self._call(self._tools[name], arguments, name)
            try:
                data = kind + text.encode("utf-8", "surrogatepass")
            except BaseException:  # noqa: BLE001 - MemoryError
                data = _ERROR + f"{name}: the result could not be sent".encode()
            connection.send_bytes(data)

    def _call(self, t: Tool, arguments: dict[str, Any], name: str | None = None) -> tuple[bytes, str]:
        name = name or t.name
        if self.timeout_s is not None:
            _worker.arm(self.timeout_s)
        try:
            text, error = self._encode(name, t.fn(**arguments))  # type: ignore[misc]
        except BaseException as e:  # noqa: BLE001 - SystemExit, MemoryError, KeyboardInterrupt: all results
            return _ERROR, _exception_text(name, e, self._error_chars)
        finally:
            if self.timeout_s is not None:
                _worker.disarm()
        return (_RESULT, text) if error is None else (_ERROR, error)  # type: ignore[return-value]


def _smaller(a: int | None, b: int | None) -> int | None:
    return a if b is None else b if a is None else min(a, b)


def _copy(toolset: Toolset) -> Toolset:
    new = object.__new__(type(toolset))
    new.__setstate__(toolset.__getstate__())
    return new


def _cut(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and a note of its length."""
    if len(text) <= limit:
        return text
    note = f" ... [cut: {len(text)} characters, limit {limit}]"
    return text[: max(limit - len(note), 0)] + note


def _exception_text(name: str, error: BaseException, limit: int) -> str:
    try:
        message = str(error)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails
        message = "<the message could not be read>"
    text = f"{name}: {type(error).__name__}: {message}" if message else f"{name}: {type(error).__name__}"
    return _cut(text, limit)


def _withheld(name: str, budget: int) -> ToolResult:
    short = name if len(name) <= _ERROR_NAME_CHARS else name[:_ERROR_NAME_CHARS] + "..."
    return ToolResult(short, error=f"{short}: result withheld: the tool message is limited to {budget} "
                                   f"characters; make fewer calls per reply or ask for less")
