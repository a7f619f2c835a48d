"""Read users' tool-calling data into one normalised shape, one record at a time.

Users bring tool-calling data in whatever shape their source wrote it. ``iter_samples`` reads a file of it
lazily (JSONL, a JSON array, either gzipped) and yields ``ToolCallSample``: OpenAI function tools and OpenAI
chat messages, whatever the input format, so that environments and trainers deal with one shape only.

Formats (``docs/data-formats.md`` has the field names, where they come from, and an example of each):

* ``openai``: ``{"messages": [...], "tools": [...]}`` per record, as Hugging Face ``datasets``, TRL and
  verifiers read it. ``tools`` may be a JSON string, its entries bare function schemas or
  ``{"type": "function", "function": {...}}``; call arguments may be a JSON string.
* ``toolace``: the ToolACE release (``Team-ACE/ToolACE``): ``system`` (a text holding the tool list as JSON)
  and ``conversations`` (``{"from", "value"}`` turns; assistant calls written as pythonic call lists).
* ``tool_n1``: the splits CHORD trained on (Trinity-RFT, processed the Tool-N1 way): RL tasks
  ``{"raw_system", "tools", "conversations", "answer"}`` and SFT samples ``{"messages"}`` whose assistant
  text is ``<think>...</think><tool_call>[...]</tool_call>`` with the tools in the system prompt (Tool-N1's
  LLaMA-Factory shape ``{"system_prompt", "query", "output"}`` too).
* ``auto``: the format of the first readable record's keys, for the whole file.

A broken record never stops the reading unless asked to: its problem is one line
``path:line: <field>: <what is wrong>``; ``on_error="raise"`` raises it as ``DataFormatError``,
``on_error="skip"`` (the default) logs it (the first ``MAX_REPORTED_ERRORS``), counts it and goes on, and
a summary line is logged at the end. Data and model text are parsed, never evaluated: JSON and literal
pythonic call lists only.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import jsonschema

from envs.toolcalls.records import RecordError, json_loads, open_binary, records
from tools.calls import ToolCall, ToolCallParseError, looks_like_calls, parse_json_calls, parse_pythonic
from tools.schema import is_call_name, json_type_name, normalize_schema

__all__ = ["FORMATS", "MAX_REPORTED_ERRORS", "DataFormatError", "LoadReport", "ToolCallSample", "detect_format",
           "iter_samples", "load_samples", "main"]

log = logging.getLogger(__name__)

Format = Literal["auto", "openai", "toolace", "tool_n1"]
OnError = Literal["skip", "raise"]
#: the formats ``iter_samples`` reads (``auto`` picks one of the others per file)
FORMATS: tuple[str, ...] = ("auto", "openai", "toolace", "tool_n1")
#: broken records logged one by one (and kept in ``LoadReport.errors``); the rest are only counted
MAX_REPORTED_ERRORS = 20

_ROLES = ("system", "user", "assistant", "tool")
_SPEAKERS = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "tool": "tool",
             "observation": "tool", "function_response": "tool", "system": "system"}
_SHOWN_NAMES = 10  # offered tool names listed in an error message


class DataFormatError(ValueError):
    """A record that cannot be read: ``str(error)`` is ``path:line: <what is wrong, naming the field>``."""

    def __init__(self, path: str, line: int, problem: str):
        self.path, self.line, self.problem = path, line, problem
        super().__init__(f"{path}:{line}: {problem}")


@dataclasses.dataclass(frozen=True)
class ToolCallSample:
    """One conversation with the tools it may use, in OpenAI's shapes whatever the file's format.

    * ``id``: the record's own id when it has one, else ``"<file name>:<line>"``;
    * ``tools``: ``{"type": "function", "function": {"name", "description", "parameters"}}``, parameters
      a JSON schema of type object (ToolACE's ``dict``/``float`` dialect mapped to JSON schema);
    * ``messages``: ``system``/``user`` ``{"role", "content": str}``; ``assistant`` ``{"role", "content":
      str | None, "tool_calls"?: [{"id"?, "type": "function", "function": {"name", "arguments": dict}}],
      "reasoning"?: str}``; ``tool`` ``{"role", "name", "content": str, "tool_call_id"?}``;
    * ``source``: ``"path:line"``, where the record starts;
    * ``meta``: ``{"format": ...}`` and what a format adds (``tool_n1``: ``split`` is ``rl`` or ``sft``;
      for ``rl`` the last message is the task's answer, the calls to reward, not an expert's turn).
    """

    id: str
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    source: str
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def calls(self) -> list[ToolCall]:
        """Every assistant call, in order."""
        return [call for turn in self.turn_calls() for call in turn]

    def turn_calls(self) -> list[list[ToolCall]]:
        """The assistant calls per user turn (a turn is a user message and what follows it up to the next)."""
        turns: list[list[ToolCall]] = []
        for m in self.messages:
            if m["role"] == "user":
                turns.append([])
            elif m.get("tool_calls"):
                if not turns:  # calls before any user message (a conversation that opens with them)
                    turns.append([])
                turns[-1].extend(ToolCall(c["function"]["name"], c["function"]["arguments"]) for c in m["tool_calls"])
        return turns


@dataclasses.dataclass
class LoadReport:
    """What reading one file gave: records read, samples loaded, records skipped, the first problems."""

    path: str
    format: str | None = None
    read: int = 0
    loaded: int = 0
    skipped: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.path}: {self.loaded} sample(s) loaded, {self.skipped} skipped of {self.read} record(s) "
                f"read (format {self.format or 'unknown'})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the public functions ----------------------------------------------------------------------------------

def iter_samples(path: str | os.PathLike[str], format: Format = "auto", on_error: OnError = "skip",
                 report: LoadReport | None = None) -> Iterator[ToolCallSample]:
    """Yield the samples of the file at ``path`` one by one, reading only as far as the consumer asks.

    ``format``: ``openai``, ``toolace``, ``tool_n1`` or ``auto`` (the first readable record decides; a later
    record of another shape is an error of that record). ``on_error``: ``raise`` a ``DataFormatError`` at
    the first broken record, or ``skip`` it (logged, counted) and go on. ``report``, when given, is filled
    as the reading goes (``load_samples`` returns one). The arguments and the file's existence are checked
    at once; the reading itself starts with the first ``next()``.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    path_text = os.fspath(path)
    if not Path(path_text).is_file():
        raise FileNotFoundError(f"no such data file: {path_text}")
    return _iterate(path_text, format, on_error, report if report is not None else LoadReport(path_text))


def load_samples(path: str | os.PathLike[str], format: Format = "auto", on_error: OnError = "skip",
                 limit: int | None = None) -> tuple[list[ToolCallSample], LoadReport]:
    """All samples of the file (the first ``limit`` with a limit) and the report of the reading."""
    report = LoadReport(os.fspath(path))
    samples: list[ToolCallSample] = []
    if limit is not None and limit <= 0:
        return samples, report
    iterator = iter_samples(path, format, on_error, report)
    try:
        for sample in iterator:
            samples.append(sample)
            if limit is not None and len(samples) >= limit:
                break
    finally:
        iterator.close()  # type: ignore[attr-defined]
    return samples, report


def detect_format(record: Any) -> str:
    """The format a record's keys say it is in (``openai``, ``toolace`` or ``tool_n1``); ``ValueError``
    naming the keys when they say none."""
    try:
        return _detect(record)
    except RecordError as e:
        raise ValueError(str(e)) from None


# -- the reading loop ----------------------------------------------------------------------------------------

def _iterate(path: str, fmt: str, on_error: str, report: LoadReport) -> Iterator[ToolCallSample]:
    name = Path(path).name
    chosen: str | None = None if fmt == "auto" else fmt
    detected_at: int | None = None
    report.format = chosen
    try:
        with open_binary(path) as f:
            for line, value, problem in records(f):
                report.read += 1
                try:
                    if problem is not None:
                        raise RecordError(problem)
                    if not isinstance(value, dict):
                        raise RecordError(f"a record must be a JSON object, got {_kind(value)}")
                    if chosen is None:
                        chosen, detected_at = _detect(value), line
                        report.format = chosen
                    sample = _parse_record(value, chosen, detected_at, name, path, line)
                except RecordError as e:
                    error = DataFormatError(path, line, str(e))
                    if on_error == "raise":
                        raise error from None
                    _note_skip(report, str(error))
                    continue
                report.loaded += 1
                yield sample
    finally:
        if report.skipped:
            log.warning("%s", report.summary())


def _note_skip(report: LoadReport, message: str) -> None:
    report.skipped += 1
    if len(report.errors) < MAX_REPORTED_ERRORS:
        report.errors.append(message)
        log.warning("skipped %s", message)
    elif report.skipped == MAX_REPORTED_ERRORS + 1:
        log.warning("%s: more broken records; only the first %d are shown, the rest are counted",
                    report.path, MAX_REPORTED_ERRORS)


def _shapes(record: dict[str, Any]) -> tuple[str, ...]:
    """The formats whose records have these keys, the likeliest first (``()``: none)."""
    keys = set(record)
    if "conversations" in keys and ("answer" in keys or "raw_system" in keys):
        return ("tool_n1",)
    if "conversations" in keys and "system" in keys:
        return ("toolace",)
    if {"system_prompt", "query", "output"} <= keys:
        return ("tool_n1",)
    if "messages" in keys:
        return ("tool_n1", "openai") if _tagged_calls(record["messages"]) else ("openai", "tool_n1")
    return ()


def _detect(record: Any) -> str:
    if not isinstance(record, dict):
        raise RecordError(f"a record must be a JSON object, got {_kind(record)}")
    shapes = _shapes(record)
    if not shapes:
        keys = ", ".join(sorted(record)[:12]) or "none"
        raise RecordError(f"cannot tell the format from the keys ({keys}): expected \"messages\" (openai), \"system\" "
                   f"and \"conversations\" (toolace), or \"conversations\" and \"answer\", or \"messages\" with "
                   f"<tool_call> text (tool_n1)")
    return shapes[0]


def _tagged_calls(messages: Any) -> bool:
    """Do these messages carry their calls as ``<tool_call>`` text (Tool-N1) rather than ``tool_calls``?"""
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except ValueError:
            return False
    if not isinstance(messages, list):
        return False
    dicts = [m for m in messages if isinstance(m, dict)]
    if any(m.get("tool_calls") for m in dicts):
        return False
    return any(m.get("role") == "assistant" and isinstance(m.get("content"), str) and "<tool_call>" in m["content"]
               for m in dicts)


def _parse_record(record: dict[str, Any], fmt: str, detected_at: int | None, name: str, path: str,
                  line: int) -> ToolCallSample:
    shapes = _shapes(record)
    if shapes and fmt not in shapes:
        how = f"detected from line {detected_at}" if detected_at is not None else "as asked"
        raise RecordError(f"this record has the keys of {shapes[0]} data, but the file is read as {fmt} ({how})")
    tools, messages, meta = _PARSERS[fmt](record)
    raw_id = record.get("id")
    if fmt != "tool_n1" and isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and str(raw_id):
        sample_id = str(raw_id)
    else:
        sample_id = f"{name}:{line}"
        if fmt == "tool_n1" and isinstance(raw_id, str):  # Tool-N1's "id" names a subset, not a sample
            meta["category"] = raw_id
    return ToolCallSample(sample_id, tools, messages, f"{path}:{line}", {"format": fmt, **meta})


# -- tools -----------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8192)
def _schema_problem(schema_json: str) -> str | None:
    """Draft 2020-12's metaschema check (as ``tools.schema`` does), cached by the schema's JSON text."""
    try:
        jsonschema.Draft202012Validator.check_schema(json.loads(schema_json))
    except jsonschema.SchemaError as e:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        return f"{where.lstrip('.')}: {e.message}" if where else e.message
    return None


def _parse_tools(raw: Any, where: str) -> list[dict[str, Any]]:
    """OpenAI function tools from a list (or its JSON text) of tools in either spelling; ``RecordError`` names the
    tool and field that is wrong."""
    if isinstance(raw, str):
        raw = json_loads(raw, where)
    if not isinstance(raw, list):
        raise RecordError(f"{where}: must be a list of tools, got {_kind(raw)}")
    tools: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise RecordError(f"{w}: a tool must be an object, got {_kind(entry)}")
        fn, fw = entry, w
        if "function" in entry:
            fn, fw = entry["function"], f"{w}.function"
            if not isinstance(fn, dict):
                raise RecordError(f"{fw}: must be an object, got {_kind(fn)}")
            if entry.get("type", "function") != "function":
                raise RecordError(f"{w}.type: must be \"function\", got {_short(entry.get('type'))}")
        name = fn.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RecordError(f"{fw}.name: missing, or not a non-empty string")
        description = fn.get("description")
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise RecordError(f"{fw}.description: must be a string, got {_kind(description)}")
        tool = {"type": "function", "function": {"name": name, "description": description,
                                                 "parameters": _parameters(fn.get("parameters"), f"{fw}.parameters")}}
        if name in seen:
            if seen[name] != tool:
                raise RecordError(f"{fw}.name: tool {name!r} is offered twice with different definitions")
            continue
        seen[name] = tool
        tools.append(tool)
    return tools


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None or raw == {}:
        return {"type": "object", "properties": {}}
    if not isinstance(raw, dict):
        raise RecordError(f"{where}: must be a JSON schema object, got {_kind(raw)}")
    try:
        schema = normalize_schema(raw)
    except (ValueError, RecursionError) as e:
        raise RecordError(f"{where}: invalid JSON schema: {e}") from None
    if "type" not in schema:
        schema = {"type": "object", **schema}
    if schema["type"] != "object":
        raise RecordError(f"{where}.type: the parameters must be a schema of type object (or dict), "
                   f"got {_short(raw.get('type'))}")
    schema.setdefault("properties", {})
    try:
        problem = _schema_problem(json.dumps(schema, sort_keys=True))
    except (TypeError, ValueError, RecursionError) as e:
        problem = str(e)
    if problem is not None:
        raise RecordError(f"{where}: invalid JSON schema: {problem}")
    return schema


def _names(tools: list[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools]


def _check_offered(name: str, offered: list[str], where: str) -> None:
    if name not in offered:
        shown = ", ".join(offered[:_SHOWN_NAMES]) + (" ..." if len(offered) > _SHOWN_NAMES else "")
        raise RecordError(f"{where}: tool {name!r} is not offered (offered: {shown or 'none'})")


# -- calls and results (shared by the formats) -----------------------------------------------------------------

def _call(raw: Any, where: str, offered: list[str]) -> dict[str, Any]:
    """One call, ``{"id"?, "type": "function", "function": {...}}`` or bare ``{"name", "arguments"}``, to the
    normalised form; arguments given as JSON text are decoded and must be an object."""
    if not isinstance(raw, dict):
        raise RecordError(f"{where}: a call must be an object, got {_kind(raw)}")
    fn, fw = raw, where
    if "function" in raw:
        fn, fw = raw["function"], f"{where}.function"
        if not isinstance(fn, dict):
            raise RecordError(f"{fw}: must be an object with \"name\" and \"arguments\", got {_kind(fn)}")
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RecordError(f"{fw}.name: missing, or not a non-empty string")
    arguments = fn.get("arguments")
    if isinstance(arguments, str):
        arguments = json_loads(arguments, f"{fw}.arguments") if arguments.strip() else {}
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise RecordError(f"{fw}.arguments: must be a JSON object of argument names and values, got {_kind(arguments)}")
    _check_offered(name, offered, f"{fw}.name")
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if isinstance(raw.get("id"), str) and raw["id"]:
        call = {"id": raw["id"], **call}
    return call


def _from_tool_calls(calls: list[ToolCall], offered: list[str], where: str) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        _check_offered(c.name, offered, f"{where} (call {i + 1}, {c.name})")
        out.append({"type": "function", "function": {"name": c.name, "arguments": c.arguments}})
    return out


class _Pending:
    """The calls of the last assistant turn, for naming (and linking) the tool results that follow."""

    def __init__(self, calls: list[dict[str, Any]] | None = None):
        self.calls = [(c["function"]["name"], c.get("id")) for c in calls or ()]
        self.used = [False] * len(self.calls)

    def take(self, name: str | None = None, call_id: str | None = None) -> tuple[str, str | None] | None:
        """Mark answered and return the first unanswered call with this id, else with this name, else (no
        name given) the next one in order; ``None`` when there is none."""
        def first(match: Callable[[str, str | None], bool]) -> tuple[str, str | None] | None:
            for k, (n, i) in enumerate(self.calls):
                if not self.used[k] and match(n, i):
                    self.used[k] = True
                    return n, i
            return None

        if call_id:
            hit = first(lambda n, i: i == call_id)
            if hit is not None:
                return hit
        if name:
            return first(lambda n, i: n == name)
        return first(lambda n, i: True)


def _tool_result_messages(value: str, pending: _Pending, where: str) -> list[dict[str, Any]]:
    """A ToolACE-style tool turn (JSON list of ``{"name", "results"}``) as one ``tool`` message per result,
    each named after its call (by the result's name, else by order)."""
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not (isinstance(parsed, list) and parsed and all(isinstance(p, dict) for p in parsed)):
        paired = pending.take()
        if paired is None:
            raise RecordError(f"{where}: a tool result with no assistant call before it to answer")
        return [_tool_message(paired[0], value, paired[1])]
    out = []
    for k, item in enumerate(parsed):
        given = item.get("name") if isinstance(item.get("name"), str) and item.get("name") else None
        paired = pending.take(given)
        name = given or (paired[0] if paired else None)
        if name is None:
            raise RecordError(f"{where}[{k}]: a result without \"name\", and no assistant call before it to pair it with")
        body = item["results"] if "results" in item else {k2: v for k2, v in item.items() if k2 != "name"}
        out.append(_tool_message(name, body, paired[1] if paired else None))
    return out


def _tool_message(name: str, body: Any, call_id: str | None) -> dict[str, Any]:
    content = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    message: dict[str, Any] = {"role": "tool", "name": name, "content": content}
    if call_id:
        message["tool_call_id"] = call_id
    return message


# -- openai ---------------------------------------------------------------------------------------------------

def _parse_openai(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    if "messages" not in record:
        raise RecordError('missing field "messages"')
    tools = _parse_tools(record["tools"], "tools") if record.get("tools") is not None else []
    return tools, _messages(record["messages"], _names(tools), tagged=False), {}


def _content(raw: Any, where: str) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, list):  # content parts: text only
        texts = []
        for i, part in enumerate(raw):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise RecordError(f"{where}[{i}]: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported")
        return "".join(texts)
    raise RecordError(f"{where}: must be a string, got {_kind(raw)}")


def _is_parts(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(p, dict) and "type" in p for p in value)


def _messages(raw: Any, offered: list[str], tagged: bool, where: str = "messages") -> list[dict[str, Any]]:
    """OpenAI chat messages, checked and normalised; ``tagged``: assistant text may hold Tool-N1's
    ``<think>``/``<tool_call>`` blocks, which become ``reasoning`` and ``tool_calls``."""
    if isinstance(raw, str):
        raw = json_loads(raw, where)
    if not isinstance(raw, list):
        raise RecordError(f"{where}: must be a list of messages, got {_kind(raw)}")
    if not raw:
        raise RecordError(f"{where}: is empty")
    out: list[dict[str, Any]] = []
    pending = _Pending()
    for i, m in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(m, dict):
            raise RecordError(f"{w}: a message must be an object, got {_kind(m)}")
        role = m.get("role")
        if role not in _ROLES:
            raise RecordError(f"{w}.role: must be one of {', '.join(_ROLES)}, got {_short(role)}")
        raw_content = m.get("content")
        if role == "tool" and isinstance(raw_content, dict | list) and not _is_parts(raw_content):
            raw_content = json.dumps(raw_content, ensure_ascii=False)  # a result given as JSON, not text
        content = _content(raw_content, f"{w}.content")
        message: dict[str, Any] = {"role": role, "content": content}
        if isinstance(m.get("name"), str) and m["name"]:
            message["name"] = m["name"]
        if role in ("system", "user"):
            if content is None:
                raise RecordError(f"{w}.content: a {role} message needs text content")
        elif role == "assistant":
            reasoning = m.get("reasoning_content", m.get("reasoning"))
            if isinstance(reasoning, str) and reasoning:
                message["reasoning"] = reasoning
            raw_calls = m.get("tool_calls")
            calls: list[dict[str, Any]] = []
            if raw_calls is not None and not isinstance(raw_calls, list):
                raise RecordError(f"{w}.tool_calls: must be a list, got {_kind(raw_calls)}")
            if raw_calls:
                calls = [_call(c, f"{w}.tool_calls[{j}]", offered) for j, c in enumerate(raw_calls)]
            elif tagged and content is not None and ("<tool_call>" in content or "<think>" in content):
                message["content"], thought, calls = _tagged_reply(content, offered, f"{w}.content")
                if thought is not None:
                    message["reasoning"] = thought
            if calls:
                message["tool_calls"] = calls
                pending = _Pending(calls)
            elif message["content"] is None:
                raise RecordError(f"{w}: an assistant message needs content or tool_calls")
        else:  # tool
            name = message.pop("name", None)
            call_id = m.get("tool_call_id") if isinstance(m.get("tool_call_id"), str) else None
            paired = pending.take(name, call_id)
            if name is None:
                if paired is None:
                    raise RecordError(f"{w}.name: missing, and no assistant call before it to take the name from")
                name = paired[0]
            message = {"role": "tool", "name": name, "content": content if content is not None else ""}
            if call_id or (paired and paired[1]):
                message["tool_call_id"] = call_id or paired[1]  # type: ignore[index]
        out.append(message)
    return out


# -- toolace ---------------------------------------------------------------------------------------------------

_TOOLS_MARKER = re.compile(r"list of functions in json format that you can invoke", re.IGNORECASE)
_MAX_LIST_TRIES = 50


def _tools_in_text(text: str, where: str) -> list[Any] | None:
    """The JSON tool list inside a system text: after ToolACE's "...in JSON format that you can invoke"
    sentence when it has one, else the first JSON list of objects with a "name" in it."""
    decoder = json.JSONDecoder()
    marker = _TOOLS_MARKER.search(text)
    if marker:
        start = text.find("[", marker.end())
        if start >= 0:
            try:
                value, _ = decoder.raw_decode(text, start)
            except ValueError as e:
                raise RecordError(f"{where}: the tool list after \"{marker.group(0)}\" is not valid JSON ({e})") from None
            return value
    start = text.find("[")
    for _ in range(_MAX_LIST_TRIES):
        if start < 0:
            break
        try:
            value, _end = decoder.raw_decode(text, start)
        except ValueError:
            value = None
        if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
            return value
        start = text.find("[", start + 1)
    return None


def _parse_toolace(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    for key in ("system", "conversations"):
        if key not in record:
            raise RecordError(f'missing field "{key}"')
    system = record["system"]
    if not isinstance(system, str):
        raise RecordError(f"system: must be a string, got {_kind(system)}")
    listed = _tools_in_text(system, "system")
    if listed is None:
        raise RecordError("system: no JSON list of tools in the text (ToolACE lists them after \"Here is a list of "
                   "functions in JSON format that you can invoke:\")")
    tools = _parse_tools(listed, "system tools")
    messages = [{"role": "system", "content": system}]
    messages.extend(_conversation(record["conversations"], _names(tools)))
    return tools, messages, {}


def _conversation(raw: Any, offered: list[str], where: str = "conversations") -> list[dict[str, Any]]:
    """``{"from", "value"}`` turns to chat messages: pythonic call lists (and Tool-N1's ``function_call``
    JSON) become ``tool_calls``, JSON tool results one ``tool`` message per result."""
    if isinstance(raw, str):
        raw = json_loads(raw, where)
    if not isinstance(raw, list):
        raise RecordError(f"{where}: must be a list of turns, got {_kind(raw)}")
    out: list[dict[str, Any]] = []
    pending = _Pending()
    for i, turn in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(f"{w}: a turn must be an object with \"from\" and \"value\", got {_kind(turn)}")
        speaker, value = turn.get("from"), turn.get("value")
        if speaker != "function_call" and speaker not in _SPEAKERS:
            raise RecordError(f"{w}.from: unknown speaker {_short(speaker)} (expected user, assistant or tool)")
        if not isinstance(value, str):
            raise RecordError(f"{w}.value: must be a string, got {_kind(value)}")
        if speaker == "function_call":  # Tool-N1/Trinity: the call list as JSON text
            parsed = json_loads(value, f"{w}.value")
            items = parsed if isinstance(parsed, list) else [parsed]
            calls = [_call(c, f"{w}.value[{j}]", offered) for j, c in enumerate(items)]
            out.append({"role": "assistant", "content": None, "tool_calls": calls})
            pending = _Pending(calls)
            continue
        role = _SPEAKERS[speaker]
        if role == "assistant":
            calls = _pythonic_calls(value, offered, f"{w}.value")
            if calls is None:
                out.append({"role": "assistant", "content": value})
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": calls})
                pending = _Pending(calls)
        elif role == "tool":
            out.extend(_tool_result_messages(value, pending, f"{w}.value"))
        else:
            out.append({"role": role, "content": value})
    if not out:
        raise RecordError(f"{where}: is empty")
    return out


def _pythonic_calls(text: str, offered: list[str], where: str) -> list[dict[str, Any]] | None:
    """The calls of a pythonic call list, ``None`` for a text reply. Offered names that Python cannot
    parse (ToolACE has ``Sports Live Events``, ``get-weather``) are swapped for placeholders first."""
    swapped: dict[str, str] = {}
    for k, name in enumerate(sorted((n for n in offered if not is_call_name(n)), key=len, reverse=True)):
        if name + "(" in text:
            placeholder = f"_tool{k}_"
            while placeholder in text:
                placeholder = "_" + placeholder
            text = text.replace(name + "(", placeholder + "(")
            swapped[placeholder] = name
    if not looks_like_calls(text, "pythonic"):
        return None
    try:
        calls = parse_pythonic(text)
    except ToolCallParseError as e:
        raise RecordError(f"{where}: not a valid call list: {e}") from None
    if not calls:
        return None
    calls = [ToolCall(swapped.get(c.name, c.name), c.arguments) for c in calls]
    return _from_tool_calls(calls, offered, where)


# -- tool_n1 ---------------------------------------------------------------------------------------------------

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_TOOL_BLOCK = re.compile(r"<tool_call>.*?(?:</tool_call>|$)", re.DOTALL)
_TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)


def _tagged_reply(text: str, offered: list[str], where: str) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """Tool-N1's ``<think>...</think><tool_call>[...]</tool_call>`` text: (the other text or None, the
    reasoning or None, the calls)."""
    thought = None
    match = _THINK.search(text)
    if match:
        thought = match.group(1).strip()
        text = text[:match.start()] + text[match.end():]
    calls: list[dict[str, Any]] = []
    if "<tool_call>" in text:
        try:
            parsed = parse_json_calls(text[text.index("<tool_call>"):])
        except ToolCallParseError as e:
            raise RecordError(f"{where}: not a valid <tool_call> block: {e}") from None
        calls = _from_tool_calls(parsed, offered, where)
        text = _TOOL_BLOCK.sub("", text)
    rest = text.strip()
    return (rest or None), thought, calls


def _tools_in_prompt(text: str, where: str) -> list[dict[str, Any]] | None:
    """Tools in a Tool-N1 system prompt: a ``<tools>`` block (one JSON tool per line, as Qwen's template and
    Tool-N1 write it, or one JSON list), else a ToolACE-style list."""
    block = _TOOLS_BLOCK.search(text)
    if block:
        body = block.group(1).strip()
        if body.startswith("["):
            return _parse_tools(body, f"{where} <tools>")
        entries = [json_loads(line, f"{where} <tools> line {k + 1}")
                   for k, line in enumerate(body.splitlines()) if line.strip()]
        return _parse_tools(entries, f"{where} <tools>")
    listed = _tools_in_text(text, where)
    return _parse_tools(listed, f"{where} tools") if listed is not None else None


def _parse_tool_n1(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    if "conversations" in record:
        return _tool_n1_rl(record)
    if "messages" in record:
        return _tool_n1_sft(record)
    if {"system_prompt", "query", "output"} <= set(record):
        return _tool_n1_alpaca(record)
    raise RecordError('missing field "conversations" (RL tasks) or "messages" (SFT samples)')


def _tool_n1_rl(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    for key in ("tools", "answer"):
        if key not in record:
            raise RecordError(f'missing field "{key}"')
    tools = _parse_tools(record["tools"], "tools")
    offered = _names(tools)
    system = record.get("raw_system", record.get("system"))
    if system is not None and not isinstance(system, str):
        raise RecordError(f"raw_system: must be a string, got {_kind(system)}")
    messages = [{"role": "system", "content": system}] if system else []
    messages.extend(_conversation(record["conversations"], offered))
    answer = record["answer"]
    if isinstance(answer, str):
        answer = json_loads(answer, "answer")
    if isinstance(answer, dict):
        answer = [answer]
    if not isinstance(answer, list):
        raise RecordError(f"answer: must be a list of calls, got {_kind(answer)}")
    calls = [_call(c, f"answer[{j}]", offered) for j, c in enumerate(answer)]
    # the task's answer as the last turn; no call expected: an empty text turn
    messages.append({"role": "assistant", "content": None, "tool_calls": calls} if calls
                    else {"role": "assistant", "content": ""})
    return tools, messages, {"split": "rl"}


def _sft_tools(record: dict[str, Any], system: str | None) -> list[dict[str, Any]]:
    if record.get("tools") is not None:
        return _parse_tools(record["tools"], "tools")
    found = _tools_in_prompt(system, "system") if system else None
    return found if found is not None else []


def _tool_n1_sft(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    raw = record["messages"]
    if isinstance(raw, str):
        raw = json_loads(raw, "messages")
    first = raw[0] if isinstance(raw, list) and raw else None
    system = first.get("content") if isinstance(first, dict) and first.get("role") == "system" else None
    tools = _sft_tools(record, system if isinstance(system, str) else None)
    return tools, _messages(raw, _names(tools), tagged=True), {"split": "sft"}


def _tool_n1_alpaca(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    for key in ("system_prompt", "query", "output"):
        if not isinstance(record[key], str):
            raise RecordError(f"{key}: must be a string, got {_kind(record[key])}")
    instruction = record.get("instruction") if isinstance(record.get("instruction"), str) else ""
    user = f"{instruction}\n{record['query']}" if instruction else record["query"]
    raw = [{"role": "system", "content": record["system_prompt"]}, {"role": "user", "content": user},
           {"role": "assistant", "content": record["output"]}]
    tools = _sft_tools(record, record["system_prompt"])
    try:
        messages = _messages(raw, _names(tools), tagged=True)
    except RecordError as e:  # name the record's own field, not the messages built from it
        raise RecordError(str(e).replace("messages[2].content", "output")) from None
    return tools, messages, {"split": "sft"}


_PARSERS: dict[str, Callable[[dict[str, Any]], tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]]] = {
    "openai": _parse_openai, "toolace": _parse_toolace, "tool_n1": _parse_tool_n1,
}


# -- small helpers -------------------------------------------------------------------------------------------

def _kind(value: Any) -> str:
    """``a number``, ``an object``: ``json_type_name`` in its ``"prose"`` wording."""
    return json_type_name(value, style="prose")


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- command line --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``python -m envs.toolcalls.data FILE [--format F] [--on-error raise] [--show N]``: read a file, print
    its report as JSON (and the first ``N`` samples); exit 1 when a record is broken under ``raise``."""
    parser = argparse.ArgumentParser(prog="python -m envs.toolcalls.data", description=main.__doc__)
    parser.add_argument("path")
    parser.add_argument("--format", default="auto", choices=FORMATS)
    parser.add_argument("--on-error", default="skip", choices=("skip", "raise"))
    parser.add_argument("--show", type=int, default=0, help="print the first N samples as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    report = LoadReport(args.path)
    shown = 0
    try:
        for sample in iter_samples(args.path, args.format, args.on_error, report):
            if shown < args.show:
                print(json.dumps(dataclasses.asdict(sample), ensure_ascii=False))
                shown += 1
    except DataFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_dict(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
