"""Two training runs scored on the same held-out tasks: each accuracy with its 95% interval, and McNemar's
exact test on the tasks one run solves and the other does not.

    python -m algorithms.compare_runs runs/native24 runs/vllm23            # the last evaluation of each
    python -m algorithms.compare_runs runs/a runs/b --step 0               # a given step's (0: the base model)

Reads each run's ``eval/step-NNNNNN.jsonl`` (the trainer's held-out transcripts, one task a line with its
``task_id`` and ``reward``; solved = reward >= 1, the accuracy's threshold) and pairs tasks by ``task_id``;
tasks only one run scored are left out and counted. Prints a table and, with ``--json``, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agents.scores import paired_change, wilson_interval


class RunReadError(ValueError):
    """A run directory without the held-out transcripts asked for; the message names the path."""


def held_out_verdicts(run_dir: Path, step: int | None = None) -> tuple[int, dict[str, bool]]:
    """(step, ``task_id -> solved``) of ``run_dir``'s evaluation at ``step`` (None: its last one)."""
    files = sorted((run_dir / "eval").glob("step-*.jsonl"))
    if step is not None:
        files = [f for f in files if f.stem == f"step-{step:06d}"]
    if not files:
        what = "no held-out transcripts" if step is None else f"no held-out transcripts of step {step}"
        raise RunReadError(f"{run_dir / 'eval'}: {what} (eval/step-NNNNNN.jsonl)")
    path = files[-1]
    verdicts: dict[str, bool] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            verdicts[str(row["task_id"])] = float(row["reward"]) >= 1.0
        except (ValueError, KeyError, TypeError) as err:
            raise RunReadError(f"{path}:{number}: not a transcript line with task_id and reward ({err})") from None
    return int(path.stem.split("-")[1]), verdicts


def compare_runs(a: Path, b: Path, step: int | None = None) -> dict[str, Any]:
    """Both runs' accuracies on their shared tasks, with intervals, and the paired change from ``b`` to ``a``."""
    step_a, va = held_out_verdicts(a, step)
    step_b, vb = held_out_verdicts(b, step)
    shared = sorted(set(va) & set(vb))
    if not shared:
        raise RunReadError(f"{a} and {b} scored no task in common")
    solved_a, solved_b = [va[t] for t in shared], [vb[t] for t in shared]
    rows = {}
    for name, run, at, solved in (("a", a, step_a, solved_a), ("b", b, step_b, solved_b)):
        rows[name] = {"run": str(run), "step": at, "correct": sum(solved), "n": len(shared),
                      "accuracy": sum(solved) / len(shared), "interval95": list(wilson_interval(sum(solved), len(shared)))}
    change = paired_change(solved_b, solved_a)  # gained: solved by a, not by b
    return {**rows, "paired": change, "only_a": len(set(va) - set(vb)), "only_b": len(set(vb) - set(va))}


def format_comparison(result: dict[str, Any]) -> str:
    lines = [f"{'run':40s} {'step':>5s} {'solved':>9s} {'accuracy':>9s}  95% interval"]
    for name in ("a", "b"):
        r = result[name]
        lo, hi = r["interval95"]
        lines.append(f"{r['run']:40s} {r['step']:5d} {r['correct']:4d}/{r['n']:<4d} {100 * r['accuracy']:8.1f}%  "
                     f"[{100 * lo:.1f}, {100 * hi:.1f}]")
    p = result["paired"]
    lines.append(f"paired on {p['n']} tasks: {p['gained']} solved only by {result['a']['run']}, {p['lost']} only by "
                 f"{result['b']['run']}; McNemar exact p = {p['p_value']:.3g}")
    if result["only_a"] or result["only_b"]:
        lines.append(f"left out: {result['only_a']} tasks scored only in a, {result['only_b']} only in b")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--step", type=int, default=None, help="the evaluation step to compare (default: each run's last)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    try:
        result = compare_runs(args.run_a, args.run_b, args.step)
    except (RunReadError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_comparison(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
