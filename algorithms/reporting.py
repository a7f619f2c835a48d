"""What a training run reports about itself: ``summary.json``, the printed summary and ``training.png`` (the
held-out transcripts are the loggers', ``algorithms.metrics``).

The summary compares the base model (the step-0 evaluation) with the final one on the same held-out tasks:
accuracy and mean reward, each accuracy's 95% Wilson interval, and the tasks gained and lost with McNemar's
exact p-value (``agents.scores``). Every function takes what it reads as arguments (the evaluation history,
the solved tasks per evaluated step, the run's facts), not the trainer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.scores import paired_change, wilson_interval
from algorithms.metrics import read_jsonl


def training_summary(history: Sequence[dict[str, Any]], solved: dict[str, Sequence[bool]], *, env: str,
                     algorithm: str, model: str, steps: int, eval_split: str, final_checkpoint: str | None,
                     run_dir: str, device: str, world_size: int, steps_done: int | None = None) -> dict[str, Any]:
    """The run's ``summary.json``.

    ``history``: the evaluation rows in step order (``step``, ``eval/accuracy``, ``eval/reward``); the base
    score is the step-0 row, if there is one, and the final score the last row. ``solved``: per evaluated
    step (a string, as checkpointed), whether each held-out task was solved, for the intervals and the
    paired change. ``steps``: the run's ``total_steps``; ``steps_done``: the last step trained, where a run
    stopped early (``max_steps_this_run``, the time limit).
    """
    base = history[0] if history and history[0]["step"] == 0 else None
    last = history[-1] if history else None
    return {
        "env": env, "algorithm": algorithm, "model": model, "steps": steps,
        "steps_done": steps if steps_done is None else steps_done, "eval_split": eval_split,
        "base_eval_accuracy": base["eval/accuracy"] if base else None,
        "final_eval_accuracy": last["eval/accuracy"] if last else None,
        "base_eval_reward": base["eval/reward"] if base else None,
        "final_eval_reward": last["eval/reward"] if last else None,
        **score_confidence(base, last, solved),
        "final_checkpoint": final_checkpoint, "run_dir": run_dir, "device": device, "world_size": world_size,
    }


def score_confidence(base: dict[str, Any] | None, last: dict[str, Any] | None,
                     solved: dict[str, Sequence[bool]]) -> dict[str, Any]:
    """Wilson intervals of the base and final held-out accuracy (``eval_n`` tasks), and the paired change
    between them; only the figures whose solved tasks were kept."""
    out: dict[str, Any] = {}
    for name, row in (("base", base), ("final", last)):
        tasks = solved.get(str(row["step"])) if row else None
        if tasks:
            out["eval_n"] = len(tasks)
            out[f"{name}_eval_interval"] = list(wilson_interval(sum(tasks), len(tasks)))
    if base and last and str(base["step"]) in solved and str(last["step"]) in solved:
        out["eval_paired"] = paired_change(solved[str(base["step"])], solved[str(last["step"])])
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as printed at the end of a run: base -> trained accuracy with intervals, the paired
    change, where the checkpoint and the run are."""
    def pct(x: float | None) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"

    def interval(key: str) -> str:
        bounds = summary.get(key)
        return f" [{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]" if bounds else ""

    paired = summary.get("eval_paired")
    done, steps = summary.get("steps_done", summary["steps"]), summary["steps"]
    lines = [f"\n{summary['algorithm']} on {summary['env']} ({summary['model']}, "
             f"{steps if done == steps else f'{done} of {steps}'} steps)",
             f"  held-out ({summary['eval_split']}) accuracy: base {pct(summary['base_eval_accuracy'])}"
             f"{interval('base_eval_interval')} -> trained {pct(summary['final_eval_accuracy'])}"
             f"{interval('final_eval_interval')}"
             + (f"  (95% Wilson intervals, n={summary['eval_n']})" if summary.get("eval_n") else "")]
    if paired:
        lines.append(f"  same tasks: {paired['gained']} gained, {paired['lost']} lost "
                     f"(McNemar exact p = {paired['p_value']:.3f})")
    lines += [f"  checkpoint: {summary['final_checkpoint']}", f"  run dir: {summary['run_dir']}"]
    return "\n".join(lines)


def write_training_plot(run_dir: Path) -> Path:
    """PNG of training reward, held-out score and mu over steps, from the run's metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(run_dir / "metrics.jsonl")
    train = [r for r in rows if "reward/mean" in r]
    evals = [r for r in rows if "eval/accuracy" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if train:
        ax.plot([r["step"] for r in train], [r["reward/mean"] for r in train], label="train reward (mean)")
        ax.plot([r["step"] for r in train], [r["mu"] for r in train], "--", label="mu")
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval/accuracy"] for r in evals], "o-", label="held-out accuracy")
    ax.set_xlabel("optimizer step")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(run_dir.name)
    path = run_dir / "training.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_run_report(run_dir: Path, summary: dict[str, Any]) -> str:
    """Write ``summary.json`` and ``training.png`` into ``run_dir``; the summary's text, to print. The plot is
    drawn from ``metrics.jsonl``: a run without the ``jsonl`` logger gets none."""
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    if (run_dir / "metrics.jsonl").exists():
        write_training_plot(run_dir)
    return format_summary(summary)
