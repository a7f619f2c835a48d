r"""Expert (demonstration) solutions: worked reasoning that ends in ``\boxed{answer}``.

- ``gsm_symbolic``: reasoning-gym's ``answer_cot`` with its ``#### N`` line replaced by the boxed answer;
- ``basic_arithmetic`` / ``chain_sum``: computed here, one operation per line, from the expression with the
  safe evaluator in ``envs.math.arith`` (never ``eval``);
- JSONL: the row's ``solution`` (boxed as is, or followed by a boxed final line).

The environment scores every expert text with its own reward before handing it out; only a +1 text is
used (see ``MathEnv``), so a wrong gold answer or a broken solution never becomes a demonstration.
"""

from __future__ import annotations

from envs.math.answer import last_boxed
from envs.math.arith import ArithmeticExpressionError, format_number, solution_steps
from envs.math.problems import Problem


def split_final_mark(cot: str) -> tuple[str, str | None] | None:
    r"""``(text before, its result)`` of a stripped GSM-style solution whose last line states ``#### N`` (the
    result is ``None`` when the mark states none), else ``None``. The mark is the first ``####`` after which
    at most one line of text follows, as ``re.search(r"\n?\s*####\s*(\S.*)?\s*$")`` finds it, but with
    string operations: that expression is quadratic in a run of blanks."""
    last_line = cot.rfind("\n") + 1
    before = cot[:last_line].rstrip()
    if before.endswith("####"):  # the mark ends its line and the result is the last line
        i = len(before) - 4
    else:
        i = cot.find("####", last_line)
        if i < 0:
            return None
    return cot[:i].rstrip(), cot[i + 4:].strip() or None


def final_line(answer: str) -> str:
    r"""The closing sentence of every expert solution: ``The final answer is \boxed{answer}.``"""
    return f"The final answer is \\boxed{{{answer}}}."


def arithmetic_solution(expression: str) -> str | None:
    """A step-by-step evaluation of ``expression`` boxing the value it computes (not the gold answer, so
    that scoring it checks the gold); ``None`` if it cannot be computed within limits."""
    try:
        steps, value = solution_steps(expression)
    except ArithmeticExpressionError:
        return None
    expr = " ".join(expression.split())
    lines = [f"We evaluate {expr} one operation at a time, following the order of operations "
             "(parentheses first, then multiplication and division, then addition and subtraction, "
             "left to right)."]
    for n, step in enumerate(steps, 1):
        rest = f", so the expression becomes {step.expression}" if step.expression != step.value else ""
        lines.append(f"{n}. {step.operation} = {step.value}{rest}.")
    if not steps:
        lines.append(f"The expression is already a number: {expr}.")
    lines.append(final_line(format_number(value)))  # the computed value, so the reward check means something
    return "\n".join(lines)


def cot_solution(cot: str, answer: str) -> str:
    """A worked solution in prose (GSM-style), its ``#### N`` line replaced by ``\\boxed{N}`` (the gold
    ``answer`` is boxed only when the solution states no result of its own)."""
    if last_boxed(cot) is not None:
        return cot.strip()
    marked = split_final_mark(cot.strip())
    body, stated = marked if marked else (cot.strip(), None)
    final = stated or answer  # the solution's own result if it states one
    return f"{body}\n\n{final_line(final)}" if body else final_line(final)


def expert_solution(problem: Problem) -> str | None:
    """The expert text for ``problem``, or ``None`` when the source gives no way to build one."""
    if problem.solution:
        return cot_solution(problem.solution, problem.answer)
    if problem.expression:
        return arithmetic_solution(problem.expression)
    return None
