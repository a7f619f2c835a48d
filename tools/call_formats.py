"""A model's own tool-call format: parse its replies and render calls exactly as its chat template does.

Models whose chat templates carry tools natively write calls in the format they were tuned on:

* ``pythonic`` (ToolACE/BFCL, chordgym's default): ``[get_weather(city='Paris')]``, the whole reply.
* ``hermes`` (Qwen2.5, Qwen3, Hermes): zero or more ``<tool_call>\\n{"name": ..., "arguments": ...}\\n
  </tool_call>`` blocks, one JSON object each, after optional text.
* ``llama3_json`` (Llama 3.1/3.2 custom tools): the whole reply, after an optional ``<|python_tag|>``, is
  ``{"name": ..., "parameters": {...}}``, several separated by ``;`` or new lines.
* ``tool_n1`` (Tool-N1, the CHORD paper): ``<think>...</think>`` then ONE ``<tool_call>`` block holding a
  JSON list of ``{"name", "arguments"}`` objects, then optional text.

``CallFormat.parse`` turns a reply into a :class:`ParsedReply` (the calls, the text outside the call
markup, the ``<think>`` body, an error) and never raises on model output (only on non-``str`` input): call
markup that is present but malformed sets ``error``, a one-line message naming what is wrong and the
expected form, meant to be shown to the model. The text is parsed with ``json``/``ast`` (literals only),
never evaluated. A leading ``<think>...</think>`` is taken off in every format before the calls are read.
``CallFormat.render`` writes calls (and optional content and thinking) exactly as the matching template in
``configs/chat_templates/`` renders an assistant message built by :func:`tool_call_message`, so training
on the template's rendering teaches exactly what ``parse`` reads back.

:func:`detect_call_format` renders a probe conversation through a tokenizer's chat template and names the
format it writes (or ``None`` when the template ignores tools); :func:`renders_tools` says whether the
template lists the tools in the prompt. :func:`openai_tool` and :func:`tool_call_message` build the
OpenAI-shape dicts that ``tokenizer.apply_chat_template(messages, tools=...)`` takes.

This module imports neither torch nor transformers: a tokenizer is only called, never imported.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.calls import (
    _JSON_FORM,
    _PYTHONIC_FORM,
    MAX_INPUT_CHARS,
    ToolCall,
    ToolCallParseError,
    _call_from_json,
    _reject_constant,
    _unfence,
    format_json,
    format_pythonic,
    looks_like_calls,
    parse_pythonic,
)
from tools.schema import Tool, _short, json_type_name, normalize_schema

__all__ = [
    "CALL_FORMATS", "CHAT_TEMPLATES_DIR", "TEMPLATE_CALL_FORMATS", "CallFormat", "ParsedReply",
    "detect_call_format", "get_call_format", "load_chat_template", "openai_tool", "renders_tools",
    "tool_call_message",
]

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_CALL_OPEN, _CALL_CLOSE = "<tool_call>", "</tool_call>"
_PYTHON_TAG = "<|python_tag|>"
_WS = " \t\r\n"
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_JSON_CALL_START_RE = re.compile(r'\{\s*"(?:name|function|type)"\s*:')  # an attempted JSON call
_JSON_LIST_START_RE = re.compile(r"\[\s*\{")


@dataclasses.dataclass(frozen=True)
class ParsedReply:
    """What a model's reply holds.

    Attributes:
        calls: the tool calls, in order; ``[]`` when there are none or when ``error`` is set (a reply with
            one malformed call is a format error as a whole, never half executed).
        content: the text outside the call markup (and outside the think block), stripped.
        think: the body of a leading ``<think>...</think>``, stripped; ``None`` when there is none.
        error: ``None``, or one line saying what is malformed and the expected form.
    """

    calls: list[ToolCall] = dataclasses.field(default_factory=list)
    content: str = ""
    think: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """No format error."""
        return self.error is None


# -- shared scanning -------------------------------------------------------------------------------------

def _one_line(message: str) -> str:
    return " ".join(message.split("\n"))


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    return i


def _decode_at(text: str, i: int, where: str) -> tuple[Any, int]:
    """The JSON value starting at ``text[i]`` and the index just past it; errors as ``ToolCallParseError``."""
    try:
        return _DECODER.raw_decode(text, i)
    except ToolCallParseError:  # NaN/Infinity, from _reject_constant
        raise
    except json.JSONDecodeError as e:
        raise ToolCallParseError(f"invalid JSON {where} ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (RecursionError, MemoryError, ValueError) as e:  # deep nesting, a 5,000-digit number
        raise ToolCallParseError(f"invalid JSON {where} ({type(e).__name__})") from None


def _kind(value: Any) -> str:
    """``a JSON number``, ``the JSON constant null``: ``json_type_name`` in its ``"decoded"`` wording."""
    return json_type_name(value, style="decoded")


def _read_block(text: str, start: int, where: str = "inside <tool_call>") -> tuple[Any, int]:
    """The JSON value of the ``<tool_call>`` block opening at ``text[start]`` and the index past its
    ``</tool_call>``. The value is decoded first and the closing tag looked for after it, so a string
    argument may hold ``</tool_call>`` itself."""
    i = _skip_ws(text, start + len(_CALL_OPEN))
    if text.startswith(_CALL_CLOSE, i):
        raise ToolCallParseError(f"empty {_CALL_OPEN} block")
    if i == len(text):
        raise ToolCallParseError(f"unclosed {_CALL_OPEN} block (no JSON and no {_CALL_CLOSE} after it)")
    try:
        value, end = _decode_at(text, i, where)
    except ToolCallParseError as e:
        if text.find(_CALL_CLOSE, i) == -1:
            raise ToolCallParseError(f"unclosed {_CALL_OPEN} block (no {_CALL_CLOSE} after it); {e}") from None
        raise
    j = _skip_ws(text, end)
    if text.startswith(_CALL_CLOSE, j):
        return value, j + len(_CALL_CLOSE)
    if j == len(text):
        raise ToolCallParseError(f"unclosed {_CALL_OPEN} block (no {_CALL_CLOSE} after its JSON)")
    raise ToolCallParseError(f"unexpected text after the JSON {where}: {_short(text[j:j + 30])}")


def _joined(pieces: Sequence[str]) -> str:
    return "\n".join(p.strip() for p in pieces if p.strip())


class _Malformed(ToolCallParseError):
    """A format error, with the text that stood outside the call markup before it."""

    def __init__(self, message: str, content: str = ""):
        super().__init__(message)
        self.content = content


# -- the formats -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CallFormat:
    """A tool-call format: ``name``, ``form`` (the expected form, as error messages name it) and the
    ``think_separator`` written between ``</think>`` and the rest of the reply.

    ``parse(render(calls, content=c, think=t))`` gives back ``calls``, ``c`` and ``t`` (stripped): ``render``
    checks it and raises ``ValueError`` for what it cannot write unambiguously.
    """

    name: str
    form: str
    think_separator: str = "\n\n"

    def parse(self, text: str) -> ParsedReply:
        """Read ``text`` (a model's reply). Raises ``TypeError`` for non-``str`` input, nothing else."""
        if not isinstance(text, str):
            raise TypeError(f"a reply must be a str, got {type(text).__name__}")
        if len(text) > MAX_INPUT_CHARS:
            return ParsedReply(error=f"the reply is too long to read ({len(text)} characters, limit "
                                     f"{MAX_INPUT_CHARS}); {self.form}")
        body = text.strip()
        think = None
        if body.startswith(_THINK_OPEN):
            end = body.find(_THINK_CLOSE, len(_THINK_OPEN))
            if end == -1:
                return ParsedReply(think=body[len(_THINK_OPEN):].strip(),
                                   error=f"unclosed {_THINK_OPEN} block (no {_THINK_CLOSE}); expected "
                                         f"{_THINK_OPEN}...{_THINK_CLOSE} before the reply")
            think = body[len(_THINK_OPEN):end].strip()
            body = body[end + len(_THINK_CLOSE):].strip()
        try:
            calls, content = self._parse_body(body)
        except ToolCallParseError as e:
            return ParsedReply(content=getattr(e, "content", ""), think=think, error=self._message(e))
        return ParsedReply(calls, content, think)

    def render(self, calls: Sequence[ToolCall], *, content: str = "", think: str | None = None) -> str:
        """The assistant text for ``calls``, ``content`` and ``think``, as the matching chat template renders
        :func:`tool_call_message` ``(calls, content, think)``. ``ValueError`` when the result would not parse
        back to the same calls, content and think (a think body holding ``</think>``, content holding call
        markup, a value with no JSON or pythonic form, a format that cannot hold both calls and text)."""
        calls, content = list(calls), content or ""
        if think is not None and _THINK_CLOSE in think:
            raise ValueError(f"a think body cannot contain {_THINK_CLOSE}")
        prefix = "" if think is None else f"{_THINK_OPEN}\n{think}\n{_THINK_CLOSE}{self.think_separator}"
        text = prefix + self._render_body(calls, content)
        back = self.parse(text)
        if back.error is not None:
            raise ValueError(f"{self.name}: the rendering does not parse back: {back.error}")
        if ([c.key for c in back.calls] != [c.key for c in calls] or back.content != content.strip()
                or back.think != (None if think is None else think.strip())):
            raise ValueError(f"{self.name}: these calls, content and think cannot be rendered unambiguously "
                             f"(content {_short(content)} would read as call markup or vice versa)")
        return text

    # each format fills these two in
    def _parse_body(self, body: str) -> tuple[list[ToolCall], str]:
        raise NotImplementedError

    def _render_body(self, calls: list[ToolCall], content: str) -> str:
        raise NotImplementedError

    def _message(self, error: ToolCallParseError) -> str:
        """One line, ending with this format's expected form (not the generic JSON one of tools.calls)."""
        message = str(error)
        if message.endswith(_JSON_FORM):
            message = message[: -len(_JSON_FORM)] + self.form
        elif not message.endswith(self.form):
            message = f"{message}; {self.form}"
        return _one_line(message)


@dataclasses.dataclass(frozen=True)
class _Pythonic(CallFormat):
    """The whole reply is a call list ``[f(a=1), g()]`` (``tools.calls.parse_pythonic``) or it is text."""

    def _parse_body(self, body: str) -> tuple[list[ToolCall], str]:
        if not body:
            return [], ""
        try:
            return parse_pythonic(body), ""
        except ToolCallParseError:
            if looks_like_calls(body, "pythonic"):
                raise
            return [], body

    def _render_body(self, calls: list[ToolCall], content: str) -> str:
        if calls and content:
            raise ValueError("pythonic: a reply is a call list or text, not both")
        return format_pythonic(calls) if calls else content


@dataclasses.dataclass(frozen=True)
class _Hermes(CallFormat):
    """Text, then ``<tool_call>`` blocks of one JSON object each (Qwen2.5/Qwen3's rendering)."""

    def _parse_body(self, body: str) -> tuple[list[ToolCall], str]:
        calls: list[ToolCall] = []
        outside: list[str] = []
        pos = 0
        try:
            while True:
                start = body.find(_CALL_OPEN, pos)
                close = body.find(_CALL_CLOSE, pos)
                if close != -1 and (start == -1 or close < start):
                    outside.append(body[pos:close])
                    raise ToolCallParseError(f"{_CALL_CLOSE} without a {_CALL_OPEN} before it")
                if start == -1:
                    outside.append(body[pos:])
                    return calls, _joined(outside)
                outside.append(body[pos:start])
                value, pos = _read_block(body, start)
                if not isinstance(value, dict):
                    raise ToolCallParseError(f"each {_CALL_OPEN} block holds one JSON object (one call), "
                                             f"found {_kind(value)}")
                calls.append(_call_from_json(value))
        except ToolCallParseError as e:
            raise _Malformed(str(e), _joined(outside)) from None

    def _render_body(self, calls: list[ToolCall], content: str) -> str:
        separator = "\n" if content and calls else ""
        return content + separator + format_json(calls, hermes=True)


@dataclasses.dataclass(frozen=True)
class _Llama3Json(CallFormat):
    """The whole reply is ``{"name": ..., "parameters": ...}`` (several: ``;``), after ``<|python_tag|>``."""

    separator: str = "; "

    def _parse_body(self, body: str) -> tuple[list[ToolCall], str]:
        tagged = body.startswith(_PYTHON_TAG)
        text = _unfence(body[len(_PYTHON_TAG):].strip() if tagged else body).strip()
        if not text:
            if tagged:
                raise ToolCallParseError(f"nothing after {_PYTHON_TAG}")
            return [], ""
        attempted = tagged or bool(_JSON_CALL_START_RE.match(text) or _JSON_LIST_START_RE.match(text))
        if not (attempted or text.startswith("{")):
            return [], body
        try:
            return self._calls(text), ""
        except ToolCallParseError:
            if attempted:
                raise
            return [], body  # a JSON object that is no call, e.g. a final answer in JSON: text

    def _calls(self, text: str) -> list[ToolCall]:
        calls: list[ToolCall] = []
        i = 0
        while True:
            value, end = _decode_at(text, i, "in the call")
            if not isinstance(value, dict):
                raise ToolCallParseError(f"each call is one JSON object, found {_kind(value)}")
            calls.append(_call_from_json(value))
            i = _skip_ws(text, end)
            if i < len(text) and text[i] == ";":
                i = _skip_ws(text, i + 1)
            elif i == end and i < len(text):
                raise ToolCallParseError(f'expected ";" or a new line after a call, found {_short(text[i:i + 30])}')
            if i == len(text):
                return calls
            if text[i] != "{":
                raise ToolCallParseError(f"unexpected text after a call: {_short(text[i:i + 30])}")

    def _render_body(self, calls: list[ToolCall], content: str) -> str:
        if calls and content:
            raise ValueError("llama3_json: a reply is JSON calls or text, not both (Llama's template drops "
                             "the content of a message with tool_calls)")
        if not calls:
            return content
        return self.separator.join(json.dumps({"name": c.name, "parameters": c.arguments}, ensure_ascii=False)
                                   for c in calls)


@dataclasses.dataclass(frozen=True)
class _ToolN1(CallFormat):
    """``<think>...</think>``, then one ``<tool_call>`` block holding a JSON list of calls, then text."""

    def _parse_body(self, body: str) -> tuple[list[ToolCall], str]:
        start = body.find(_CALL_OPEN)
        close = body.find(_CALL_CLOSE)
        if close != -1 and (start == -1 or close < start):
            raise _Malformed(f"{_CALL_CLOSE} without a {_CALL_OPEN} before it", body[:close].strip())
        if start == -1:
            return [], body
        before = body[:start]
        try:
            value, end = _read_block(body, start)
            if not isinstance(value, list):
                raise ToolCallParseError(f"the {_CALL_OPEN} block holds a JSON list of calls, found {_kind(value)}")
            calls = [_call_from_json(item) for item in value]
            after = body[end:]
            if _CALL_OPEN in after or _CALL_CLOSE in after:
                raise ToolCallParseError(f"more than one {_CALL_OPEN} block; put every call in the one JSON list")
        except ToolCallParseError as e:
            raise _Malformed(str(e), before.strip()) from None
        return calls, _joined([before, after])

    def _render_body(self, calls: list[ToolCall], content: str) -> str:
        if not calls:
            return content
        block = f"{_CALL_OPEN}\n{format_json(calls, hermes=False)}\n{_CALL_CLOSE}"
        return block + (f"\n{content}" if content else "")


CALL_FORMATS: dict[str, CallFormat] = {
    "pythonic": _Pythonic("pythonic", _PYTHONIC_FORM),
    "hermes": _Hermes("hermes", 'expected one <tool_call>{"name": "func", "arguments": {...}}</tool_call> '
                                "block per call"),
    "llama3_json": _Llama3Json("llama3_json", 'expected the reply to be {"name": "func", "parameters": {...}}, '
                                              'several separated by ";"'),
    "tool_n1": _ToolN1("tool_n1", 'expected <think>...</think> then <tool_call>[{"name": "func", '
                                  '"arguments": {...}}, ...]</tool_call>', think_separator="\n"),
}


def get_call_format(name: str) -> CallFormat:
    """The format called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return CALL_FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown call format {name!r}; known formats: {', '.join(sorted(CALL_FORMATS))}") from None


# -- OpenAI-shape messages ---------------------------------------------------------------------------------

def openai_tool(schema_or_tool: Tool | Mapping[str, Any]) -> dict[str, Any]:
    """``{"type": "function", "function": {"name", "description", "parameters"}}``, the tool shape chat
    templates take (``apply_chat_template(messages, tools=[...])``).

    Accepts a :class:`tools.schema.Tool`, a dict already in that shape (copied as it is), or a bare
    ``{"name", "description", "parameters"}`` schema (ToolACE/BFCL write those), whose parameters are
    mapped to JSON schema (``normalize_schema``: ``"dict"`` -> ``"object"``, ...).
    """
    if isinstance(schema_or_tool, Tool):
        return schema_or_tool.openai_schema()
    if not isinstance(schema_or_tool, Mapping):
        raise TypeError(f"expected a Tool or a tool schema dict, got {type(schema_or_tool).__name__}")
    if schema_or_tool.get("type") == "function" and isinstance(schema_or_tool.get("function"), Mapping):
        return copy.deepcopy(dict(schema_or_tool))
    name = schema_or_tool.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a tool schema needs a \"name\" string, got {_short(dict(schema_or_tool))}")
    parameters = schema_or_tool.get("parameters") or {"type": "object", "properties": {}}
    return {"type": "function", "function": {"name": name, "description": schema_or_tool.get("description", ""),
                                             "parameters": normalize_schema(parameters)}}


def tool_call_message(calls: Sequence[ToolCall], content: str | None = None,
                      think: str | None = None) -> dict[str, Any]:
    """An OpenAI-shape assistant message: ``{"role": "assistant", "content": ..., "tool_calls": [...]}``.

    ``tool_calls`` holds ``{"id": "call_<i>", "type": "function", "function": {"name", "arguments"}}`` with
    ``arguments`` a dict, and is left out when there are no calls (Llama's template treats the key's
    presence as a call turn). ``think`` goes into the content as ``<think>\\n...\\n</think>`` (Qwen3's
    template reads it from there), spaced so that both the hermes and the qwen3_thinking template render
    exactly ``get_call_format("hermes").render(calls, content=..., think=...)``. ``content`` is ``None``
    when there is neither content nor think, as OpenAI writes it.
    """
    calls = list(calls)
    text = content or ""
    if think is not None:
        if _THINK_CLOSE in think:
            raise ValueError(f"a think body cannot contain {_THINK_CLOSE}")
        block = f"{_THINK_OPEN}\n{think}\n{_THINK_CLOSE}"
        # the hermes template writes "\n" between non-empty content and the first call
        text = f"{block}\n\n{text}" if text else block + ("\n" if calls else "\n\n")
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                                  "function": {"name": c.name, "arguments": copy.deepcopy(c.arguments)}}
                                 for i, c in enumerate(calls)]
    return message


# -- the chat templates of configs/chat_templates ------------------------------------------------------------

#: The templates shipped with chordgym, each mirroring a real model family's tool-calling template.
CHAT_TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "configs" / "chat_templates"
#: The call format each shipped template renders.
TEMPLATE_CALL_FORMATS = {"hermes": "hermes", "llama3_json": "llama3_json", "qwen3_thinking": "hermes"}


def load_chat_template(name: str) -> str:
    """The text of ``configs/chat_templates/<name>.jinja`` (``hermes``, ``llama3_json``, ``qwen3_thinking``),
    to set as ``tokenizer.chat_template``."""
    if name not in TEMPLATE_CALL_FORMATS:
        raise ValueError(f"unknown chat template {name!r}; known templates: {', '.join(sorted(TEMPLATE_CALL_FORMATS))}")
    return (CHAT_TEMPLATES_DIR / f"{name}.jinja").read_text()


# -- detection -------------------------------------------------------------------------------------------------

_PROBE_TOOL = "probe_tool_c4f9"
_PROBE_ARGS = {"probe_arg_c4f9": "probe value c4f9"}
_PROBE_USER = [{"role": "user", "content": "Call the probe tool."}]


def _probe_tools() -> list[dict[str, Any]]:
    return [{"type": "function", "function": {
        "name": _PROBE_TOOL, "description": "A probe tool.",
        "parameters": {"type": "object", "properties": {"probe_arg_c4f9": {"type": "string"}},
                       "required": ["probe_arg_c4f9"]}}}]


def _render(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
            add_generation_prompt: bool) -> str | None:
    """The template's text, or ``None`` when it fails (a template is arbitrary code: any exception)."""
    try:
        text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception:  # noqa: BLE001 - TemplateError, TypeError on None content, ValueError for no template
        return None
    return text if isinstance(text, str) else None


def renders_tools(tokenizer: Any) -> bool:
    """Does ``tokenizer``'s chat template put the tool list in the prompt when given ``tools=``? (A probe
    tool's name appears in the rendered prompt.) ``False`` for a template that ignores ``tools``, as
    SmolLM2's does, or fails on them: such a model needs the tools described in the system prompt."""
    prompt = _render(tokenizer, _PROBE_USER, _probe_tools(), True)
    return prompt is not None and _PROBE_TOOL in prompt


def detect_call_format(tokenizer: Any) -> str | None:
    """The call format ``tokenizer``'s chat template renders an assistant ``tool_calls`` message in:
    ``"hermes"``, ``"llama3_json"``, ``"tool_n1"``, ``"pythonic"``, or ``None`` when it writes none of
    them (a template that ignores ``tool_calls``, such as SmolLM2's, or one that fails on them).

    A probe conversation (one tool, a user turn, an assistant turn calling the tool) is rendered; the text
    the assistant turn adds after the generation prompt is the reply the model would have written, and
    its call markup names the format: a ``<tool_call>`` block holding a JSON object (hermes) or a JSON
    list (tool_n1), a bare ``{"name": ..., "parameters": ...}`` object (llama3_json), a ``name(arg=...)``
    call (pythonic).
    """
    tools = _probe_tools()
    prompt = _render(tokenizer, _PROBE_USER, tools, True)
    if prompt is None:
        return None
    call = {"id": "call_0", "type": "function", "function": {"name": _PROBE_TOOL, "arguments": dict(_PROBE_ARGS)}}
    for content in (None, ""):  # OpenAI writes None; some templates concatenate content and need a str
        full = _render(tokenizer, _PROBE_USER + [{"role": "assistant", "content": content, "tool_calls": [call]}],
                       tools, False)
        if full is not None:
            break
    else:
        return None
    reply = full[len(os.path.commonprefix([prompt, full])):]
    return _classify(reply)


def _is_probe(value: Any, *keys: str) -> bool:
    return (isinstance(value, dict) and value.get("name") == _PROBE_TOOL
            and any(value.get(k) == _PROBE_ARGS for k in keys))


def _classify(reply: str) -> str | None:
    start = reply.find(_CALL_OPEN)
    if start != -1:
        try:
            value, _ = _decode_at(reply, _skip_ws(reply, start + len(_CALL_OPEN)), "")
        except ToolCallParseError:
            return None
        if _is_probe(value, "arguments", "parameters"):
            return "hermes"
        if isinstance(value, list) and value and _is_probe(value[0], "arguments", "parameters"):
            return "tool_n1"
        return None
    for match in re.finditer(r"\{", reply):
        try:
            value, _ = _decode_at(reply, match.start(), "")
        except ToolCallParseError:
            continue
        if _is_probe(value, "parameters"):
            return "llama3_json"
    if re.search(rf"\b{_PROBE_TOOL}\(\s*probe_arg_c4f9\s*=", reply):
        return "pythonic"
    return None
