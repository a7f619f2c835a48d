"""Two models scored on the same held-out tasks: each accuracy with its 95% interval, and McNemar's exact test
on the tasks one solves and the other does not.

    python -m algorithms.compare_runs runs/native24 runs/vllm23            # two training runs: each one's last evaluation
    python -m algorithms.compare_runs runs/a runs/b --step 0               # a given step's (0: the base model)
    python -m algorithms.compare_runs runs/eval/a runs/eval/b              # two agents.evaluate outputs, per suite

A training run is read from its ``eval/step-NNNNNN.jsonl`` (the trainer's held-out transcripts, one task a line
with its ``task_id`` and ``reward``; solved = reward >= 1, the accuracy's threshold) and tasks are paired by
``task_id``. An ``agents.evaluate`` output (its ``out_dir`` or the ``results.json`` in it) is read from its
entries and paired by suite and entry id, so two evaluations run at different times can be set against each
other afterwards: each suite both scored, then BFCL's pooled aggregates (non-live AST, live AST, irrelevance:
all their entries together). Entries only one side scored are left out and counted. Prints a table and, with
``--json``, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agents.scores import mcnemar_exact, paired_change, wilson_interval
from envs.bfcl.scores import IRRELEVANCE, LIVE_AST, NON_LIVE_AST

# Metric -> the agents.evaluate suites whose entries it pools (BFCL's headline aggregates take unweighted means
# over categories, envs/bfcl/scores.py; intervals and paired tests are over the pooled entries).
POOLS: dict[str, tuple[str, ...]] = {
    "non_live_ast": tuple(f"bfcl/{c}" for c in NON_LIVE_AST), "live_ast": tuple(f"bfcl/{c}" for c in LIVE_AST),
    "irrelevance": tuple(f"bfcl/{c}" for c in IRRELEVANCE), "toolace_test": ("toolace/test",),
    "toolace_val": ("toolace/val",)}

Verdicts = dict[tuple[str, str], bool]


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


def is_evaluation(path: Path) -> bool:
    """Whether ``path`` is an ``agents.evaluate`` output (its directory or its ``results.json``)."""
    return path.suffix == ".json" or (path / "results.json").is_file()


def evaluation_verdicts(path: Path) -> Verdicts:
    """``(suite, entry id) -> solved`` of every entry an ``agents.evaluate`` output scored."""
    file = path if path.suffix == ".json" else path / "results.json"
    try:
        entries = json.loads(file.read_text())["entries"]
        return {(str(e["suite"]), str(e["id"])): bool(e["correct"]) for e in entries}
    except FileNotFoundError:
        raise RunReadError(f"{file}: no such file (an agents.evaluate output's results.json)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise RunReadError(f"{file}: not an agents.evaluate results file with entries of suite, id and correct "
                           f"({type(err).__name__}: {err})") from None


def pooled(verdicts: Verdicts, suites: tuple[str, ...]) -> Verdicts:
    """The entries of ``verdicts`` in ``suites``."""
    return {k: v for k, v in verdicts.items() if k[0] in suites}


def paired_on(va: Verdicts, vb: Verdicts) -> dict[str, Any] | None:
    """``a`` against ``b`` on the entries both scored: each one's solved count and the entries gained and lost
    by ``a``, with McNemar's exact p-value (None when they share no entry)."""
    shared = sorted(set(va) & set(vb))
    if not shared:
        return None
    gained = sum(va[k] and not vb[k] for k in shared)
    lost = sum(vb[k] and not va[k] for k in shared)
    return {"n": len(shared), "a_correct": sum(va[k] for k in shared), "b_correct": sum(vb[k] for k in shared),
            "gained": gained, "lost": lost, "p_value": mcnemar_exact(gained, lost)}


def compare_evaluations(a: Path, b: Path) -> dict[str, Any]:
    """Two ``agents.evaluate`` outputs paired per suite and per BFCL pool (``POOLS`` of several suites)."""
    va, vb = evaluation_verdicts(a), evaluation_verdicts(b)
    metrics: dict[str, dict[str, Any]] = {}
    suites = sorted({k[0] for k in va} & {k[0] for k in vb})
    pools = [(m, p) for m, p in POOLS.items() if len(set(p) & set(suites)) > 1]  # one suite: its own row says it
    for name, members in [(s, (s,)) for s in suites] + pools:
        paired = paired_on(pooled(va, members), pooled(vb, members))
        if paired is not None:
            metrics[name] = paired
    if not metrics:
        raise RunReadError(f"{a} and {b} scored no entry in common")
    return {"a": str(a), "b": str(b), "metrics": metrics, "only_a": len(set(va) - set(vb)),
            "only_b": len(set(vb) - set(va))}


def format_evaluations(result: dict[str, Any]) -> str:
    def score(correct: int, n: int) -> str:
        lo, hi = wilson_interval(correct, n)
        return f"{100 * correct / n:5.1f} [{100 * lo:4.1f}, {100 * hi:5.1f}]"

    lines = [f"a = {result['a']}", f"b = {result['b']}",
             f"{'metric':28s} {'n':>5s}  {'a (95% interval)':20s} {'b (95% interval)':20s} {'a+':>4s} {'b+':>4s}  McNemar p"]
    for name, m in result["metrics"].items():
        lines.append(f"{name:28s} {m['n']:5d}  {score(m['a_correct'], m['n']):20s} {score(m['b_correct'], m['n']):20s} "
                     f"{m['gained']:4d} {m['lost']:4d}  {m['p_value']:.3g}")
    lines.append("a+: entries only a solves; b+: only b")
    if result["only_a"] or result["only_b"]:
        lines.append(f"left out: {result['only_a']} entries scored only in a, {result['only_b']} only in b")
    return "\n".join(lines)


def compare_runs(a: Path, b: Path, step: int | None = None) -> dict[str, Any]:
    """Both runs' accuracies on their shared tasks, with intervals, and the paired change from ``b`` to ``a``;
    for two ``agents.evaluate`` outputs, ``compare_evaluations``."""
    if is_evaluation(a) or is_evaluation(b):
        if not (is_evaluation(a) and is_evaluation(b)):
            evaluation, run = (a, b) if is_evaluation(a) else (b, a)
            raise RunReadError(f"{evaluation} is an agents.evaluate output and {run} is not: compare two of a kind")
        if step is not None:
            raise RunReadError(f"--step is for training runs; {a} and {b} are agents.evaluate outputs")
        return compare_evaluations(a, b)
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
    print(format_evaluations(result) if "metrics" in result else format_comparison(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
