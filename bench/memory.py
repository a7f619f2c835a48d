"""Peak memory of one CHORD training step with each memory option, and what they project to for larger models.

Measured (one fresh process per option, so no allocator cache carries over): the trainer is built from the
Hydra config (``env=toolace algorithm=chord_mu``, the embedded model, ``rollout.engine=hf`` so no vLLM copy
sits in the process), step 1's rollouts and expert batch are drawn, and then only ``chord_step`` (forward,
backward and the first optimizer step, which allocates Adam's state) runs while a thread samples the process's
resident memory every 2 ms. Figures per option: the resident memory before the model loads (the Python and
torch libraries), after set-up (weights, DeepSpeed engine), the peak during the step, and
``step peak - before model`` = what training this model costs. ZeRO-3 runs on 2 ranks (torchrun, gloo);
each rank reports its own figures.

Options: ``full`` (fp32 weights under bf16 autocast, Adam), ``lora`` (``model.lora.r=16``, all linear
layers), ``gc`` (``trainer.gradient_checkpointing=true``), ``lora_gc`` (both), ``zero3`` (2 ranks).

Projected (arithmetic, said as such in the output): weights + gradients + Adam + activations for 0.5B, 1.5B,
3B and 7B models on one 80 GB GPU with each option. Bytes per parameter: full fine-tuning 16 (fp32 weights 4,
fp32 gradients 4, Adam's two moments 8; DeepSpeed's bf16 mode is 2 + 2 + 12 = 16 as well); LoRA 2 for the
frozen bf16 base plus 16 per adapter parameter (rank r on every linear layer: r * (d_in + d_out) each);
ZeRO-3 over N GPUs divides the 16 by N. Activations: the measured activation bytes per token of the full
option (``step peak - after set-up - gradients - Adam``, divided by the tokens of the step's largest
micro-batch), scaled per layer and hidden size from the embedded model (30 layers, d 576) to the target
(``layers * d_model`` ratio), at 4,096 tokens a micro-batch; with gradient checkpointing the same scaled by
the measured ``gc / full`` activation ratio.

    .venv/bin/python bench/memory.py                       # every option (~10 min on 2 idle cores)
    .venv/bin/python bench/memory.py --options full lora   # some of them

Results: ``bench/results/memory.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {
    "full": [],
    "lora": ["model.lora.r=16", "model.lora.alpha=32"],
    "gc": ["trainer.gradient_checkpointing=true"],
    "lora_gc": ["model.lora.r=16", "model.lora.alpha=32", "trainer.gradient_checkpointing=true"],
    "zero3": ["deepspeed=zero3"],
}
RANKS = {"zero3": 2}
GIB = 1024 ** 3
# (name, parameters, layers, hidden size, linear layers' (d_in, d_out) per decoder layer) of the projected models
MODELS = [
    ("Qwen2.5-0.5B", 0.49e9, 24, 896, [(896, 896), (896, 128), (896, 128), (896, 896), (896, 4864), (896, 4864), (4864, 896)]),
    ("Qwen2.5-1.5B", 1.54e9, 28, 1536, [(1536, 1536), (1536, 256), (1536, 256), (1536, 1536), (1536, 8960), (1536, 8960), (8960, 1536)]),
    ("Llama-3.2-3B", 3.21e9, 28, 3072, [(3072, 3072), (3072, 1024), (3072, 1024), (3072, 3072), (3072, 8192), (3072, 8192), (8192, 3072)]),
    ("Qwen2.5-7B", 7.62e9, 28, 3584, [(3584, 3584), (3584, 512), (3584, 512), (3584, 3584), (3584, 18944), (3584, 18944), (18944, 3584)]),
]
EMBEDDED_LAYERS, EMBEDDED_D = 30, 576
GPU_GB = 80


class PeakRSS:
    """The process's peak resident memory while inside, sampled every ``interval_s`` by a thread."""

    def __init__(self, interval_s: float = 0.002):
        import psutil

        self.process, self.interval_s, self.peak = psutil.Process(), interval_s, 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def measure(option: str, out: Path, model: str) -> None:
    """One option in this process (under torchrun for several ranks): set up, then one step, measured."""
    import psutil
    from hydra import compose, initialize_config_dir

    from algorithms.chord import chord_step
    from algorithms.trainer import Trainer

    rss = lambda: psutil.Process().memory_info().rss  # noqa: E731
    before_model = rss()  # the libraries (torch, transformers, DeepSpeed) are loaded by now

    with tempfile.TemporaryDirectory() as run_dir:
        overrides = ["env=toolace", "algorithm=chord_mu", f"model={model}", "rollout.engine=hf",
                     "trainer.eval_every=0", "trainer.save_every=0", "trainer.progress=false",
                     "trainer.resume=never", f"run_dir={run_dir}", *OPTIONS[option]]
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
            cfg = compose(config_name="train", overrides=overrides)
        trainer = Trainer(cfg)
        on_policy = trainer._rollouts(1).trajectories
        expert = trainer.experts.sample(1, trainer.dist.rank, trainer.dist.world_size)
        mu = trainer.algo.mu(1, trainer.total_steps, mean_reward=0.0)
        trainer._set_lr(1)
        after_setup = rss()
        params = list(trainer.engine.module.parameters())
        counted = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in params)
        trainable = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in params if p.requires_grad)
        lengths = [t.num_tokens for t in on_policy + expert]
        t0 = time.perf_counter()
        with PeakRSS() as peak:
            result = chord_step(trainer.step_context, trainer.algo, on_policy, expert, mu, 1, trainer.total_steps)
        seconds = time.perf_counter() - t0
        micro = trainer.t.micro_batch_tokens
        row = {
            "option": option, "rank": trainer.dist.rank, "world_size": trainer.dist.world_size,
            "overrides": OPTIONS[option], "params": counted, "trainable_params": trainable,
            "rss_before_model_gib": before_model / GIB, "rss_after_setup_gib": after_setup / GIB,
            "step_peak_gib": peak.peak / GIB, "training_gib": (peak.peak - before_model) / GIB,
            "step_s": seconds, "stepped": result.stepped, "rows": len(lengths), "tokens": sum(lengths),
            "longest_row": max(lengths), "micro_batch_tokens": micro,
        }
    (out / f"{option}-rank{row['rank']}.json").write_text(json.dumps(row))


def activation_per_token(row: dict[str, Any]) -> float:
    """Bytes per token of the step's largest micro-batch not explained by weights (already resident),
    gradients and Adam state (12 bytes per trainable parameter)."""
    extra = (row["step_peak_gib"] - row["rss_after_setup_gib"]) * GIB - 12 * row["trainable_params"]
    tokens = min(row["micro_batch_tokens"], row["tokens"]) or 1
    return max(extra, 0.0) / tokens


def project(rows: dict[str, dict[str, Any]], tokens: int = 4096, lora_r: int = 16) -> list[dict[str, Any]]:
    """The arithmetic projection (module docstring)."""
    act = activation_per_token(rows["full"]) if "full" in rows else None
    gc_ratio = (activation_per_token(rows["gc"]) / act) if act and "gc" in rows else None
    table = []
    for name, n, layers, d, linears in MODELS:
        scale = layers * d / (EMBEDDED_LAYERS * EMBEDDED_D)
        act_gb = act * scale * tokens / 1e9 if act is not None else None
        adapter = layers * sum(lora_r * (i + o) for i, o in linears)
        static = {"full": 16 * n, "lora": 2 * n + 16 * adapter, "zero3_x8": 16 * n / 8}
        row = {"model": name, "params_b": n / 1e9, "lora_adapter_params_m": adapter / 1e6,
               "activations_gb": act_gb,
               "activations_gc_gb": act_gb * gc_ratio if act_gb is not None and gc_ratio is not None else None}
        for key, value in static.items():
            row[f"{key}_static_gb"] = value / 1e9
            for gc in (False, True):
                a = row["activations_gc_gb"] if gc else act_gb
                if a is not None:
                    total = value / 1e9 + a
                    row[f"{key}{'_gc' if gc else ''}_total_gb"] = total
                    row[f"{key}{'_gc' if gc else ''}_fits_80gb"] = total <= GPU_GB
        table.append(row)
    return table


def run_option(option: str, out: Path, model: str) -> None:
    env = {**os.environ, "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu"), "PYTHONUNBUFFERED": "1"}
    me = [str(Path(__file__).resolve()), "--measure", option, "--out", str(out), "--model", model]
    ranks = RANKS.get(option, 1)
    if ranks > 1:
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", f"--nproc_per_node={ranks}", *me]
        env.setdefault("OMP_NUM_THREADS", "1")
    else:
        cmd = [sys.executable, *me]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise OptionFailed(f"option {option} failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")


class OptionFailed(RuntimeError):
    """One option's measurement did not finish (e.g. killed for memory); the others are still measured."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--model", default="smollm2", help="model config group (default: the embedded model)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory.json"))
    parser.add_argument("--measure", choices=list(OPTIONS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, Path(args.out), args.model)
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Options measured by an earlier call (another --options subset) are kept unless measured again, and the
    # file is rewritten after every option, so a failed or killed option loses nothing that was measured.
    previous = json.loads(out.read_text()) if out.exists() else {}
    per_rank = [r for r in previous.get("measured", []) if r["option"] not in args.options]
    failures = {k: v for k, v in previous.get("failed", {}).items() if k not in args.options}
    with tempfile.TemporaryDirectory() as tmp:
        for option in args.options:
            try:
                run_option(option, Path(tmp), args.model)
            except OptionFailed as err:
                failures[option] = str(err)
                print(f"{option:8s} FAILED: {str(err).splitlines()[-1][:300]}", file=sys.stderr, flush=True)
                write_results(out, per_rank, failures)
                continue
            got = sorted((json.loads(p.read_text()) for p in Path(tmp).glob(f"{option}-rank*.json")),
                         key=lambda r: r["rank"])
            per_rank.extend(got)
            r = max(got, key=lambda r: r["step_peak_gib"])
            print(f"{option:8s} ranks {r['world_size']}  trainable {r['trainable_params'] / 1e6:7.2f}M  "
                  f"before model {r['rss_before_model_gib']:.2f}  after set-up {r['rss_after_setup_gib']:.2f}  "
                  f"step peak {r['step_peak_gib']:.2f}  training {r['training_gib']:.2f} GiB  "
                  f"(step {r['step_s']:.1f} s, {r['rows']} rows, {r['tokens']} tokens)", flush=True)
            write_results(out, per_rank, failures)
    table = write_results(out, per_rank, failures)
    print(f"\nProjected for one {GPU_GB} GB GPU (arithmetic from the measured activation bytes per token; "
          "4,096 tokens a micro-batch):")
    print(f"{'model':14s} {'full':>8s} {'full+gc':>8s} {'lora':>8s} {'lora+gc':>8s} {'zero3/8':>8s} {'zero3/8+gc':>10s}")
    for row in table:
        cells = [row.get(f"{k}_total_gb") for k in ("full", "full_gc", "lora", "lora_gc", "zero3_x8", "zero3_x8_gc")]
        print(f"{row['model']:14s} " + " ".join(f"{c:8.1f}" if c is not None else f"{'-':>8s}" for c in cells))
    print(f"\nwrote {out}")
    if failures:
        raise SystemExit(f"bench/memory.py: {', '.join(sorted(failures))} failed (see {out}, key 'failed')")


def write_results(out: Path, per_rank: list[dict[str, Any]], failures: dict[str, str]) -> list[dict[str, Any]]:
    """``out`` with every measured rank's row, the failures, and the projection from what is measured."""
    rows = {}
    for r in per_rank:  # per option, the rank with the highest peak
        if r["option"] not in rows or r["step_peak_gib"] > rows[r["option"]]["step_peak_gib"]:
            rows[r["option"]] = r
    table = project(rows)
    out.write_text(json.dumps({"measured": per_rank, "failed": failures, "projected": table,
                               "command": " ".join(sys.argv),
                               "activation_bytes_per_token": {k: activation_per_token(v) for k, v in rows.items()}},
                              indent=1))
    return table

if __name__ == "__main__":
    main()
