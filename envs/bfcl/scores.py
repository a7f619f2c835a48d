"""BFCL scores from per-entry verdicts: category accuracies, BFCL's aggregates and a markdown table.

Aggregates follow BFCL's summary: non-live AST is the unweighted mean of simple_python, multiple, parallel
and parallel_multiple; live AST pools all entries of the four live AST categories; irrelevance is the
unweighted mean of irrelevance and live_irrelevance (their separate values are reported too); relevance is
live_relevance; multi-turn is the unweighted mean of the four multi-turn categories. An aggregate is
computed over the categories present and is None when none is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

NON_LIVE_AST = ("simple_python", "multiple", "parallel", "parallel_multiple")
LIVE_AST = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
IRRELEVANCE = ("irrelevance", "live_irrelevance")
MULTI_TURN = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")

Accuracies = dict[str, dict[str, float]]


def category_accuracy(results: Iterable[Mapping[str, Any]]) -> Accuracies:
    """``{category: {"correct", "total", "accuracy"}}`` from records with ``"category"`` and ``"valid"``
    (the final ``info`` of ``BFCLEnv`` episodes)."""
    out: Accuracies = {}
    for r in results:
        row = out.setdefault(r["category"], {"correct": 0, "total": 0, "accuracy": 0.0})
        row["total"] += 1
        row["correct"] += int(bool(r["valid"]))
    for row in out.values():
        row["accuracy"] = row["correct"] / row["total"]
    return out


def _mean(per: Accuracies, categories: tuple[str, ...]) -> float | None:
    values = [per[c]["accuracy"] for c in categories if c in per]
    return sum(values) / len(values) if values else None


def _pooled(per: Accuracies, categories: tuple[str, ...]) -> float | None:
    rows = [per[c] for c in categories if c in per]
    total = sum(r["total"] for r in rows)
    return sum(r["correct"] for r in rows) / total if total else None


def aggregates(per: Accuracies) -> dict[str, float | None]:
    """BFCL's summary numbers (fractions in [0, 1]) from ``category_accuracy`` output."""
    return {
        "non_live_ast": _mean(per, NON_LIVE_AST),
        "live_ast": _pooled(per, LIVE_AST),
        "irrelevance": _mean(per, IRRELEVANCE),
        "irrelevance_non_live": _mean(per, ("irrelevance",)),
        "irrelevance_live": _mean(per, ("live_irrelevance",)),
        "relevance": _mean(per, ("live_relevance",)),
        "multi_turn": _mean(per, MULTI_TURN),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def markdown_table(per: Accuracies, baseline: Accuracies | None = None, name: str = "model",
                   baseline_name: str = "baseline") -> str:
    """A markdown table of aggregates then categories (percent), with an optional baseline column."""
    ours, base = aggregates(per), aggregates(baseline) if baseline is not None else None
    header = f"| metric | {name} |" + (f" {baseline_name} |" if base is not None else "")
    rule = "|---|---:|" + ("---:|" if base is not None else "")
    lines = [header, rule]
    for key, value in ours.items():
        if value is None and (base is None or base[key] is None):
            continue
        lines.append(f"| **{key}** | {_pct(value)} |" + (f" {_pct(base[key])} |" if base is not None else ""))
    categories = list(per) + [c for c in (baseline or {}) if c not in per]
    for c in categories:
        mine = per.get(c)
        cell = f"{_pct(mine['accuracy'])} ({int(mine['correct'])}/{int(mine['total'])})" if mine else "-"
        row = f"| {c} | {cell} |"
        if base is not None:
            other = baseline.get(c)
            row += (f" {_pct(other['accuracy'])} ({int(other['correct'])}/{int(other['total'])}) |"
                    if other else " - |")
        lines.append(row)
    return "\n".join(lines)
