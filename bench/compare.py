"""The paper's comparison at small scale: every method trained under one budget, then judged on BFCL.

    python bench/compare.py                                    # the seven methods, full BFCL, 200 ToolACE tasks
    python bench/compare.py --methods sft chord_phi --steps 10 --bfcl-limit 50
    python bench/compare.py --methods grpo grpo_ds chord_mu chord_mu_ds   # with and without dynamic sampling
    python bench/compare.py --methods sft chord_mu --lr 1e-4 --val-only      # tuning: validation score only
    python bench/compare.py --parallel 4 ...                   # on a GPU: four methods at once
    python bench/compare.py --table-only --out runs/compare-gpu  # the table again, from the files alone
    OMP_NUM_THREADS=1 python bench/compare.py --parallel 2 ... # on 2 CPU cores: one core per run

For each method it runs ``python -m algorithms.train`` (same steps, prompts, rollouts, expert samples and
seed for all; a method that does not roll out or does not use expert data simply skips that part) and
then ``python -m agents.evaluate`` on the trained checkpoint (BFCL non-live AST, live AST, irrelevance, and
the ToolACE held-out split). "original" evaluates the untrained model. The expert pool is the first
``--expert-tasks`` ToolACE train tasks for every method; the ``hd_*`` methods train on that pool rewritten
once by Hinted Decoding (``python -m algorithms.realign``; a task whose rewrite the verifier rejects keeps
its original episode), so the HD rows differ from SFT/IDFT/CHORD-mu in the data alone.

Every stage writes its own output directory and is skipped when that output exists, so an interrupted
comparison resumes where it stopped; the trainer itself resumes from its last checkpoint. Each stage's
wall time is in ``compare.json`` and the trainer's per-step split (rollout, train) in each run's
``metrics.jsonl``. Each method is scored in three stages of its own after training, in this order: BFCL
non-live AST and irrelevance with the ToolACE held-out split, ToolACE val (the number to tune on: the first
``--val-size`` val tasks, greedy, the training turn length) and BFCL live AST. The trainers only train and save,
so a run killed while it is scored keeps its checkpoint. For a machine lent for a fixed time,
``--train-minutes`` stops each training run at a step boundary (its checkpoint is scored, the table gives its
steps) and ``--deadline-minutes`` starts no stage after the deadline and stops one still running then; the
table holds what finished, and ``--table-only`` rebuilds it from an output directory's ``eval/``,
``runs/*/metrics.jsonl`` and ``budget.json`` alone (a comparison cut short, or copied back from another machine).
Every score carries its 95% Wilson interval, and the pairs the comparison is about (CHORD against SFT,
SFT-then-GRPO, GRPO and IDFT; each ``_ds`` method against the same without dynamic sampling; every method
against the untrained model) get McNemar's exact test on the entries both scored (ToolACE val included).
Writes ``<out>/compare.json``, a Markdown table in the shape of the paper's Table 1 with the paired tests
below it (``<out>/compare.md``) and ``<out>/compare.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.scores import wilson_interval  # noqa: E402
from algorithms.checkpoint import latest_checkpoint  # noqa: E402
from algorithms.compare_runs import POOLS, Verdicts, paired_on, pooled  # noqa: E402

# method -> (algorithm config, trains on the Hinted-Decoding rewrite of the expert pool, extra overrides)
DYNAMIC = ("trainer.dynamic_sampling=true",)
METHODS: dict[str, tuple[str | None, bool, tuple[str, ...]]] = {
    "original": (None, False, ()), "sft": ("sft", False, ()), "grpo": ("grpo", False, ()),
    "sft_then_grpo": ("sft_then_grpo", False, ()), "chord_mu": ("chord_mu", False, ()),
    "chord_phi": ("chord_phi", False, ()), "idft": ("idft", False, ()),
    "grpo_ds": ("grpo", False, DYNAMIC), "sft_then_grpo_ds": ("sft_then_grpo", False, DYNAMIC),
    "chord_mu_ds": ("chord_mu", False, DYNAMIC), "chord_phi_ds": ("chord_phi", False, DYNAMIC),
    "hd_sft": ("sft", True, ()), "hd_idft": ("idft", True, ()), "hd_chord": ("chord_mu", True, ()),
}
DEFAULT_METHODS = ["original", "sft", "grpo", "sft_then_grpo", "chord_mu", "chord_phi", "idft"]
# The comparisons the bar is stated on, and each method against the untrained model.
GOAL_PAIRS = [("chord_phi", "sft"), ("chord_mu", "sft"), ("chord_phi", "sft_then_grpo"),
              ("chord_mu", "sft_then_grpo"), ("chord_mu", "grpo"), ("chord_phi", "idft"),
              ("grpo_ds", "grpo"), ("chord_mu_ds", "chord_mu"), ("chord_phi_ds", "chord_phi")]
BFCL_CATEGORIES = ["simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
                   "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"]
_realign_lock = threading.Lock()


class StageCut(RuntimeError):
    """A stage not started, or stopped, because the comparison's ``--deadline-minutes`` had passed."""


def run(cmd: list[str], log: Path, deadline: float | None = None) -> float:
    """Run a stage, its output in ``log``; return its wall time; raise with the log's tail on failure, and
    ``StageCut`` when ``deadline`` (a ``time.time()``) has passed before it starts or while it runs (the stage's
    whole process group is stopped then)."""
    t0 = time.time()
    if deadline is not None and t0 >= deadline:
        raise StageCut(f"not started: the deadline had passed ({log.stem})")
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            returncode = proc.wait(timeout=None if deadline is None else max(1.0, deadline - t0))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise StageCut(f"stopped at the deadline after {time.time() - t0:.0f} s ({log.stem})") from None
        except BaseException:  # Ctrl-C: the stage runs in its own session, so it must be stopped here
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    if returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}:\n" + log.read_text()[-3000:])
    return time.time() - t0


def realigned_pool(args: argparse.Namespace, out: Path) -> tuple[Path, float]:
    """The expert pool rewritten by Hinted Decoding, made once (the HD methods share it)."""
    with _realign_lock:
        path = out / "realign" / "realigned.jsonl"
        if path.exists() and (out / "realign" / "report.json").exists():
            return path, 0.0
        cmd = [sys.executable, "-m", "algorithms.realign", "env=toolace", f"model={args.model}",
               f"out_dir={out / 'realign'}",
               f"seed={args.seed}", f"realign.num_samples={args.expert_tasks}", "realign.fallback_to_original=true",
               f"realign.batch_size={args.realign_batch_size}", f"realign.max_new_tokens={args.max_new_tokens}"]
        return path, run(cmd, out / "realign.log", args.deadline)


def train(method: str, args: argparse.Namespace, out: Path) -> tuple[Path | None, float, float]:
    """Train ``method``; returns (its last HF checkpoint, training seconds, realign seconds). Under
    ``--train-minutes`` a run may stop before ``--steps`` (at a step boundary, with a checkpoint): its last
    checkpoint is the one scored, and the table says how many steps it took."""
    algorithm, hinted, extra = METHODS[method]
    if algorithm is None:
        return None, 0.0, 0.0
    run_dir = out / "runs" / method
    final = run_dir / "checkpoints" / f"step-{args.steps:06d}" / "hf"
    realign_s = 0.0
    data = [f"trainer.expert_tasks={args.expert_tasks}"]
    if hinted:
        pool, realign_s = realigned_pool(args, out)
        data = [f"trainer.expert_data={pool}"]
    if final.exists():
        return final, 0.0, realign_s
    run_dir.mkdir(parents=True, exist_ok=True)
    limit = [] if args.train_minutes is None else [f"trainer.time_limit_minutes={args.train_minutes}"]
    cmd = [sys.executable, "-m", "algorithms.train", f"run_dir={run_dir}", f"algorithm={algorithm}", f"model={args.model}",
           f"trainer.total_steps={args.steps}", f"trainer.prompts_per_step={args.prompts}",
           f"algorithm.group_size={args.group_size}", f"trainer.expert_per_step={args.expert}",
           f"trainer.lr={args.lr}", f"seed={args.seed}", "trainer.progress=false",
           f"trainer.max_new_tokens={args.max_new_tokens}", f"trainer.eval_max_new_tokens={args.max_new_tokens}",
           "trainer.eval_every=0", f"trainer.save_every={args.steps}", *limit, *data, *extra, *args.train_override]
    seconds = run(cmd, out / f"train-{method}.log", args.deadline)
    last = latest_checkpoint(run_dir / "checkpoints")
    if last is None:
        raise RuntimeError(f"{run_dir / 'checkpoints'}: the run finished without a checkpoint")
    return last / "hf", seconds, realign_s


def evaluation(name: str, overrides: list[str], args: argparse.Namespace, out: Path) -> tuple[dict, float]:
    """``python -m agents.evaluate`` into ``<out>/eval/<name>`` (skipped when its results exist); returns
    (the results' summary, seconds)."""
    results = out / "eval" / name / "results.json"
    seconds = 0.0
    if not results.exists():
        seconds = run([sys.executable, "-m", "agents.evaluate", f"out_dir={results.parent}", f"model={args.model}",
                       f"batch_size={args.eval_batch_size}", "progress=false", *overrides], out / f"eval-{name}.log",
                      args.deadline)
    return json.loads(results.read_text())["summary"], seconds


def stage_names(method: str) -> tuple[str, str, str]:
    """The directories under ``eval/`` that ``method``'s scoring stages write: (headline, val, live)."""
    return method, f"{method}-val", f"{method}-live"


def eval_stages(method: str, checkpoint: Path | None, args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """``method``'s scoring stages, each an ``agents.evaluate`` run of its own, in the order they run (so that a
    comparison cut by its deadline has the headline numbers first): BFCL non-live AST and irrelevance with the
    ToolACE held-out split (``<method>``), ToolACE val, the number to tune on (``<method>-val``, greedy, the
    training turn length), and BFCL live AST (``<method>-live``). ``--val-only`` keeps the val stage alone."""
    headline, val_name, live_name = stage_names(method)
    model = [f"model_path={checkpoint}"] if checkpoint is not None else []
    limit = f"bfcl.limit={'null' if args.bfcl_limit is None else args.bfcl_limit}"
    val = (val_name, ["suites=[toolace]", "toolace.split=val", f"toolace.limit={args.val_size}",
                      f"max_new_tokens={args.max_new_tokens}", *model])
    if args.val_only:
        return [val]
    live = [c for c in args.bfcl_categories if c.startswith("live_")]
    other = [c for c in args.bfcl_categories if not c.startswith("live_")]
    stages = [(headline, [f"suites=[{'bfcl,' if other else ''}toolace]", f"bfcl.categories=[{','.join(other)}]",
                          limit, f"toolace.limit={args.toolace_limit}", f"max_new_tokens={args.eval_max_new_tokens}",
                          *model]),
              val]
    if live:
        stages.append((live_name, ["suites=[bfcl]", f"bfcl.categories=[{','.join(live)}]", limit,
                                   f"max_new_tokens={args.eval_max_new_tokens}", *model]))
    return stages


def run_method(method: str, args: argparse.Namespace) -> dict:
    """Train then score one method; its row of the table. With ``--val-only`` (tuning) only the validation
    score is read: BFCL and the test split stay unseen. A stage cut by the deadline leaves the row with the
    stages that finished (and ``cut`` naming the first one missing)."""
    timing = {"train_seconds": 0.0, "eval_seconds": 0.0, "realign_seconds": 0.0}
    try:
        checkpoint, timing["train_seconds"], timing["realign_seconds"] = train(method, args, args.out)
        for name, overrides in eval_stages(method, checkpoint, args):
            timing["eval_seconds"] += evaluation(name, overrides, args, args.out)[1]
    except StageCut as cut:
        print(f"{method}: {cut}", file=sys.stderr, flush=True)
        return {**collect_row(method, args.out), **timing, "cut": str(cut)}
    row = {**collect_row(method, args.out), **timing}
    if method != "original":
        print(f"{method}: train {timing['train_seconds']:.0f} s, eval {timing['eval_seconds']:.0f} s, "
              f"BFCL {row['summary'].get('bfcl_aggregates', {})}", flush=True)
    return row


def stage_results(out: Path, method: str) -> Iterator[tuple[str, dict]]:
    """``(stage name, its results.json)`` for each of ``method``'s scoring stages (``eval_stages``) that finished."""
    for name in stage_names(method):
        path = out / "eval" / name / "results.json"
        if path.exists():
            yield name, json.loads(path.read_text())


def collect_row(method: str, out: Path) -> dict:
    """``method``'s row read from what its stages left in ``out``: the scores of every stage that finished
    (accuracies and BFCL aggregates merged; a later stage fills what an earlier one left empty), the val score,
    and the steps its run took. So a table can be rebuilt from a comparison's files (``--table-only``), also
    one cut short or copied from another machine."""
    summary: dict = {"accuracy": {}, "interval95": {}, "bfcl_aggregates": {}}
    val, val_interval = None, None
    val_name = stage_names(method)[1]
    for name, results in stage_results(out, method):
        stage = results["summary"]
        if name == val_name:
            val, val_interval = stage["accuracy"].get("toolace/val"), stage["interval95"].get("toolace/val")
            continue
        for key in ("accuracy", "interval95"):
            summary[key] |= stage.get(key, {})
        summary["bfcl_aggregates"] |= {k: v for k, v in stage.get("bfcl_aggregates", {}).items()
                                       if v is not None or k not in summary["bfcl_aggregates"]}
    steps = max((r["step"] for r in metric_rows(out, method) if "step" in r), default=0)
    return {"method": method, "summary": summary, "val_accuracy": val, "val_interval": val_interval, "steps": steps}


def method_row(method: str, future, args: argparse.Namespace) -> dict:
    """The finished method's row; a failed method is reported with its error and does not stop the others."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - any stage failure is recorded in the table
        print(f"{method}: FAILED: {err}", file=sys.stderr, flush=True)
        return {**collect_row(method, args.out), "error": str(err)[-2000:],
                "train_seconds": 0.0, "eval_seconds": 0.0, "realign_seconds": 0.0}


def metric_rows(out: Path, method: str) -> list[dict]:
    """Every row of ``method``'s ``metrics.jsonl`` (none if it did not train)."""
    path = out / "runs" / method / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def training_seconds(out: Path, method: str) -> float:
    """The run's own training time (its steps and evaluations, from metrics.jsonl), so that a comparison
    resumed after an interruption still reports what each run cost."""
    return sum(r.get("time/step_s", 0.0) + r.get("time/eval_s", 0.0) for r in metric_rows(out, method))


def training_curve(out: Path, method: str) -> list[tuple[int, float]]:
    return [(r["step"], r["reward/mean"]) for r in metric_rows(out, method)
            if "reward/mean" in r and r.get("mu", 1.0) < 1.0]


def entry_verdicts(out: Path, method: str) -> Verdicts:
    """``(suite, entry id) -> solved`` for every entry ``method`` was scored on (empty if none), over all its
    scoring stages (BFCL, ToolACE test, ToolACE val, BFCL live)."""
    verdicts: Verdicts = {}
    for _, results in stage_results(out, method):
        verdicts |= {(e["suite"], str(e["id"])): bool(e["correct"]) for e in results["entries"]}
    return verdicts


def pooled_interval(verdicts: Verdicts, metric: str) -> tuple[float, float, int] | None:
    """The 95% Wilson interval of ``metric``'s pooled entries (``POOLS``) and their number (None when none was scored)."""
    entries = pooled(verdicts, POOLS[metric])
    if not entries:
        return None
    lo, hi = wilson_interval(sum(entries.values()), len(entries))
    return lo, hi, len(entries)


def pooled_accuracy(verdicts: Verdicts, metric: str) -> float | None:
    """The share of ``metric``'s pooled entries solved (None when none was scored)."""
    entries = pooled(verdicts, POOLS[metric])
    return sum(entries.values()) / len(entries) if entries else None


def paired_tests(rows: list[dict], out: Path) -> list[dict]:
    """Each ``GOAL_PAIRS`` pair (and each method against ``original``) that both rows have, per metric: entries
    gained and lost by the first against the second on the same entries, McNemar's exact p-value."""
    present = {r["method"] for r in rows if "error" not in r}
    pairs = [p for p in GOAL_PAIRS if set(p) <= present]
    pairs += [(m, "original") for m in sorted(present) if m != "original" and "original" in present]
    verdicts = {m: entry_verdicts(out, m) for m in present}
    tests = []
    for a, b in pairs:
        for metric, suites in POOLS.items():
            paired = paired_on(pooled(verdicts[a], suites), pooled(verdicts[b], suites))
            if paired is None:
                continue
            tests.append({"method": a, "against": b, "metric": metric, "n": paired["n"],
                          "accuracy": paired["a_correct"] / paired["n"],
                          "against_accuracy": paired["b_correct"] / paired["n"],
                          "gained": paired["gained"], "lost": paired["lost"], "p_value": paired["p_value"]})
    return tests


def row_note(row: dict) -> str:
    """What the table says about a row that is not whole: its failure (first line) or the stage the deadline cut."""
    text = row.get("error") or row.get("cut") or ""
    return text.strip().splitlines()[0][:160].replace("|", "/") if text.strip() else ""


def table(rows: list[dict], args: argparse.Namespace) -> str:
    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f}"

    def cell(x: float | None, interval: tuple[float, float, int] | list | None, pooled: float | None = None) -> str:
        """``x`` with its interval; where the interval is over pooled entries whose accuracy differs from ``x``
        (BFCL's aggregate: a mean over categories), that pooled accuracy too, so the interval has its centre."""
        if x is None:
            return "—"
        bounds = f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else ""
        if pooled is not None and interval and round(100 * pooled, 1) != round(100 * x, 1):
            return f"{pct(x)} (pooled {pct(pooled)} {bounds})"
        return f"{pct(x)} {bounds}".rstrip()

    limit = "all" if args.bfcl_limit is None else f"first {args.bfcl_limit}"
    minutes = getattr(args, "train_minutes", None)
    stop = "" if minutes is None else f"; a run not done after {minutes:g} min of training stopped there (steps: what it took)"
    lines = [
        f"Budget: {args.steps} optimizer steps; per step {args.prompts} prompts x {args.group_size} rollouts "
        f"(methods that roll out; `_ds`: with dynamic sampling, which draws more) and {args.expert} expert "
        f"trajectories (methods that imitate); lr {args.lr}; seed {args.seed}; {args.max_new_tokens} new tokens per "
        f"turn{stop}; expert pool: the first {args.expert_tasks} ToolACE train tasks (hd_*: rewritten by Hinted "
        f"Decoding). BFCL: {limit} entries per category; ToolACE held-out (test): first {args.toolace_limit} "
        f"tasks; ToolACE val: first {args.val_size} validation tasks, {args.max_new_tokens} tokens a turn. "
        f"Percent, with the 95% Wilson interval in brackets; a BFCL aggregate is BFCL's own (non-live AST and "
        f"irrelevance: unweighted means of their categories); its interval is over the pooled entries, whose "
        f"accuracy is given beside it where it differs.",
        "",
        "| method | BFCL non-live AST | BFCL live AST | BFCL irrelevance | ToolACE held-out (test) | ToolACE val "
        "| steps | training time (s) | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        agg = r["summary"].get("bfcl_aggregates", {})
        verdicts = entry_verdicts(args.out, r["method"])
        toolace = next((v for k, v in r["summary"]["accuracy"].items() if k.startswith("toolace/")), None)
        bfcl = {m: cell(agg.get(m), pooled_interval(verdicts, m), pooled_accuracy(verdicts, m))
                for m in ("non_live_ast", "live_ast", "irrelevance")}
        lines.append(f"| {r['method']} | {bfcl['non_live_ast']} | {bfcl['live_ast']} | {bfcl['irrelevance']} | "
                     f"{cell(toolace, pooled_interval(verdicts, 'toolace_test'))} | "
                     f"{cell(r.get('val_accuracy'), r.get('val_interval'))} | {r.get('steps', 0)} | "
                     f"{training_seconds(args.out, r['method']):.0f} | {row_note(r)} |")
    tests = paired_tests(rows, args.out)
    if tests:
        lines += ["", "Paired on the same entries (McNemar's exact test; gained / lost: entries the first method "
                      "solves and the second does not, and the reverse):", "",
                  "| method | against | metric | entries | accuracy | against | gained | lost | p |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {t['method']} | {t['against']} | {t['metric']} | {t['n']} | {pct(t['accuracy'])} | "
                  f"{pct(t['against_accuracy'])} | {t['gained']} | {t['lost']} | {t['p_value']:.3g} |" for t in tests]
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
    if left.get_lines():
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
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS),
                        help="_ds: the same with trainer.dynamic_sampling=true; hd_*: on the Hinted-Decoding rewrite")
    parser.add_argument("--model", default="smollm2", help="a configs/model/ entry (tiny: the smoke test)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--expert", type=int, default=8)
    parser.add_argument("--expert-tasks", type=int, default=256, help="expert pool: the first N ToolACE train tasks")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=128, help="per assistant turn, training and realign")
    parser.add_argument("--val-size", type=int, default=200, help="ToolACE validation tasks scored during training")
    parser.add_argument("--bfcl-categories", nargs="+", default=BFCL_CATEGORIES)
    parser.add_argument("--bfcl-limit", type=int, default=None, help="first N entries per BFCL category (default: all)")
    parser.add_argument("--toolace-limit", type=int, default=200, help="ToolACE held-out (test) tasks")
    parser.add_argument("--eval-max-new-tokens", type=int, default=128)
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--realign-batch-size", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=1,
                        help="methods run at once (a GPU is mostly idle under one 135M run; on CPU give each run its "
                             "share of the cores with OMP_NUM_THREADS)")
    parser.add_argument("--val-only", action="store_true",
                        help="tuning: train and report the ToolACE validation score only (no BFCL, no test split)")
    parser.add_argument("--train-minutes", type=float, default=None,
                        help="stop each training run at its first step boundary past this much wall time (it keeps "
                             "its checkpoint, which is scored; the table gives the steps taken)")
    parser.add_argument("--deadline-minutes", type=float, default=None,
                        help="no stage starts after this much wall time, and a stage still running then is stopped; "
                             "the table holds what finished (a budget for a machine lent for a fixed time)")
    parser.add_argument("--table-only", action="store_true",
                        help="run nothing: rebuild compare.md/json/png from what --out holds (a comparison cut short, "
                             "or its eval/, runs/*/metrics.jsonl and budget.json copied from another machine)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "compare")
    parser.add_argument("--train-override", nargs="*", default=[], help="extra Hydra overrides for every run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    args.deadline = None if args.deadline_minutes is None else t0 + 60 * args.deadline_minutes
    budget = args.out / "budget.json"  # the run's own budget, for the table that --table-only rebuilds
    if args.table_only:
        if budget.exists():
            kept = {"out", "methods", "table_only", "deadline"}
            vars(args).update({k: v for k, v in json.loads(budget.read_text()).items() if k not in kept})
        rows = [collect_row(m, args.out) for m in args.methods]
    else:
        budget.write_text(json.dumps({k: v for k, v in vars(args).items() if k not in ("out", "deadline")}, indent=1))
        # One HD method goes first so that the shared rewrite starts at once and overlaps the other runs; the
        # other HD methods go last, so that no worker sits waiting for the rewrite.
        hinted = [m for m in args.methods if METHODS[m][1]]
        order = hinted[:1] + [m for m in args.methods if not METHODS[m][1]] + hinted[1:]
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            futures = {m: pool.submit(run_method, m, args) for m in order}
            rows = [method_row(m, futures[m], args) for m in args.methods]
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "wall_seconds": time.time() - t0,
            "command": " ".join([Path(sys.executable).name, *sys.argv])}
    (args.out / "compare.json").write_text(json.dumps({**meta, "rows": rows, "paired": paired_tests(rows, args.out)},
                                                      indent=1))
    (args.out / "compare.md").write_text(table(rows, args))
    plot(rows, args.out)
    print(table(rows, args))


if __name__ == "__main__":
    main()
