"""The training phase of one CHORD step, padded against packed (``trainer.padding_free``), as a share of the
bf16 matmul peak measured in the same run.

The training phase is ``chord_step``: forward + backward of both terms over their micro-batches and the
DeepSpeed optimizer step (what ``time/train_s`` holds, less the rollout engine's weight sync). Both arms are
the same ``Trainer`` (``env=toolace``, ``algorithm=chord_mu``, the embedded SmolLM2-135M-Instruct, bf16
autocast over fp32 weights, DeepSpeed ZeRO-2, ``configs/train.yaml``'s micro-batch caps), switched between
``padding_free=false`` and ``true`` on its ``StepContext``, on the same batch at ``make train``'s shape:

* ``--experts`` (16) expert trajectories of ToolACE train tasks (``Trainer.experts.sample``), the SFT term;
* ``--groups`` x ``--group-size`` (2 x 4) rollout-like rows for the GRPO term: the expert trajectory of
  another train task per group, each row with its own reward (so no advantage is 0 and every row is
  forwarded), i.e. real ToolACE prompt and completion lengths without sampling;
* mu = ``--mu`` (0.5): both terms run.

``--arms`` picks the arms: ``padded``, ``packed`` (``configs/train.yaml``'s ``trainer.micro_batch_tokens``), or
``packed@N`` / ``padded@N`` with that token cap. Arms interleave (A B, B A, A B, ...) for ``--repeats`` rounds
after one warm-up step each, and are compared repeat by repeat, in wall time and in process CPU time (which
other processes' load moves less). Every step also moves the weights (lr as configured), which changes no
shape. The bf16 and fp32 ``torch.mm``
peaks (``bench/matmul_peak.py``) are measured at the start, between rounds and at the end; the share of
peak uses the best bf16 figure of the run.

FLOPs (the same count for both arms, so their ratio is the ratio of times):

* ``model``: 6 x n_params x tokens + 6 x n_layers x d_model x s^2 per row, the convention of
  ``bench/step_time.py`` (n_params counts the tied embedding/lm_head once, as if the lm_head ran on every
  token; causal attention forward + backward);
* ``executed``: the same with the lm_head counted only on the positions whose logits the loss uses (each
  row's window from its first trainable token - 1), i.e. the matmul work that is actually needed; lower.

Only the rows that are forwarded are counted (all of them here). The optimizer's FLOPs are not counted, its
time is. Each step's peak resident memory (sampled every 50 ms) is recorded. ``--profile`` adds a ``torch.profiler`` table of one step per arm (self CPU time by op, grouped into
matmul, attention, casts/copies, vocabulary-wide log-softmax, optimizer, other) to the output.

    OMP_NUM_THREADS=2 .venv/bin/python bench/train_phase.py --repeats 3

Results: ``bench/results/train_phase.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/step_time.py: spinning threads on shared cores

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from matmul_peak import matmul_peak  # noqa: E402
from step_time import time_optimizer_steps  # noqa: E402

from algorithms.chord import _micro_batches, chord_step  # noqa: E402
from algorithms.forward import trainable_start  # noqa: E402


def parse_arm(name: str, default_tokens: int) -> tuple[bool, int]:
    """``padded`` / ``packed`` (the configured ``trainer.micro_batch_tokens``) or ``packed@N`` / ``padded@N``
    (that token cap instead): (padding_free, micro_batch_tokens)."""
    mode, _, cap = name.partition("@")
    if mode not in ("padded", "packed") or (cap and not cap.isdigit()):
        raise ValueError(f"arm {name!r}: expected padded, packed, padded@TOKENS or packed@TOKENS")
    return mode == "packed", int(cap) if cap else default_tokens


class PeakRSS:
    """The process's peak resident memory while a step runs (sampled every 50 ms), in GiB."""

    def __init__(self) -> None:
        import threading

        self.peak, self.running = 0, False
        self.thread: Any = None
        self._threading = threading

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while self.running:
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakRSS:
        self.peak, self.running = 0, True
        self.thread = self._threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.running = False
        self.thread.join()

    @property
    def gib(self) -> float:
        return self.peak / 2**30


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def build_trainer(args: argparse.Namespace, run_dir: str) -> Any:
    from hydra import compose, initialize_config_dir

    from algorithms.trainer import Trainer

    overrides = [f"env={args.env}", "algorithm=chord_mu", "model=smollm2", "rollout.engine=hf", f"run_dir={run_dir}",
                 "trainer.eval_every=0", "trainer.save_every=0", "trainer.resume=never", "trainer.progress=false",
                 f"trainer.expert_per_step={args.experts}", *args.override]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    return Trainer(cfg), overrides


def make_batch(trainer: Any, args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """(rollout-like rows, expert rows): see the module docstring."""
    expert = trainer.experts.sample(1)
    sources = trainer.experts.sample(10_000)[:args.groups]
    on_policy = []
    for k, source in enumerate(sources):
        for g in range(args.group_size):
            row = copy.deepcopy(source)
            row.is_expert, row.group_id, row.reward = False, f"bench-{k}", g / max(1, args.group_size - 1)
            on_policy.append(row)
    return on_policy, expert


def flops(rows: list[Any], n_params: int, n_layers: int, d_model: int, vocab: int) -> dict[str, float]:
    tokens = sum(t.num_tokens for t in rows)
    window = sum(t.num_tokens - trainable_start(t.loss_mask) for t in rows if any(t.loss_mask))
    attention = sum(6.0 * n_layers * d_model * t.num_tokens ** 2 for t in rows)
    model = 6.0 * n_params * tokens + attention
    executed = 6.0 * (n_params - vocab * d_model) * tokens + 6.0 * vocab * d_model * window + attention
    return {"tokens": tokens, "lm_head_positions": window, "attention_flops": attention, "model_flops": model,
            "executed_flops": executed}


CATEGORIES = (  # profiler op name -> category, first match wins
    ("attention", ("scaled_dot_product", "flash_attention")),
    ("matmul", ("aten::mm", "aten::bmm", "aten::addmm", "aten::matmul", "aten::linear")),
    ("log-softmax over the vocabulary", ("logsumexp", "aten::exp", "aten::amax", "aten::div", "aten::sub",
                                         "aten::scatter_add", "aten::gather", "_ShiftedTokenLogProb")),
    ("casts and copies", ("aten::copy_", "aten::_to_copy", "aten::to", "aten::cat", "aten::contiguous",
                          "aten::clone")),
    ("optimizer", ("Optimizer.step", "adam", "aten::_foreach", "aten::lerp", "aten::addcdiv", "aten::addcmul",
                   "aten::sqrt")),
)


def profile_step(run: Any) -> dict[str, Any]:
    """Self CPU time by op of one call of ``run``, and grouped into ``CATEGORIES``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages()),
                 key=lambda x: -x[1])
    total = sum(s for _, s, _ in ops)
    groups: dict[str, float] = {}
    for name, seconds, _ in ops:
        category = next((c for c, keys in CATEGORIES if any(k.lower() in name.lower() for k in keys)), "other")
        groups[category] = groups.get(category, 0.0) + seconds
    return {"self_cpu_s": total, "by_category_s": dict(sorted(groups.items(), key=lambda x: -x[1])),
            "top_ops": [{"op": n, "self_cpu_s": s, "calls": c} for n, s, c in ops[:25]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="toolace", help="where the rows come from (toolace: make train's env; math: "
                    "short rows, where padding costs the most)")
    ap.add_argument("--experts", type=int, default=16, help="expert rows (the SFT term)")
    ap.add_argument("--groups", type=int, default=2, help="GRPO groups (prompts)")
    ap.add_argument("--group-size", type=int, default=4, help="rows per group")
    ap.add_argument("--mu", type=float, default=0.5, help="CHORD's mu for the step (0 < mu < 1: both terms)")
    ap.add_argument("--repeats", type=int, default=3, help="measured steps per arm, after one warm-up each")
    ap.add_argument("--arms", default="padded,packed", help="comma-separated: padded, packed")
    ap.add_argument("--peak-seconds", type=float, default=2.0, help="length of one matmul-peak repeat")
    ap.add_argument("--profile", action="store_true", help="also profile one step per arm (torch.profiler)")
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override, e.g. "
                    "trainer.micro_batch_tokens=4096 (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_phase.json"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    try:
        for arm in arms:
            parse_arm(arm, 1)
    except ValueError as err:
        ap.error(str(err))

    load_before = uptime()
    print(f"load: {load_before}", flush=True)
    peaks = [matmul_peak(seconds=args.peak_seconds)]
    print(f"matmul peak: bf16 {peaks[0]['bf16']['gflops']:.0f} GFLOP/s, fp32 {peaks[0]['fp32']['gflops']:.0f}",
          flush=True)

    trainer, overrides = build_trainer(args, tempfile.mkdtemp(prefix="chordgym-train-phase-"))
    module = trainer.engine.module
    config = module.config
    n_params = sum(p.numel() for p in module.parameters())
    n_layers, d_model, vocab = int(config.num_hidden_layers), int(config.hidden_size), int(config.vocab_size)
    on_policy, expert = make_batch(trainer, args)
    count = flops(on_policy + expert, n_params, n_layers, d_model, vocab)
    ctx = trainer.step_context
    settings = {arm: parse_arm(arm, ctx.micro_batch_tokens) for arm in arms}
    lengths = {"expert": sorted(t.num_tokens for t in expert), "on_policy": sorted(t.num_tokens for t in on_policy)}
    plans: dict[str, dict[str, list[list[int]]]] = {}
    for arm in arms:
        ctx.padding_free, ctx.micro_batch_tokens = settings[arm]
        plans[arm] = {name: [[rows[i].num_tokens for i in mb] for mb in _micro_batches(ctx, rows)]
                      for name, rows in (("expert", expert), ("on_policy", on_policy))}
    print(f"rows: {len(expert)} expert ({count['tokens']} tokens in all with the {len(on_policy)} rollout-like "
          f"rows), lm_head positions {count['lm_head_positions']}", flush=True)
    for arm in arms:
        print(f"  {arm} micro-batches: expert {len(plans[arm]['expert'])}, on-policy {len(plans[arm]['on_policy'])}",
              flush=True)

    timers: dict[str, float] = {}
    time_optimizer_steps(trainer, timers)
    trainer.engine.train()
    step_no = [0]

    def one_step(arm: str) -> dict[str, Any]:
        ctx.padding_free, ctx.micro_batch_tokens = settings[arm]
        timers.clear()
        step_no[0] += 1
        with PeakRSS() as memory:
            t0, c0 = time.perf_counter(), time.process_time()
            result = chord_step(ctx, trainer.algo, on_policy, expert, args.mu, step_no[0], trainer.total_steps)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {"arm": arm, "train_s": wall, "cpu_s": cpu, "optimizer_s": timers.get("optimizer_s", 0.0), "peak_rss_gib": memory.gib,
                "fwd_bwd_s": wall - timers.get("optimizer_s", 0.0), "loss_sft": result.metrics["loss/sft"],
                "loss_grpo": result.metrics["loss/grpo"], "stepped": result.stepped}

    runs: list[dict[str, Any]] = []
    for arm in arms:  # warm-up: oneDNN kernel choice, allocator, DeepSpeed buffers
        row = one_step(arm)
        print(f"warm-up {arm:11s}: {row['train_s']:7.1f} s", flush=True)
    for r in range(args.repeats):
        order = arms if r % 2 == 0 else list(reversed(arms))
        for arm in order:
            row = one_step(arm)
            row["repeat"] = r
            row["model_gflops"] = count["model_flops"] / row["train_s"] / 1e9
            runs.append(row)
            print(f"repeat {r} {arm:11s}: train {row['train_s']:7.1f} s (CPU {row['cpu_s']:.0f} s; fwd+bwd "
                  f"{row['fwd_bwd_s']:.1f}, optimizer "
                  f"{row['optimizer_s']:.1f}), {row['model_gflops']:.0f} GFLOP/s, peak RSS {row['peak_rss_gib']:.1f} GiB",
                  flush=True)
        peaks.append(matmul_peak(seconds=args.peak_seconds))
        print(f"matmul peak: bf16 {peaks[-1]['bf16']['gflops']:.0f} GFLOP/s", flush=True)

    profiles = {}
    if args.profile:
        for arm in arms:
            profiles[arm] = profile_step(lambda arm=arm: one_step(arm))
            print(f"profile {arm}: " + ", ".join(f"{k} {v:.1f} s" for k, v in profiles[arm]["by_category_s"].items()),
                  flush=True)

    load_after = uptime()
    peak_bf16 = max(p["bf16"]["gflops"] for p in peaks)
    peak_fp32 = max(p["fp32"]["gflops"] for p in peaks)
    summary: dict[str, Any] = {}
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        train_s = statistics.median(r["train_s"] for r in mine)
        summary[arm] = {
            "train_s": train_s, "cpu_s": statistics.median(r["cpu_s"] for r in mine),
            "fwd_bwd_s": statistics.median(r["fwd_bwd_s"] for r in mine),
            "optimizer_s": statistics.median(r["optimizer_s"] for r in mine),
            "model_gflops": count["model_flops"] / train_s / 1e9,
            "executed_gflops": count["executed_flops"] / train_s / 1e9,
            "model_share_of_bf16_peak": count["model_flops"] / train_s / 1e9 / peak_bf16,
            "executed_share_of_bf16_peak": count["executed_flops"] / train_s / 1e9 / peak_bf16,
            "micro_batches": sum(len(v) for v in plans[arm].values()),
            "micro_batch_tokens": settings[arm][1],
            "peak_rss_gib": max(r["peak_rss_gib"] for r in mine),
        }
    paired = {}
    base = arms[0]
    for kind in ("train_s", "cpu_s"):  # wall time, and CPU time (less sensitive to other processes' load)
        by_repeat = [{r["arm"]: r[kind] for r in runs if r["repeat"] == k} for k in range(args.repeats)]
        for arm in arms[1:]:  # each arm against the first, repeat by repeat (the same load) and as medians
            paired[f"{arm}_over_{base}_{kind}_each_repeat"] = [b[arm] / b[base] for b in by_repeat]
            paired[f"{arm}_over_{base}_{kind}_median_of_ratios"] = statistics.median(b[arm] / b[base]
                                                                                     for b in by_repeat)
    result = {
        "config": {"env": args.env, "experts": args.experts, "groups": args.groups, "group_size": args.group_size, "mu": args.mu,
                   "repeats": args.repeats, "arms": arms, "overrides": overrides,
                   "micro_batch_size": ctx.micro_batch_size, "micro_batch_tokens": ctx.micro_batch_tokens,
                   "model": str(trainer.cfg.model.spec), "dtype": trainer.dtype, "n_params": n_params,
                   "n_layers": n_layers, "d_model": d_model, "vocab": vocab},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "uptime_before": load_before, "uptime_after": load_after},
        "matmul_peaks": peaks, "peak_bf16_gflops": peak_bf16, "peak_fp32_gflops": peak_fp32,
        "rows": lengths, "micro_batch_lengths": plans, "flops": count,
        "flops_counted": "model: 6 * n_params * tokens (tied embedding/lm_head once) + 6 * n_layers * d_model * s^2 "
                         "per row (causal attention fwd+bwd); executed: the lm_head counted only on each row's "
                         "window positions; optimizer FLOPs not counted, its time is",
        "runs": runs, "summary": summary, "paired": paired, "profiles": profiles,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))

    print(f"\n== training phase of one CHORD step: {len(expert)} expert + {len(on_policy)} rollout-like {args.env} rows, "
          f"{count['tokens']} tokens, medians of {args.repeats} ==")
    print(f"bf16 matmul peak (best of the run's {len(peaks)} measurements): {peak_bf16:.0f} GFLOP/s")
    print(f"{'arm':11s} {'micro-batches':>13s} {'train s':>8s} {'fwd+bwd':>8s} {'optim':>6s} {'GFLOP/s':>8s} "
          f"{'% peak (model)':>15s} {'% peak (executed)':>18s} {'peak RSS':>9s}")
    for arm, s in summary.items():
        print(f"{arm:11s} {s['micro_batches']:13d} {s['train_s']:8.1f} {s['fwd_bwd_s']:8.1f} {s['optimizer_s']:6.1f} "
              f"{s['model_gflops']:8.0f} {100 * s['model_share_of_bf16_peak']:14.1f}% "
              f"{100 * s['executed_share_of_bf16_peak']:17.1f}% {s['peak_rss_gib']:7.1f} G")
    for arm in arms[1:]:
        for kind, what in (("train_s", "training time"), ("cpu_s", "CPU time")):
            print(f"{arm} / {base} {what}, repeat by repeat: "
                  + ", ".join(f"{x:.3f}" for x in paired[f"{arm}_over_{base}_{kind}_each_repeat"])
                  + f" (median {paired[f'{arm}_over_{base}_{kind}_median_of_ratios']:.3f})")
    print(f"load before: {load_before}; after: {load_after}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
