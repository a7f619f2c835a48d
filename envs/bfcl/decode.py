"""BFCL's prompting-mode decoder, reimplemented without ``eval``.

Rules (BFCL ``default_decode_ast_prompting``): strip backticks, newlines and spaces at both ends; add the
``[`` / ``]`` that are missing; strip spaces and single quotes; ``ast.parse(mode="eval")``; the body is one
call or a list of calls, and anything else fails. Dotted names come from attribute chains. Positional
arguments are silently dropped (only keywords count). Argument values are literals; in BFCL's shapes, a
bare name becomes its identifier string, a call without keywords becomes its source text, a call with
keywords becomes a nested ``{name: {kwargs}}`` dict and a subscript becomes its source text.

Deviations, all on the safe side: BFCL ``eval``s arithmetic and lambdas; here arithmetic is computed only
over numbers (``+ - * / // % **``, bounded) and strings (``+``), lambdas fail to decode, and unary ``+``/``-``
apply only to numbers (BFCL's decoder negates the operand of any unary operator).

Arithmetic is kept at all because BFCL's ground truth and models' replies may hold constant expressions
(``rate=5/100``, ``n=2**10``) that BFCL's ``eval`` computes. It is bounded so that no reply can make the
decoder work long: integers (literals, operands and results) have at most ``MAX_INT_BITS`` bits, a power or a
product whose result would be larger is refused *before* it is computed (estimated from the operands' bit
lengths), and an expression nested deeper than ``MAX_DEPTH`` is refused before it is walked (so recursion
cannot overflow the stack, whatever the caller's depth). Whatever goes wrong while decoding (a parser's
``MemoryError``, a ``RecursionError``, an ``OverflowError``, an unhashable dict key) is a ``BFCLDecodeError``:
the reply did not decode, BFCL's ``ast_decoder:decoder_failed``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class BFCLDecodeError(ValueError):
    """The text is not a BFCL call list."""


@dataclass(frozen=True)
class DecodedCall:
    """One decoded call: dotted name and keyword arguments (positional ones are not kept)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def as_bfcl(self) -> dict[str, dict[str, Any]]:
        """BFCL's decoded shape ``{name: {param: value}}``."""
        return {self.name: dict(self.arguments)}


_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
#: largest integer the decoder yields or computes, in bits (about 1,233 decimal digits; far below Python's
#: 4,300-digit int-to-str limit, and a product of two such integers still prints)
MAX_INT_BITS = 4096
#: deepest AST nesting accepted (BFCL's ground truth needs 8); deeper text fails to decode before it is walked
MAX_DEPTH = 64
#: what decoding may raise besides ``BFCLDecodeError``; all of it means "does not decode"
_DECODE_FAILURES = (RecursionError, MemoryError, ArithmeticError, ValueError, TypeError)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | complex)


def _shown(node: ast.AST, limit: int = 200) -> str:
    """Source text of ``node`` for an error message, cut at ``limit`` characters."""
    text = ast.unparse(node)
    return text if len(text) <= limit else text[:limit] + "..."


def _too_big(op: ast.operator, left: Any, right: Any) -> bool:
    """True when ``left op right`` on integers would exceed ``MAX_INT_BITS``, estimated before computing it.

    ``|b| ** e`` has about ``e * log2|b|`` bits, and ``log2|b| >= bit_length(b) - 1``; a product has at most
    the sum of its operands' bit lengths. Floats and complex numbers overflow to ``inf`` or raise
    ``OverflowError`` at once, so only integer powers and products need the estimate.
    """
    if not (isinstance(left, int) and isinstance(right, int)):
        return False
    if isinstance(op, ast.Pow):
        return right > 0 and abs(left) > 1 and right * (abs(left).bit_length() - 1) > MAX_INT_BITS
    if isinstance(op, ast.Mult):
        return left.bit_length() + right.bit_length() > MAX_INT_BITS + 1
    return False


def _arith(node: ast.BinOp) -> Any:
    left, right = literal_value(node.left), literal_value(node.right)
    op = _BINOPS.get(type(node.op))
    if op is None:
        raise BFCLDecodeError(f"unsupported operator {type(node.op).__name__} in {_shown(node)!r}")
    if isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str):
        return left + right
    if not (_is_number(left) and _is_number(right)):
        raise BFCLDecodeError(f"arithmetic on non-numbers in {_shown(node)!r}")
    if _too_big(node.op, left, right):
        raise BFCLDecodeError(f"value too large in {_shown(node)!r} (more than {MAX_INT_BITS} bits)")
    try:
        result = op(left, right)
    except (ArithmeticError, ValueError, TypeError) as e:
        raise BFCLDecodeError(f"cannot compute {_shown(node)!r}: {e}") from e
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise BFCLDecodeError(f"value too large in {_shown(node)!r} (more than {MAX_INT_BITS} bits)")
    return result


def _check_depth(tree: ast.AST) -> None:
    """Refuse a tree nested deeper than ``MAX_DEPTH``; iterative, so it cannot recurse too deep itself."""
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    pop, push, node_type = stack.pop, stack.append, ast.AST
    while stack:
        node, depth = pop()
        if depth > MAX_DEPTH:
            raise BFCLDecodeError(f"expression nested deeper than {MAX_DEPTH} levels")
        depth += 1
        for name in node._fields:  # ast.iter_child_nodes, inlined: this walk is half of a long reply's decoding
            child = getattr(node, name, None)
            if isinstance(child, node_type):
                push((child, depth))
            elif isinstance(child, list):
                for item in child:
                    if isinstance(item, node_type):
                        push((item, depth))


def literal_value(node: ast.AST) -> Any:
    """The value of an argument expression, following BFCL's decoder shapes (no code is evaluated)."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, int) and node.value.bit_length() > MAX_INT_BITS:  # e.g. a long hex literal
            raise BFCLDecodeError(f"integer literal too large (more than {MAX_INT_BITS} bits)")
        return "..." if node.value is Ellipsis else node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = literal_value(node.operand)
        if not _is_number(operand):
            raise BFCLDecodeError(f"unary sign on a non-number: {_shown(node)!r}")
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.List):
        return [literal_value(v) for v in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(literal_value(v) for v in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise BFCLDecodeError("dict unpacking (**) is not a literal")
        return {literal_value(k): literal_value(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.BinOp):
        return _arith(node)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        if not node.keywords:
            return ast.unparse(node)
        call = _call(node)
        return call.as_bfcl()
    if isinstance(node, ast.Subscript):
        return ast.unparse(node)
    raise BFCLDecodeError(f"unsupported value {_shown(node)!r} ({type(node).__name__})")


def _dotted_name(func: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        raise BFCLDecodeError(f"callee is not a (dotted) name: {_shown(func)!r}")
    parts.append(func.id)
    return ".".join(reversed(parts))


def _call(node: ast.Call) -> DecodedCall:
    arguments: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise BFCLDecodeError("keyword unpacking (**) is not supported")
        arguments[kw.arg] = literal_value(kw.value)
    return DecodedCall(_dotted_name(node.func), arguments)


def _parse(text: str) -> ast.Expression:
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise BFCLDecodeError(f"not parseable as Python: {e}") from e
    _check_depth(tree)
    return tree


def _guarded(fn: Callable[[str], Any], text: str) -> Any:
    """``fn(text)``, with every failure of the decoding machinery turned into ``BFCLDecodeError``."""
    try:
        return fn(text)
    except BFCLDecodeError:
        raise
    except _DECODE_FAILURES as e:
        raise BFCLDecodeError(f"cannot decode: {type(e).__name__}: {str(e)[:200]}") from e


def decode(text: str) -> list[DecodedCall]:
    """Decode a model reply into calls by BFCL's rules; raises ``BFCLDecodeError`` when it is not a call list.

    ``"[]"`` decodes to an empty list (BFCL treats that as "no call"). Never raises anything else.
    """
    return _guarded(_decode, text)


def _decode(text: str) -> list[DecodedCall]:
    if not isinstance(text, str):
        raise BFCLDecodeError(f"expected text, got {type(text).__name__}")
    s = text.strip("`\n ")
    if not s.startswith("["):
        s = "[" + s
    if not s.endswith("]"):
        s = s + "]"
    tree = _parse(s.strip().strip("'"))
    body = tree.body
    if isinstance(body, ast.Call):
        elements: list[ast.expr] = [body]
    elif isinstance(body, ast.List | ast.Tuple | ast.Set):
        elements = list(body.elts)
    else:
        raise BFCLDecodeError(f"expected a list of calls, got {type(body).__name__}")
    calls = []
    for element in elements:
        if not isinstance(element, ast.Call):
            raise BFCLDecodeError(f"list element is not a call: {_shown(element)!r}")
        calls.append(_call(element))
    return calls


def try_decode(text: str) -> tuple[list[DecodedCall] | None, str]:
    """``(calls, "")`` when ``text`` decodes, else ``(None, reason)``."""
    try:
        return decode(text), ""
    except BFCLDecodeError as e:
        return None, str(e)


def has_call(text: str) -> bool:
    """True when ``text`` decodes to at least one call (BFCL's relevance test)."""
    calls, _ = try_decode(text)
    return bool(calls)


def parse_call_string(source: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """Parse one ground-truth call string such as ``"sort('a.txt')"`` into ``(name, args, kwargs)``.

    Unlike model output, BFCL's ground truth is executed as written, so positional arguments are kept.
    """
    return _guarded(_parse_call_string, source)


def _parse_call_string(source: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    node = _parse(source.strip()).body
    if not isinstance(node, ast.Call):
        raise BFCLDecodeError(f"not a call: {source!r}")
    if any(isinstance(a, ast.Starred) for a in node.args):
        raise BFCLDecodeError(f"starred arguments are not supported: {source!r}")
    call = _call(node)
    return call.name, tuple(literal_value(a) for a in node.args), call.arguments


def format_call(name: str, arguments: dict[str, Any]) -> str:
    """Pythonic text of one call with keyword arguments (``repr`` of each value)."""
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in arguments.items()) + ")"


def format_calls(calls: list[tuple[str, dict[str, Any]]] | list[DecodedCall]) -> str:
    """Pythonic text of a call list, the format BFCL's prompt asks for: ``[f(a=1), g(b='x')]``."""
    parts = [format_call(c.name, c.arguments) if isinstance(c, DecodedCall) else format_call(*c) for c in calls]
    return "[" + ", ".join(parts) + "]"
