"""Tool calls as models write them: parse and format the two syntaxes chordgym speaks.

* pythonic (ToolACE/BFCL): ``[get_weather(city='Paris', unit='c'), news.top(n=3)]``
* JSON: ``{"name": ..., "arguments": {...}}``, a list of those, or Hermes ``<tool_call>{...}</tool_call>``
  blocks.

The input is model output: it is parsed, never evaluated. The pythonic parser walks Python's AST and
accepts literals only (strings, numbers, ``True/False/None``, lists, tuples (as lists), dicts with string
keys, a sign on a number) plus the JSON spellings ``true``/``false``/``null``, which models trained on JSON
schemas write often and which mean nothing else in a literal-only context. Anything else (variables,
nested calls, f-strings, arithmetic, sets, ``**kwargs``) is a ``ToolCallParseError`` whose message says
what was wrong and what is expected, because that message is shown to the model. No parser here lets any
other exception out, however malformed or deeply nested the text (input above ``MAX_INPUT_CHARS`` is
refused outright).

Argument names may be Python keywords: ``[convert(from='USD', to='EUR')]``. Real APIs have parameters named
``from``, ``class``, ``import`` or ``if`` (a JSON-schema property name is any string), BFCL writes them as
``from=`` in its prompts and answers, and guided decoding lets a model write them; since the text is parsed,
never run, only Python's grammar stands against them. When ``ast`` refuses the text, every keyword that
``tokenize`` finds in argument-name position (after ``(`` or ``,`` and before ``=``, so never inside a string
literal) is renamed to a placeholder that no name in the text begins with, the text is parsed again and the
placeholders are mapped back. Text that ``ast`` accepts as it is takes no extra step. A keyword as a function
name or as a value (``f(a=from)``) stays an error; ``True``/``False``/``None`` are values as ever.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import keyword
import math
import re
import tokenize
import unicodedata
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from tools.schema import _short, is_call_name

__all__ = [
    "MAX_INPUT_CHARS", "ToolCall", "ToolCallParseError", "format_json", "format_pythonic", "looks_like_calls",
    "parse_json_calls", "parse_pythonic", "parse_tool_calls",
]

MAX_INPUT_CHARS = 100_000
_MAX_DEPTH = 64  # nesting of argument values
_PYTHONIC_FORM = "expected a list of calls with keyword arguments, e.g. [func1(a=1, b='x'), func2(c=[1, 2])]"
_JSON_FORM = ('expected {"name": "func", "arguments": {...}}, a JSON list of those, '
              'or <tool_call>{"name": ..., "arguments": ...}</tool_call> blocks')
_JSON_WORDS = {"true": True, "false": False, "null": None}

Syntax = Literal["pythonic", "json", "auto"]


class ToolCallParseError(ValueError):
    """The text is not a well-formed call list; the message says what is wrong and the expected form."""


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """One call: a tool name and its keyword arguments (JSON values).

    Hashable through ``key``, the canonical JSON text of ``[name, arguments]``, so calls can be counted
    and compared as multisets.
    """

    name: str
    arguments: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return json.dumps([self.name, self.arguments], sort_keys=True, ensure_ascii=False, default=repr)

    def __hash__(self) -> int:
        return hash(self.key)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


# -- shared text clean-up --------------------------------------------------------------------------------

_FENCE_LANG_RE = re.compile(r"[A-Za-z0-9_+-]*")


def _unfence(text: str) -> str:
    r"""The body of a fenced block (three backticks, an optional language tag, the body, three backticks),
    else ``text``: the language tag and blank padding around the body are dropped. String operations, not
    one regular expression: ``^```[\w+-]*[ \t]*\n?(.*?)\n?[ \t]*```$`` backtracks cubically on three
    backticks and a run of spaces (7.8 s at 3,000 spaces)."""
    closed = text.removesuffix("\n")  # as ``$`` would: the closing fence may precede one final newline
    if len(closed) < 6 or not (closed.startswith("```") and closed.endswith("```")):
        return text
    inner = closed[3:-3]
    inner = inner[_FENCE_LANG_RE.match(inner).end():].lstrip(" \t")  # type: ignore[union-attr]
    inner = inner.removeprefix("\n").rstrip(" \t")
    return inner.removesuffix("\n")


def _clean(text: Any) -> str:
    if not isinstance(text, str):
        raise ToolCallParseError(f"expected text, got {type(text).__name__}")
    if len(text) > MAX_INPUT_CHARS:
        raise ToolCallParseError(f"the text is too long to be a call list ({len(text)} characters, "
                                 f"limit {MAX_INPUT_CHARS})")
    return _unfence(text.strip()).strip().strip("`").strip()


# -- pythonic ------------------------------------------------------------------------------------------

def parse_pythonic(text: str) -> list[ToolCall]:
    """Parse ``[f(a=1), g(b='x')]`` (brackets optional, code fences and backticks stripped).

    Returns ``[]`` for an empty list ``[]``. Raises ``ToolCallParseError`` for anything that is not a
    list of calls with literal keyword arguments.
    """
    body = _clean(text)
    if not body:
        raise ToolCallParseError(f"empty text; {_PYTHONIC_FORM}")
    source = body if body.startswith("[") else "[" + body
    source = source if source.endswith("]") else source + "]"
    try:
        tree = _ast_parse(source)
    except SyntaxError as e:
        tree = _parse_with_keyword_args(source, e)
    node = tree.body
    elements = node.elts if isinstance(node, ast.List | ast.Tuple) else [node]
    try:
        return [_call_from_node(e) for e in elements]
    except RecursionError:
        raise ToolCallParseError(f"arguments are nested too deeply; {_PYTHONIC_FORM}") from None


def _ast_parse(source: str) -> ast.Expression:
    """``ast.parse`` in eval mode; a ``SyntaxError`` is the caller's, any other failure a parse error."""
    try:
        with warnings.catch_warnings():  # invalid escapes etc. in model text are not our warnings to print
            warnings.simplefilter("ignore")
            return ast.parse(source, mode="eval")
    except SyntaxError:
        raise
    except (ValueError, RecursionError, MemoryError, OverflowError) as e:
        raise ToolCallParseError(f"not valid call syntax ({type(e).__name__}); {_PYTHONIC_FORM}") from None


# -- keywords as argument names ----------------------------------------------------------------------------

# a word of its own before '=' (or a comment or line continuation, which may come between) or before ',',
# ')', ']', '}' (a keyword as a value); if no such word is a keyword, tokenizing the text cannot help
_WORD_BEFORE_RE = re.compile(r"(?<!\w)([A-Za-z]{2,8})\s*(?:=(?!=)|[#\\,)\]}])")
_SKIPPED = (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)
_KEYWORD_VALUES = ("True", "False", "None")
_UNDERSCORES_RE = re.compile("_+")


@dataclasses.dataclass
class _KeywordScan:
    renames: list[tuple[int, int, int, str]]  # (offset in the text, line, column, keyword) of each argument name
    stray: str  # the first keyword (not True/False/None) that stands alone as a value, or ''


def _parse_with_keyword_args(source: str, error: SyntaxError) -> ast.Expression:
    """Parse ``source``, which ``ast`` refused with ``error``, allowing keywords as argument names.

    Each keyword token between ``(`` or ``,`` and ``=`` becomes ``<prefix><keyword>``, the prefix being
    one underscore more than the longest run of underscores in the text (read in NFKC form, as Python reads
    names), then ``kw_``: no name of the text can be taken for a placeholder. The renamed text is parsed
    and its keyword arguments renamed back. If nothing needs renaming, or the renamed text fails too, the
    error is the parser's (located in the text as written), with a hint when a keyword stands where a
    value should (``f(a=from)``).
    """
    maybe = any(keyword.iskeyword(word) for word in _WORD_BEFORE_RE.findall(source))
    scan = _scan_keywords(source) if maybe else None
    if scan is None or not scan.renames:
        raise _syntax_error(error, hint=scan.stray if scan else "") from None
    read = source if source.isascii() else unicodedata.normalize("NFKC", source)
    prefix = "_" * (max(map(len, _UNDERSCORES_RE.findall(read)), default=0) + 1) + "kw_"
    pieces: list[str] = []
    names: dict[str, str] = {}
    end = 0
    for offset, _, _, word in scan.renames:
        pieces += [source[end:offset], prefix + word]
        names[prefix + word] = word
        end = offset + len(word)
    pieces.append(source[end:])
    try:
        tree = _ast_parse("".join(pieces))
    except SyntaxError as e:
        shifts, on_line, last_line = [], 0, 0  # each placeholder's (line, column in the renamed text, length)
        for _, line, column, _ in scan.renames:
            on_line = on_line + 1 if line == last_line else 0
            shifts.append((line, column + on_line * len(prefix), len(prefix)))
            last_line = line
        raise _syntax_error(e, shifts, names, scan.stray) from None
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in names:
            node.arg = names[node.arg]
    return tree


def _scan_keywords(source: str) -> _KeywordScan | None:
    """What :func:`_parse_with_keyword_args` needs to know of the tokens; ``None`` if tokenizing fails."""
    lines = source.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + lines[-1:]
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    feed = iter(lines)
    scan = _KeywordScan([], "")
    before = previous = None  # the last two significant tokens
    try:
        for token in tokenize.generate_tokens(lambda: next(feed, "")):
            if token.type in _SKIPPED:
                continue
            if previous is not None and previous.type == tokenize.NAME and keyword.iskeyword(previous.string):
                opener = before.string if before is not None and before.type == tokenize.OP else ""
                closer = token.string if token.type == tokenize.OP else ""
                if opener in ("(", ",") and closer == "=":  # '==' is a token of its own
                    (line, column), word = previous.start, previous.string
                    offset = starts[line - 1] + column
                    if source[offset:offset + len(word)] != word:  # not where expected: do not guess
                        return None
                    scan.renames.append((offset, line, column, word))
                elif (not scan.stray and opener in ("=", ":", "[", "(", ",") and previous.string not in _KEYWORD_VALUES
                      and (closer in (",", ")", "]", "}") or token.type == tokenize.ENDMARKER)):
                    scan.stray = previous.string
            before, previous = previous, token
    except Exception:  # noqa: BLE001 - a best effort: TokenError, IndentationError, whatever the tokenizer raises
        return None
    return scan


def _syntax_error(e: SyntaxError, shifts: Iterable[tuple[int, int, int]] = (),
                  names: Mapping[str, str] | None = None, hint: str = "") -> ToolCallParseError:
    """The parse error for ``e``, located in the text as written: ``shifts`` are the (line, column, added
    characters) of the placeholders' prefixes in the parsed text, ``names`` the placeholders to write as
    their keywords, ``hint`` a keyword found where a value should be."""
    msg = str(e.msg)
    for placeholder, word in (names or {}).items():
        msg = msg.replace(placeholder, word)
    offset = e.offset
    if offset:  # 1-based; a column inside a prefix is the keyword's
        offset -= sum(min(added, offset - 1 - column) for line, column, added in shifts
                      if line == e.lineno and column < offset - 1)
    detail = f"{msg} at column {offset}" if offset else msg
    if hint:
        detail += f"; '{hint}' is a Python keyword, not a value: quote strings, e.g. '{hint}'"
    return ToolCallParseError(f"not valid call syntax ({detail}); {_PYTHONIC_FORM}")


def _call_from_node(node: ast.expr) -> ToolCall:
    if not isinstance(node, ast.Call):
        raise ToolCallParseError(f"every element must be a function call, found {_describe_node(node)}; "
                                 f"{_PYTHONIC_FORM}")
    name = _dotted_name(node.func)
    if node.args:
        raise ToolCallParseError(f"{name}: positional arguments are not allowed; pass every argument by name, "
                                 f"e.g. {name}(param=value)")
    arguments: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise ToolCallParseError(f"{name}: **kwargs unpacking is not allowed; write each argument as "
                                     f"param=value")
        if kw.arg in arguments:
            raise ToolCallParseError(f"{name}: argument '{kw.arg}' is given more than once")
        arguments[kw.arg] = _literal(kw.value, f"{name}({kw.arg}=...)", 0)
    return ToolCall(name, arguments)


def _dotted_name(node: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ToolCallParseError(f"the called function must be a plain or dotted name, found "
                                 f"{_describe_node(node)}; {_PYTHONIC_FORM}")
    parts.append(node.id)
    return ".".join(reversed(parts))


def _literal(node: ast.expr, where: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ToolCallParseError(f"{where}: value nested more than {_MAX_DEPTH} levels deep")
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or value is None or isinstance(value, str | int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ToolCallParseError(f"{where}: numbers must be finite, found {value}")
            return value
        raise ToolCallParseError(f"{where}: {type(value).__name__} values are not allowed; use strings, "
                                 f"numbers, True/False/None, lists or dicts")
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e, where, depth + 1) for e in node.elts]
    if isinstance(node, ast.Dict):
        out: dict[str, Any] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                raise ToolCallParseError(f"{where}: ** unpacking inside a dict is not allowed")
            key = _literal(k, where, depth + 1)
            if not isinstance(key, str):
                raise ToolCallParseError(f"{where}: dict keys must be strings, found {_short(key)}")
            out[key] = _literal(v, where, depth + 1)
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = node.operand
        if (isinstance(operand, ast.Constant) and isinstance(operand.value, int | float)
                and not isinstance(operand.value, bool)):
            value = -operand.value if isinstance(node.op, ast.USub) else operand.value
            return _literal(ast.Constant(value), where, depth)
    if isinstance(node, ast.Name):
        if node.id in _JSON_WORDS:
            return _JSON_WORDS[node.id]
        raise ToolCallParseError(f"{where}: '{node.id}' is a bare name, not a value; quote strings, "
                                 f"e.g. '{node.id}'")
    raise ToolCallParseError(f"{where}: {_describe_node(node)} is not allowed; values must be literals "
                             f"(strings, numbers, True/False/None, lists, dicts)")


def _describe_node(node: ast.AST) -> str:
    kinds = {
        ast.Call: "a nested function call", ast.Name: "a bare name", ast.JoinedStr: "an f-string",
        ast.BinOp: "an arithmetic expression", ast.BoolOp: "a boolean expression", ast.Compare: "a comparison",
        ast.Set: "a set (use a list)", ast.Lambda: "a lambda", ast.Subscript: "a subscript",
        ast.Attribute: "an attribute access", ast.Constant: "a constant", ast.Starred: "a starred expression",
        ast.ListComp: "a comprehension", ast.GeneratorExp: "a generator", ast.IfExp: "a conditional",
        ast.UnaryOp: "a unary expression", ast.Dict: "a dict", ast.List: "a list", ast.Tuple: "a tuple",
    }
    for kind, text in kinds.items():
        if isinstance(node, kind):
            if isinstance(node, ast.Name):
                return f"the bare name '{node.id}'"
            return text
    return f"a {type(node).__name__} expression"


def format_pythonic(calls: Iterable[ToolCall]) -> str:
    """``[f(a=1, b='x'), g()]``; ``parse_pythonic(format_pythonic(calls)) == calls``.

    Argument names are written as they are, keywords too (``convert(from='USD')``, as BFCL writes them);
    a name that is no Python identifier (``first-name``), or not in the NFKC normal form that Python reads
    identifiers in (``ﬁle`` reads as ``file``), has no pythonic form: ``ValueError``.
    """
    parts = []
    for call in calls:
        if not is_call_name(call.name):
            raise ValueError(f"{call.name!r} is not a non-keyword Python identifier (dots allowed): no pythonic form")
        for k in call.arguments:
            if not _is_argument_name(k):
                raise ValueError(f"{call.name}: argument name {k!r} is not a Python identifier (keywords are "
                                 f"allowed): no pythonic form")
        args = ", ".join(f"{k}={_format_value(v)}" for k, v in call.arguments.items())
        parts.append(f"{call.name}({args})")
    return "[" + ", ".join(parts) + "]"


def _is_argument_name(name: Any) -> bool:
    """Does ``name=`` parse back as ``name``: an identifier (a keyword too, see the module docstring) that
    NFKC normalisation leaves unchanged."""
    return (isinstance(name, str) and name.isidentifier()
            and (name.isascii() or unicodedata.normalize("NFKC", name) == name))


def _format_value(value: Any) -> str:
    if value is None or isinstance(value, bool | str | int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {value} has no literal form")
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("dict keys must be strings")
        return "{" + ", ".join(f"{k!r}: {_format_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"{type(value).__name__} is not a JSON value")


# -- JSON ----------------------------------------------------------------------------------------------

_HERMES_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)


def parse_json_calls(text: str) -> list[ToolCall]:
    """Parse JSON calls: one object, a list of objects, or Hermes ``<tool_call>...</tool_call>`` blocks.

    An object is ``{"name": ..., "arguments": {...}}``; ``"arguments"`` may also be a JSON string (as
    OpenAI's API returns it), be spelled ``"parameters"`` (Llama 3), or be absent (no arguments); the
    OpenAI wrapper ``{"type": "function", "function": {...}}`` is unwrapped. With Hermes tags, text
    outside the blocks is ignored and a last block missing its closing tag is accepted.
    """
    body = _clean(text)
    if not body:
        raise ToolCallParseError(f"empty text; {_JSON_FORM}")
    if "<tool_call>" in body:
        calls: list[ToolCall] = []
        for block in _HERMES_RE.findall(body):
            calls.extend(_calls_from_json(_loads(block.strip(), "inside <tool_call>")))
        return calls
    return _calls_from_json(_loads(body, "in the text"))


def _reject_constant(name: str) -> Any:
    raise ToolCallParseError(f"{name} is not a JSON value; numbers must be finite")


def _loads(text: str, where: str) -> Any:
    if not text:
        raise ToolCallParseError(f"empty JSON {where}; {_JSON_FORM}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ToolCallParseError(f"invalid JSON {where} ({e.msg} at line {e.lineno} column {e.colno}); "
                                 f"{_JSON_FORM}") from None
    except (RecursionError, MemoryError, ValueError) as e:
        if isinstance(e, ToolCallParseError):
            raise
        raise ToolCallParseError(f"invalid JSON {where} ({type(e).__name__}); {_JSON_FORM}") from None


def _calls_from_json(value: Any) -> list[ToolCall]:
    items = value if isinstance(value, list) else [value]
    return [_call_from_json(item) for item in items]


def _call_from_json(item: Any) -> ToolCall:
    if not isinstance(item, dict):
        raise ToolCallParseError(f"each call must be a JSON object, found {_short(item)}; {_JSON_FORM}")
    if isinstance(item.get("function"), dict) and "name" not in item:
        item = item["function"]
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ToolCallParseError(f'a call needs a "name" string, found {_short(item)}; {_JSON_FORM}')
    unknown = set(item) - {"name", "arguments", "parameters", "id", "type"}
    if unknown:
        raise ToolCallParseError(f"{name}: unexpected key(s) {sorted(unknown)} beside \"name\" and "
                                 f"\"arguments\"; {_JSON_FORM}")
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        arguments = _loads(arguments.strip() or "{}", f'in the "arguments" string of {name}')
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ToolCallParseError(f'{name}: "arguments" must be an object of name/value pairs, found '
                                 f"{_short(arguments)}")
    return ToolCall(name, arguments)


def format_json(calls: Iterable[ToolCall], hermes: bool = True) -> str:
    """Hermes blocks (one ``<tool_call>`` per call, newline separated) or a JSON list of call objects."""
    items = [c.to_dict() for c in calls]
    if hermes:
        return "\n".join(f"<tool_call>\n{json.dumps(i, ensure_ascii=False)}\n</tool_call>" for i in items)
    return json.dumps(items, ensure_ascii=False)


# -- either syntax ---------------------------------------------------------------------------------------

_JSON_START_RE = re.compile(r"^(\[\s*)?\{")
_PY_START_RE = re.compile(r"^\[\s*[A-Za-z_][A-Za-z0-9_.]*\s*\(")
_JSON_CALL_RE = re.compile(r'^(\[\s*)?\{\s*"(name|function|type)"\s*:')


def parse_tool_calls(text: str, syntax: Syntax = "pythonic") -> list[ToolCall]:
    """Parse ``text`` in the given syntax. ``"auto"`` tries JSON first when the text holds a
    ``<tool_call>`` tag or starts with ``{`` / ``[{``, pythonic first otherwise, then the other one; if
    both fail, the error of the first is raised."""
    if syntax == "pythonic":
        return parse_pythonic(text)
    if syntax == "json":
        return parse_json_calls(text)
    if syntax != "auto":
        raise ValueError(f"unknown call syntax {syntax!r}; use 'pythonic', 'json' or 'auto'")
    body = _clean(text)
    first, second = ((parse_json_calls, parse_pythonic) if "<tool_call>" in body or _JSON_START_RE.match(body)
                     else (parse_pythonic, parse_json_calls))
    try:
        return first(body)
    except ToolCallParseError as error:
        try:
            return second(body)
        except ToolCallParseError:
            raise error from None


def looks_like_calls(text: str, syntax: Syntax = "pythonic") -> bool:
    """Is ``text`` an attempted call list (as opposed to a plain-text answer)?

    After stripping whitespace, code fences and backticks: pythonic text counts when it starts with
    ``[`` followed by a (dotted) name and ``(``, or when it parses as a non-empty call list (a bare
    ``f(a=1)``); JSON text counts when it holds a ``<tool_call>`` tag, starts with ``{"name":`` (or
    ``[{"name":``, ``{"function":``), or parses as a non-empty call list. An env uses this to tell a
    malformed call (a format error) from a final answer; it never raises.
    """
    if syntax not in ("pythonic", "json", "auto"):
        raise ValueError(f"unknown call syntax {syntax!r}; use 'pythonic', 'json' or 'auto'")
    if not isinstance(text, str):
        return False
    if len(text) > MAX_INPUT_CHARS:  # too long to parse: judge by its opening only
        text = text.strip()[:1000]
    body = _clean(text)
    if syntax in ("pythonic", "auto") and (_PY_START_RE.match(body) or _parses(parse_pythonic, body)):
        return True
    if syntax in ("json", "auto") and ("<tool_call>" in body or _JSON_CALL_RE.match(body)
                                       or _parses(parse_json_calls, body)):
        return True
    return False


def _parses(parser: Any, body: str) -> bool:
    try:
        return bool(parser(body))
    except ToolCallParseError:
        return False


