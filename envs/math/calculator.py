"""The calculator tool the math environment offers: exact arithmetic on an expression, via ``ast``.

It is a ``tools.Tool`` built with ``@tool``, so its schema, validation and error results follow the
tools package; the work is ``envs.math.arith.evaluate`` (numbers and ``+ - * / // % ** ( )`` only, with
limits on length, exponent and result size; ``^`` means power). Errors (a name, a call, division by
zero, a too-large power) raise ``ValueError`` with a short reason, which the ``Toolset`` returns to the
model as the call's error.
"""

from __future__ import annotations

from envs.math.arith import ArithmeticExpressionError, evaluate, format_number
from tools import Tool, Toolset, tool


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly.

    Args:
        expression: Numbers with + - * / // % ** (or ^) and parentheses, e.g. "12 * (3 + 4) / 7".
    """
    try:
        return format_number(evaluate(expression))
    except ArithmeticExpressionError as e:
        raise ValueError(str(e)) from None


CALCULATOR: Tool = calculator


def calculator_toolset(timeout_s: float = 2.0) -> Toolset:
    """A ``Toolset`` holding only the calculator (the limits in ``arith`` keep each call in milliseconds)."""
    return Toolset([CALCULATOR], timeout_s=timeout_s, max_output_chars=2_000)
