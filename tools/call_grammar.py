"""Schema-guided decoding of pythonic call lists: only offered tools, their parameters and their enum values.

A 135M model that has learned the call format still invents parameter names (``top_n`` for ``limit``), writes
enum values as prose (``league='Premier League'`` for ``premier_league``) and closes a call before its
required parameters. Guided decoding (vLLM's and TGI's "structured outputs" for tool calls) removes those
failures at the sampler: once a reply starts a call list (``[`` as its first non-space character), every
token must keep the text a prefix of

    [name(param=value, ...), name(...)]

where ``name`` is an offered tool, ``param`` one of its parameters not used yet in that call, ``)`` comes
only after every required parameter, an enum parameter's value is one of its literals, a string's value is
quoted, an integer's is an integer, a number's a number and a boolean's ``True``/``False``; other values
(arrays, objects, ``any``) are any balanced Python literal. Strings allow simple escapes only, numbers no
leading zeros (both would not parse), and whitespace outside strings comes in runs of at most two. After the closing ``]`` only whitespace and the
end of the turn may follow, and the turn may not end before it. A reply that does not start with ``[``
(a plain-text answer) is not constrained at all in ``auto`` mode; ``required`` mode forces a call list
(OpenAI's ``tool_choice="required"``).

The constraint decides which tokens may come next; the engine applies it by rejection (the argmax or the
sampled token is checked, the next-best or a re-drawn one replaces it while rejected), which for greedy
decoding is exactly the argmax of the masked distribution and for sampling a draw from the renormalised
masked distribution. The log-probability recorded for a token stays the policy's own (unmasked), which is
what the trainer recomputes.

Only the pythonic syntax (ToolACE/BFCL) is guided; schemas come in ToolACE/BFCL's dialect
(``{"name", "parameters": {"properties": {p: {"type", "enum"?}}, "required": [...]}}``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = ["GUIDED_CALLS", "CallConstraint", "CallGrammar", "GuideMode"]

GuideMode = Literal["auto", "required"]
#: the ``guided_calls`` setting of rollouts and evaluations: off, or a :data:`GuideMode`
GUIDED_CALLS = ("none", "auto", "required")

_WS = " \t\n"
_IDENT = re.compile(r"[A-Za-z0-9_.]")
_MAX_SPACES = 2  # a call list needs no longer run of whitespace; a degenerate model would pad forever
_ESCAPES = "\\'\"ntr0abfv"
_OPEN = {"[": "]", "(": ")", "{": "}"}
_CLOSE = set(_OPEN.values())
_SCALAR_KINDS = {"string": "string", "str": "string", "integer": "integer", "int": "integer", "number": "number",
                 "float": "number", "boolean": "boolean", "bool": "boolean"}


@dataclass(frozen=True)
class ParamSpec:
    """What one parameter's value may look like: a fixed set of literal texts (enums, booleans), a scalar
    kind (``string``/``integer``/``number``) or any balanced literal (``any``)."""

    kind: str
    literals: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolSpec:
    params: Mapping[str, ParamSpec]
    required: frozenset[str]


def _literal_texts(values: Sequence[str | int | float]) -> tuple[str, ...]:
    """How each enum value may be written: ``repr`` (``'a'``, ``3``, ``True``), plus double quotes for a plain
    string."""
    texts: list[str] = []
    for v in values:
        texts.append(repr(v))  # Python's own quoting: 'a', "it's"
        if isinstance(v, str) and "'" not in v and '"' not in v and "\\" not in v:
            texts.append(f'"{v}"')
    return tuple(dict.fromkeys(texts))


def _param_spec(schema: Mapping[str, Any]) -> ParamSpec:
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str | int | float | bool) for v in enum):
        return ParamSpec("enum", _literal_texts(enum))
    kind = _SCALAR_KINDS.get(str(kind), "any")
    if kind == "boolean":
        return ParamSpec("enum", ("True", "False"))
    return ParamSpec(kind)


class CallGrammar:
    """The offered tools of one turn, compiled for :class:`CallConstraint` (build once per tool list)."""

    def __init__(self, schemas: Iterable[Mapping[str, Any]]):
        tools: dict[str, ToolSpec] = {}
        for schema in schemas:
            name = schema.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"a tool schema without a name: {dict(schema)!r:.120}")
            params = schema.get("parameters") or {}
            props = params.get("properties") or {}
            required = params.get("required") or []
            tools[name] = ToolSpec({p: _param_spec(s if isinstance(s, Mapping) else {}) for p, s in props.items()},
                                   frozenset(r for r in required if r in props))
        if not tools:
            raise ValueError("guided decoding needs at least one tool schema")
        self.tools = tools

    def __repr__(self) -> str:
        return f"CallGrammar({sorted(self.tools)})"


# phases of the state machine
_LEAD, _FREE, _LIST, _NAME, _ARGS, _PARAM, _EQ, _VALUE, _AFTER_VALUE, _AFTER_CALL, _DONE = range(11)


@dataclass(frozen=True)
class _State:
    phase: int = _LEAD
    buf: str = ""  # the name, parameter name or value text being read
    tool: str = ""
    used: frozenset[str] = frozenset()
    param: str = ""
    eq: bool = False  # '=' seen (phase _EQ)
    stack: str = ""  # open brackets of an ``any`` value
    quote: str = ""  # the open string's quote character, '' outside strings
    escape: bool = False
    spaces: int = 0  # consecutive whitespace characters outside strings


def _string_body_char(s: _State, ch: str) -> _State | None:
    """One character inside an open string literal: simple escapes only (``\\x``, ``\\u`` and ``\\N`` need
    more than one character to be valid), no raw newline, the open quote closes it."""
    if s.escape:
        return replace(s, buf=s.buf + ch, escape=False) if ch in _ESCAPES else None
    if ch == "\\":
        return replace(s, buf=s.buf + ch, escape=True)
    if ch == s.quote:
        return replace(s, buf=s.buf + ch, quote="")
    return None if ch == "\n" else replace(s, buf=s.buf + ch)


class CallConstraint:
    """One row's grammar state: which text may follow what was generated so far.

    ``accepts(piece)`` says whether ``text + piece`` is still a prefix of an admissible reply; ``advance``
    commits a piece; ``can_end`` says whether the turn may end now (end-of-turn or stop token).
    """

    def __init__(self, grammar: CallGrammar, mode: GuideMode = "auto"):
        if mode not in ("auto", "required"):
            raise ValueError(f"guided decoding mode must be 'auto' or 'required', got {mode!r}")
        self.grammar = grammar
        self.mode = mode
        self.state = _State()
        self._names = tuple(grammar.tools)
        self._first_char: dict[str, bool] = {}  # does this character continue the current state (a cache)

    @property
    def in_call_list(self) -> bool:
        return self.state.phase not in (_LEAD, _FREE)

    def can_end(self) -> bool:
        phase = self.state.phase
        return phase in (_FREE, _DONE) or (phase == _LEAD and self.mode == "auto")

    def accepts(self, piece: str) -> bool:
        if not piece:
            return True
        # most candidates fail on their first character: answer those from a per-state cache, so that
        # scanning a whole vocabulary for an admissible token costs a dictionary lookup per token
        first = self._first_char.get(piece[0])
        if first is None:
            first = self._first_char[piece[0]] = self._run(self.state, piece[0]) is not None
        return first and self._run(self.state, piece) is not None

    def advance(self, piece: str) -> None:
        state = self._run(self.state, piece)
        if state is None:
            raise ValueError(f"{piece!r} does not continue the call list here")
        if state != self.state:
            self._first_char.clear()
        self.state = state

    def _run(self, state: _State, piece: str) -> _State | None:
        for ch in piece:
            if state.phase == _FREE:
                return state
            next_state = self._feed(state, ch)
            if next_state is None:
                return None
            if next_state.phase == _FREE or (next_state.phase == _LEAD and self.mode == "auto"):
                pass  # not (yet) a call list: whitespace is the model's business
            elif ch in _WS and not next_state.quote:
                if state.spaces >= _MAX_SPACES:
                    return None
                next_state = replace(next_state, spaces=state.spaces + 1)
            elif next_state.spaces:
                next_state = replace(next_state, spaces=0)
            state = next_state
        return state

    # -- one character ---------------------------------------------------------------------------------

    def _feed(self, s: _State, ch: str) -> _State | None:  # noqa: C901 - a state machine reads best flat
        phase = s.phase
        if phase == _LEAD:
            if ch in _WS:
                return s
            if ch == "[":
                return replace(s, phase=_LIST)
            return replace(s, phase=_FREE) if self.mode == "auto" else None
        if phase == _LIST:
            if ch in _WS:
                return s
            return self._name_char(s, "", ch)
        if phase == _NAME:
            if ch == "(" and s.buf in self.grammar.tools:
                return _State(phase=_ARGS, tool=s.buf)
            return self._name_char(s, s.buf, ch)
        if phase == _ARGS:
            if ch in _WS:
                return s
            if ch == ")":
                return self._close_call(s)
            return self._param_char(s, "", ch)
        if phase == _PARAM:
            if ch in "=" + _WS and s.buf in self._params(s) and s.buf not in s.used:
                return replace(s, phase=_EQ, param=s.buf, buf="", eq=ch == "=")
            return self._param_char(s, s.buf, ch)
        if phase == _EQ:
            if ch in _WS:
                return s
            if ch == "=" and not s.eq:
                return replace(s, eq=True)
            if not s.eq:
                return None
            return self._value_char(replace(s, phase=_VALUE, buf="", used=s.used | {s.param}), ch)
        if phase == _VALUE:
            return self._value_char(s, ch)
        if phase == _AFTER_VALUE:
            return self._after_value(s, ch)
        if phase == _AFTER_CALL:
            if ch in _WS:
                return s
            if ch == ",":
                return _State(phase=_LIST)
            if ch == "]":
                return _State(phase=_DONE)
            return None
        if phase == _DONE:
            return s if ch in _WS else None
        return s

    def _params(self, s: _State) -> Mapping[str, ParamSpec]:
        return self.grammar.tools[s.tool].params

    def _name_char(self, s: _State, buf: str, ch: str) -> _State | None:
        if not _IDENT.match(ch):
            return None
        text = buf + ch
        if any(n.startswith(text) for n in self._names):
            return replace(s, phase=_NAME, buf=text)
        return None

    def _param_char(self, s: _State, buf: str, ch: str) -> _State | None:
        if not _IDENT.match(ch):
            return None
        text = buf + ch
        if any(p.startswith(text) and p not in s.used for p in self._params(s)):
            return replace(s, phase=_PARAM, buf=text)
        return None

    def _close_call(self, s: _State) -> _State | None:
        if self.grammar.tools[s.tool].required <= s.used:
            return _State(phase=_AFTER_CALL)
        return None

    def _after_value(self, s: _State, ch: str) -> _State | None:
        if ch in _WS:
            return replace(s, phase=_AFTER_VALUE)
        if ch == ",":
            return replace(s, phase=_ARGS, buf="", param="", stack="", quote="", escape=False)
        if ch == ")":
            return self._close_call(s)
        return None

    def _value_char(self, s: _State, ch: str) -> _State | None:
        spec = self._params(s)[s.param]
        if spec.kind == "enum":
            text = s.buf + ch
            if any(lit.startswith(text) for lit in spec.literals):
                return replace(s, buf=text)
            if s.buf in spec.literals:
                return self._after_value(s, ch)
            return None if s.buf or ch not in _WS else s
        if spec.kind == "string":
            return self._string_char(s, ch)
        if spec.kind in ("integer", "number"):
            return self._number_char(s, ch, spec.kind == "number")
        return self._any_char(s, ch)

    def _string_char(self, s: _State, ch: str) -> _State | None:
        if not s.buf:
            if ch in _WS:
                return s
            return replace(s, buf=ch, quote=ch) if ch in "'\"" else None
        if s.quote:
            return _string_body_char(s, ch)
        return self._after_value(s, ch)  # the string is closed

    def _number_char(self, s: _State, ch: str, real: bool) -> _State | None:
        text = s.buf
        if not text and ch in _WS:
            return s
        if ch.isdigit():
            return None if text in ("0", "-0") else replace(s, buf=text + ch)  # Python has no leading zeros
        if ch == "-" and not text:
            return replace(s, buf=ch)
        if real and ch == "." and "." not in text and text not in ("", "-"):
            return replace(s, buf=text + ch)
        if text and text[-1].isdigit():
            return self._after_value(s, ch)
        return None

    def _any_char(self, s: _State, ch: str) -> _State | None:
        if s.quote:
            return _string_body_char(s, ch)
        if ch in "'\"":
            return replace(s, buf=s.buf + ch, quote=ch)
        if ch in _OPEN:
            return replace(s, buf=s.buf + ch, stack=s.stack + ch)
        if ch in _CLOSE:
            if s.stack and _OPEN[s.stack[-1]] == ch:
                return replace(s, buf=s.buf + ch, stack=s.stack[:-1])
            if not s.stack and s.buf.strip():
                return self._after_value(s, ch)
            return None
        if ch == "," and not s.stack:
            return self._after_value(s, ch) if s.buf.strip() else None
        if ch in _WS and not s.buf:
            return s
        return replace(s, buf=s.buf + ch)
