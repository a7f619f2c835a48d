"""The paper's comparison at small scale: every method trained under one budget, then judged on BFCL.

    python bench/compare.py                               # all methods, default budget
    python bench/compare.py --methods sft chord_phi --steps 10 --bfcl-limit 50

For each method it runs ``python -m algorithms.train`` (same steps, prompts, rollouts, expert samples and
seed for all; a method that does not roll out or does not use expert data simply skips that part) and
then ``python -m agents.evaluate`` on the trained checkpoint (BFCL non-live AST, live AST, irrelevance, and
the ToolACE held-out split). "original" evaluates the untrained model. Every stage writes its own
output directory and is skipped when that output exists, so an interrupted comparison resumes where it
stopped; the trainer itself resumes from its last checkpoint. Writes ``<out>/compare.json``, a Markdown
table in the shape of the paper's Table 1 (``<out>/compare.md``) and ``<out>/compare.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ["original", "sft", "grpo", "sft_then_grpo", "chord_mu", "chord_phi", "idft"]
BFCL_CATEGORIES = ["simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
                   "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"]


def run(cmd: list[str], log: Path) -> float:
    """Run a stage, its output in ``log``; return its wall time; raise with the log's tail on failure."""
    t0 = time.time()
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}:\n" + log.read_text()[-3000:])
    return time.time() - t0


def train(method: str, args: argparse.Namespace, out: Path) -> tuple[Path | None, float]:
    if method == "original":
        return None, 0.0
    run_dir = out / "runs" / method
    final = run_dir / "checkpoints" / f"step-{args.steps:06d}" / "hf"
    if final.exists():
        return final, 0.0
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "algorithms.train", f"run_dir={run_dir}", f"algorithm={method}",
           f"trainer.total_steps={args.steps}", f"trainer.prompts_per_step={args.prompts}",
           f"algorithm.group_size={args.group_size}", f"trainer.expert_per_step={args.expert}",
           f"trainer.lr={args.lr}", f"seed={args.seed}", "trainer.progress=false",
           f"trainer.eval_every={args.steps}", f"trainer.eval_size={args.val_size}", "env.eval_split=val",
           f"trainer.save_every={args.steps}", *args.train_override]
    seconds = run(cmd, out / f"train-{method}.log")
    return final, seconds


def evaluate(method: str, checkpoint: Path | None, args: argparse.Namespace, out: Path) -> tuple[dict, float]:
    eval_dir = out / "eval" / method
    results = eval_dir / "results.json"
    if results.exists():
        return json.loads(results.read_text())["summary"], 0.0
    cmd = [sys.executable, "-m", "agents.evaluate", f"out_dir={eval_dir}", "suites=[bfcl,toolace]",
           f"bfcl.categories=[{','.join(args.bfcl_categories)}]", f"bfcl.limit={args.bfcl_limit}",
           f"toolace.limit={args.toolace_limit}", f"max_new_tokens={args.max_new_tokens}", "progress=false"]
    if checkpoint is not None:
        cmd.append(f"model_path={checkpoint}")
    seconds = run(cmd, out / f"eval-{method}.log")
    return json.loads(results.read_text())["summary"], seconds


def training_curve(out: Path, method: str) -> list[tuple[int, float]]:
    path = out / "runs" / method / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["step"], r["reward/mean"]) for r in rows if "reward/mean" in r and r.get("mu", 1.0) < 1.0]


def table(rows: list[dict], args: argparse.Namespace) -> str:
    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f}"

    lines = [
        f"Budget: {args.steps} optimizer steps; per step {args.prompts} prompts x {args.group_size} rollouts "
        f"(methods that roll out) and {args.expert} expert trajectories (methods that imitate); lr {args.lr}; "
        f"seed {args.seed}. BFCL: first {args.bfcl_limit} entries per category; ToolACE held-out (test): "
        f"first {args.toolace_limit} tasks.",
        "",
        "| method | BFCL non-live AST | BFCL live AST | BFCL irrelevance | ToolACE held-out | train time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        agg = r["summary"].get("bfcl_aggregates", {})
        toolace = next((v for k, v in r["summary"]["accuracy"].items() if k.startswith("toolace/")), None)
        lines.append(f"| {r['method']} | {pct(agg.get('non_live_ast'))} | {pct(agg.get('live_ast'))} | "
                     f"{pct(agg.get('irrelevance'))} | {pct(toolace)} | {r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        curve = training_curve(out, r["method"])
        if curve:
            left.plot([s for s, _ in curve], [v for _, v in curve], label=r["method"])
    left.set_title("training reward (on-policy batch)")
    left.set_xlabel("step")
    left.legend(fontsize=8)
    names = [r["method"] for r in rows]
    scores = [r["summary"].get("bfcl_aggregates", {}).get("non_live_ast") or 0.0 for r in rows]
    held = [next((v for k, v in r["summary"]["accuracy"].items() if k.startswith("toolace/")), 0.0) for r in rows]
    x = range(len(names))
    right.bar([i - 0.2 for i in x], scores, width=0.4, label="BFCL non-live AST")
    right.bar([i + 0.2 for i in x], held, width=0.4, label="ToolACE held-out")
    right.set_xticks(list(x), names, rotation=30, fontsize=8)
    right.set_ylim(0, 1)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--expert", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-size", type=int, default=24, help="ToolACE validation tasks scored during training")
    parser.add_argument("--bfcl-categories", nargs="+", default=BFCL_CATEGORIES)
    parser.add_argument("--bfcl-limit", type=int, default=50)
    parser.add_argument("--toolace-limit", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "compare")
    parser.add_argument("--train-override", nargs="*", default=[], help="extra Hydra overrides for every run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    for method in args.methods:
        checkpoint, train_s = train(method, args, args.out)
        summary, eval_s = evaluate(method, checkpoint, args, args.out)
        rows.append({"method": method, "summary": summary, "train_seconds": train_s, "eval_seconds": eval_s})
        print(f"{method}: train {train_s:.0f} s, eval {eval_s:.0f} s, "
              f"BFCL {summary.get('bfcl_aggregates', {})}", flush=True)
    (args.out / "compare.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                        "rows": rows}, indent=1))
    (args.out / "compare.md").write_text(table(rows, args))
    plot(rows, args.out)
    print(table(rows, args))


if __name__ == "__main__":
    main()
