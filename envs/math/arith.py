"""Safe exact arithmetic on expression text: the calculator's engine and the expert solutions' source.

Nothing here calls ``eval``. An expression is parsed with ``ast.parse(mode="eval")`` and only number
literals, ``+ - * / // % **`` and unary ``+ -`` are accepted; every other node (names, calls, attributes,
comparisons...) is an ``ArithmeticExpressionError``. Values are ``fractions.Fraction`` so that ``1/3*3`` is
exactly 1; a non-integer power falls back to ``float``. Limits on text length, node count, exponent size
and result size keep ``9**9**9**9`` from eating the machine: the cost of a power is estimated from the
bit lengths *before* it is computed.

``solution_steps`` evaluates one operation at a time in Python's order (innermost, leftmost first) and
returns each step, which is what a worked solution for ``basic_arithmetic``/``chain_sum`` looks like.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from fractions import Fraction

Number = Fraction | float

MAX_CHARS = 500  # expression text
MAX_NODES = 200  # AST nodes
MAX_EXPONENT = 1_000  # |exponent| of an exact power
MAX_RESULT_BITS = 20_000  # ~6000 decimal digits, for any intermediate numerator/denominator

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
           ast.Pow: "**"}
# Python precedence, higher binds tighter (used to render steps with only the parentheses needed).
_PREC = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2, ast.FloorDiv: 2, ast.Mod: 2, "unary": 3,
         ast.Pow: 4}


class ArithmeticExpressionError(ValueError):
    """The text is not plain arithmetic, or evaluating it breaks a limit (the message says which)."""


# -- parsing ------------------------------------------------------------------------------------------

def parse_expression(text: str) -> ast.expr:
    """Parse ``text`` into an arithmetic-only AST, or raise ``ArithmeticExpressionError``.

    ``^`` is read as power (as people and LaTeX write it) and ``×``/``÷`` as ``*``/``/``.
    """
    if not isinstance(text, str):
        raise ArithmeticExpressionError(f"expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise ArithmeticExpressionError(f"expression too long ({len(text)} > {MAX_CHARS} characters)")
    src = text.strip().replace("^", "**").replace("×", "*").replace("÷", "/").replace("−", "-")
    if not src:
        raise ArithmeticExpressionError("empty expression")
    try:
        tree = ast.parse(src, mode="eval").body
    except SyntaxError as e:
        raise ArithmeticExpressionError(f"not a valid arithmetic expression: {e.msg}") from None
    nodes = 0
    for node in ast.walk(tree):
        nodes += 1
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ArithmeticExpressionError(f"only numbers are allowed, got {node.value!r}")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise ArithmeticExpressionError(f"operator {type(node.op).__name__} is not allowed")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.UAdd | ast.USub):
                raise ArithmeticExpressionError(f"operator {type(node.op).__name__} is not allowed")
        elif not isinstance(node, ast.operator | ast.unaryop):
            raise ArithmeticExpressionError(f"{type(node).__name__} is not allowed: use numbers and + - * / ** ( )")
    if nodes > MAX_NODES:
        raise ArithmeticExpressionError(f"expression too large ({nodes} > {MAX_NODES} nodes)")
    return tree


# -- evaluation ---------------------------------------------------------------------------------------

def _literal(value: int | float) -> Number:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArithmeticExpressionError("non-finite number")
        return Fraction(repr(value))
    return Fraction(value)


def _check_size(value: Number) -> Number:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArithmeticExpressionError("result overflows")
        return value
    if value.numerator.bit_length() > MAX_RESULT_BITS or value.denominator.bit_length() > MAX_RESULT_BITS:
        raise ArithmeticExpressionError("result too large")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1 and isinstance(base, Fraction):
        e = exponent.numerator
        if abs(e) > MAX_EXPONENT:
            raise ArithmeticExpressionError(f"exponent too large (|{e}| > {MAX_EXPONENT})")
        bits = max(base.numerator.bit_length(), base.denominator.bit_length())
        if bits * abs(e) > MAX_RESULT_BITS:
            raise ArithmeticExpressionError("result too large")
        if base == 0 and e < 0:
            raise ArithmeticExpressionError("division by zero")
        return base**e
    b, x = float(base), float(exponent)
    if abs(x) > MAX_EXPONENT:
        raise ArithmeticExpressionError(f"exponent too large (|{x}| > {MAX_EXPONENT})")
    if b < 0:
        raise ArithmeticExpressionError("fractional power of a negative number")
    if b == 0 and x < 0:
        raise ArithmeticExpressionError("division by zero")
    try:
        return b**x
    except OverflowError:
        raise ArithmeticExpressionError("result overflows") from None


def apply_binop(op: ast.operator, left: Number, right: Number) -> Number:
    """One binary operation on exact values, with the limits applied."""
    if isinstance(op, ast.Add):
        out = left + right
    elif isinstance(op, ast.Sub):
        out = left - right
    elif isinstance(op, ast.Mult):
        out = left * right
    elif isinstance(op, ast.Pow):
        out = _power(left, right)
    else:
        if right == 0:
            raise ArithmeticExpressionError("division by zero")
        if isinstance(op, ast.Div):
            out = left / right
        elif isinstance(op, ast.FloorDiv):
            out = Fraction(math.floor(left / right))
        else:
            out = left % right
    return _check_size(out)


def _eval(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        return _literal(node.value)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return apply_binop(node.op, _eval(node.left), _eval(node.right))
    raise ArithmeticExpressionError(f"{type(node).__name__} is not allowed")  # parse_expression stops these


def evaluate(text: str) -> Number:
    """Evaluate arithmetic ``text`` exactly: a ``Fraction``, or a ``float`` after a non-integer power."""
    return _eval(parse_expression(text))


def format_number(value: Number, max_decimals: int = 12) -> str:
    """Render a value the way a worked solution writes it: ``42``, ``0.25``, ``-7/3``.

    A fraction whose decimal expansion terminates within ``max_decimals`` digits is written as a decimal;
    otherwise as ``p/q``. Floats use ``repr`` trimmed of a trailing ``.0``.
    """
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    twos = fives = 0
    while d % 2 == 0:
        d //= 2
        twos += 1
    while d % 5 == 0:
        d //= 5
        fives += 1
    digits = max(twos, fives)
    if d == 1 and digits <= max_decimals:
        scaled = abs(value.numerator) * 10**digits // value.denominator
        sign = "-" if value < 0 else ""
        whole, frac = divmod(scaled, 10**digits)
        return f"{sign}{whole}.{frac:0{digits}d}".rstrip("0")
    return f"{value.numerator}/{value.denominator}"


# -- step-by-step solutions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One reduction: ``left op right = value``, and the whole expression after it."""

    operation: str
    value: str
    expression: str


def _fold_literals(node: ast.expr) -> ast.expr:
    """Turn ``-3`` (a unary minus on a literal) into a negative constant so it is not a 'step'."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        value = _literal(node.operand.value)
        return ast.Constant(-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.UnaryOp):
        return ast.UnaryOp(node.op, _fold_literals(node.operand))
    if isinstance(node, ast.BinOp):
        return ast.BinOp(_fold_literals(node.left), node.op, _fold_literals(node.right))
    if isinstance(node, ast.Constant):
        return ast.Constant(_literal(node.value))
    return node


def render(node: ast.expr, parent_prec: int = 0, right_side: bool = False) -> str:
    """Write an (exact-valued) arithmetic AST with the parentheses its structure needs."""
    if isinstance(node, ast.Constant):
        text = format_number(node.value)
        if parent_prec > 0 and "/" in text:
            return f"({text})"
        if text.startswith("-") and (right_side or parent_prec >= _PREC["unary"]):
            return f"({text})"
        return text
    if isinstance(node, ast.UnaryOp):
        sign = "-" if isinstance(node.op, ast.USub) else "+"
        inner = render(node.operand, _PREC["unary"], True)
        if isinstance(node.operand, ast.Constant) and not inner.startswith("("):
            inner = f"({inner})"  # -(7), never a bare -7 that reads like a literal
        return f"({sign}{inner})" if parent_prec > _PREC["unary"] else f"{sign}{inner}"
    assert isinstance(node, ast.BinOp)
    prec = _PREC[type(node.op)]
    right_assoc = isinstance(node.op, ast.Pow)
    left = render(node.left, prec + (1 if right_assoc else 0), False)
    right = render(node.right, prec + (0 if right_assoc else 1), True)
    text = f"{left} {_BINOPS[type(node.op)]} {right}"
    return f"({text})" if prec < parent_prec else text


def _reduce_once(node: ast.expr) -> tuple[ast.expr, str | None, Number | None]:
    """Apply the first operation whose operands are both numbers; return (tree, operation, value)."""
    if isinstance(node, ast.Constant):
        return node, None, None
    if isinstance(node, ast.UnaryOp):
        inner, op_text, value = _reduce_once(node.operand)
        if op_text is not None:
            return ast.UnaryOp(node.op, inner), op_text, value
        v = -inner.value if isinstance(node.op, ast.USub) else inner.value
        return ast.Constant(v), render(node), v
    assert isinstance(node, ast.BinOp)
    for side in ("left", "right"):
        child, op_text, value = _reduce_once(getattr(node, side))
        if op_text is not None:
            new = ast.BinOp(child, node.op, node.right) if side == "left" else ast.BinOp(node.left, node.op, child)
            return new, op_text, value
    value = apply_binop(node.op, node.left.value, node.right.value)
    return ast.Constant(value), render(node), value


def solution_steps(text: str, max_steps: int = 64) -> tuple[list[Step], Number]:
    """Evaluate ``text`` one operation at a time; return the steps and the exact value."""
    tree = _fold_literals(parse_expression(text))
    steps: list[Step] = []
    while not isinstance(tree, ast.Constant):
        if len(steps) >= max_steps:
            raise ArithmeticExpressionError(f"more than {max_steps} steps")
        tree, op_text, value = _reduce_once(tree)
        steps.append(Step(op_text or "", format_number(value), render(tree)))
    return steps, tree.value
