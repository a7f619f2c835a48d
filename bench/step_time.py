"""One GRPO optimizer step: chordgym's Trainer vs TRL's GRPOTrainer, side by side in one process.

Both arms train the embedded SmolLM2-135M-Instruct (two copies of the same weights, each loaded with
``agents.load_model``) on the same single-turn math prompts (the math env's opening system + user messages,
rendered by the tokenizer's own chat template; the script checks that both arms get identical prompt
token ids), with the same group size G, prompts per step P, completion cap L, sampling (T = 1, top-p 1, no
top-k), loss (token-mean clipped surrogate, group-std advantages, no KL, no reference model, one optimizer
step per rollout batch so old log-probs = detached current ones), optimizer (AdamW, lr 2e-5, no weight
decay, grad clip 1.0) and dtype policy (fp32 weights; bf16 autocast for generation and training, or plain
fp32 with ``--dtype fp32``; the script records the autocast state each arm's forwards actually ran under).

* ours: ``algorithms.trainer.Trainer`` built from the Hydra config (``env=math algorithm=grpo``), driven by
  ``trainer.train_step(step)``: batched rollout through ``agents.rollout`` on the run's engine
  (``--engine``: ``auto`` = vLLM where installed, weights synced after each step, else ``HFEngine``), then
  one DeepSpeed (ZeRO-2, world of one) step. Its metrics give the rollout/train split.
* TRL: ``trl.GRPOTrainer`` with ``per_device_train_batch_size = P*G``, ``gradient_accumulation_steps = 1``,
  ``num_iterations = 1``, ``beta = 0``, ``use_vllm = False`` (``--trl-vllm``: TRL's colocated vLLM),
  ``use_cpu = True``, ``bf16`` as ``--dtype``,
  gradient checkpointing off (TRL's GRPOConfig default is on; ``--trl-gradient-checkpointing`` keeps it).
  A callback times each optimizer step (``on_step_begin`` -> ``on_step_end``); a wrapper around
  ``_generate_and_score_completions`` times its rollout (generate + rewards + advantages).

Rewards: both arms use the math env's grade (math-verify on the last ``\\boxed{}``, the same shared
verifier) plus ``1e-3 * len(completion text)``. The small length term keeps rewards from being equal
within a group: with all-equal rewards every advantage is 0 and our trainer skips those rows' forward
pass (they carry no gradient), which would make the comparison meaningless. TRL trains on every row.

Order in the one run: ours warm-up, TRL warm-up, then ours / TRL alternating for ``--steps`` measured steps
each (ours' step k+1 runs inside TRL's ``on_step_end`` of step k, outside TRL's timed interval). Medians
of the measured steps are reported. The bf16/fp32 ``torch.mm`` peak is measured in the same run, and the
training phase's throughput is given as a share of it (FLOPs counted as 6 * n_params * tokens for the
matmuls plus 6 * n_layers * d_model * s^2 per sequence for causal attention, unpadded tokens).

    .venv/bin/python bench/step_time.py --prompts 4 --group-size 4 --max-new-tokens 64 --steps 3

Results: ``bench/results/step_time.json``. Needs ``trl`` (``pip install trl`` with torch/transformers
pinned, see ``bench/README.md``); without it the script runs our arm only and says so.
"""

from __future__ import annotations

import argparse
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

# OpenMP threads that spin while they wait collapse when the 2 cores are shared with other processes
# (measured here under load 7: a 4x128 forward took 8.1 s with 2 spinning threads, 1.6 s with PASSIVE).
# Both arms run in this one process, so the setting is the same for both; export it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from matmul_peak import matmul_peak  # noqa: E402

from agents.models import resolve_dtype  # noqa: E402
from algorithms.chord import _micro_batches  # noqa: E402

LENGTH_BONUS = 1e-3  # reward per character of completion text: breaks ties inside a group


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def training_flops(seq_lens: list[int], n_params: int, n_layers: int, d_model: int) -> dict[str, float]:
    """Forward + backward FLOPs of one pass over sequences of ``seq_lens`` tokens (no padding counted)."""
    tokens = sum(seq_lens)
    dense = 6.0 * n_params * tokens
    attention = sum(6.0 * n_layers * d_model * s * s for s in seq_lens)  # causal QK^T + AV, fwd + bwd
    return {"tokens": tokens, "dense_flops": dense, "attention_flops": attention, "flops": dense + attention}


# ----------------------------------------------------------------------------------------------- our arm


def build_ours(args: argparse.Namespace, run_dir: Path) -> Any:
    from hydra import compose, initialize_config_dir

    from algorithms.trainer import Trainer

    overrides = [
        "env=math", "algorithm=grpo", f"model.dtype={args.dtype}",
        f"trainer.prompts_per_step={args.prompts}", f"algorithm.group_size={args.group_size}",
        f"trainer.max_new_tokens={args.max_new_tokens}", f"trainer.total_steps={args.steps + 1}",
        "trainer.eval_every=0", "trainer.save_every=0", "trainer.progress=false", "trainer.resume=never",
        "trainer.temperature=1.0", "trainer.top_p=1.0", "trainer.lr=2e-5", "trainer.grad_clip=1.0",
        f"rollout.engine={args.engine}", f"run_dir={run_dir}",
    ]
    if args.micro_batch_size:
        overrides.append(f"trainer.micro_batch_size={args.micro_batch_size}")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    return Trainer(cfg), overrides


def step_prompt_indices(trainer: Any, step: int) -> list[int]:
    """The train-task indices ``Trainer._rollouts(step)`` draws (checked against the indices its episodes
    were reset with, ``info["index"]``, after the run)."""
    return trainer.step_prompts(step)


def completion_text(traj: Any, tokenizer: Any) -> str:
    msgs = traj.info.get("messages") or []
    for m in reversed(msgs):
        if m.get("role") == "assistant":
            return str(m.get("content", ""))
    ids = [i for i, m in zip(traj.input_ids, traj.loss_mask, strict=True) if m]
    return tokenizer.decode(ids, skip_special_tokens=True)


def time_optimizer_steps(trainer: Any, timers: dict[str, float]) -> None:
    """Add the wall time of every DeepSpeed ``engine.step()`` (the optimizer) to ``timers["optimizer_s"]``."""
    engine_step = trainer.engine.step

    def timed_step(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = engine_step(*a, **kw)
        timers["optimizer_s"] = timers.get("optimizer_s", 0.0) + time.perf_counter() - t0
        return out

    trainer.engine.step = timed_step


def patch_ours(trainer: Any, captured: dict[int, Any], timers: dict[str, float]) -> None:
    """Add the length bonus to the env's reward, keep each step's trajectories for token counts, and time
    the DeepSpeed ``engine.step()`` (optimizer) inside the train phase."""
    original = trainer._rollouts
    time_optimizer_steps(trainer, timers)

    def rollouts(step: int):
        sampled = original(step)
        for t in sampled.drawn:  # the trained trajectories are among these (the same objects)
            t.reward = float(t.reward) + LENGTH_BONUS * len(completion_text(t, trainer.tokenizer))
        captured[step] = sampled.trajectories
        return sampled

    trainer._rollouts = rollouts


# ----------------------------------------------------------------------------------------------- autocast probe


class AutocastProbe:
    """Counts, per phase (no-grad = generation, grad = training), the autocast dtype the last decoder
    layer's MLP ran under (not lm_head: TRL computes log-probs with ``fused_lm_head=True``, which reads
    lm_head's weight without calling the module)."""

    def __init__(self, model: Any):
        self.seen: dict[str, dict[str, int]] = {"generate": {}, "train": {}}
        layer = model.model.layers[-1].mlp
        self.handle = layer.register_forward_pre_hook(self._hook)

    def _hook(self, module: Any, inputs: Any) -> None:
        phase = "train" if torch.is_grad_enabled() else "generate"
        state = str(torch.get_autocast_dtype("cpu")).replace("torch.", "") if torch.is_autocast_enabled("cpu") else "off"
        self.seen[phase][state] = self.seen[phase].get(state, 0) + 1

    def summary(self) -> dict[str, dict[str, int]]:
        return self.seen


# ----------------------------------------------------------------------------------------------- TRL arm


def build_trl(args: argparse.Namespace, rows: list[dict[str, Any]], out_dir: Path, verifier: Any,
              max_response_chars: int) -> tuple[Any, Any, Any]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from agents import load_model
    from envs.math.reward import score_response

    model, tokenizer = load_model("smollm2-135m-instruct", dtype=args.dtype)
    eos = tokenizer.eos_token_id

    def math_reward(prompts, completions, completion_ids, answer, **kwargs):  # noqa: ANN001
        out = []
        for comp, ids, gold in zip(completions, completion_ids, answer, strict=True):
            text = comp[-1]["content"] if isinstance(comp, list) else str(comp)
            truncated = not ids or ids[-1] != eos
            score = score_response(text, gold, verifier, max_response_chars, truncated_by_length=truncated)
            out.append(score.reward + LENGTH_BONUS * len(text))
        return out

    config = GRPOConfig(
        output_dir=str(out_dir), use_cpu=True, bf16=args.dtype == "bf16", fp16=False,
        per_device_train_batch_size=args.prompts * args.group_size, gradient_accumulation_steps=1,
        num_generations=args.group_size, max_completion_length=args.max_new_tokens, max_steps=args.steps + 1,
        num_iterations=1, beta=0.0, loss_type="dapo", scale_rewards="group", epsilon=0.2,
        temperature=1.0, top_p=1.0, top_k=0, use_vllm=args.trl_vllm,
        **({"vllm_mode": "colocate", "vllm_max_model_length": 2048} if args.trl_vllm else {}),
        learning_rate=2e-5, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0,
        shuffle_dataset=False, seed=0, report_to="none", logging_strategy="no", save_strategy="no",
        disable_tqdm=True, log_completions=False, dataloader_num_workers=0, remove_unused_columns=False,
        # TRL's GRPOConfig turns gradient checkpointing on by default (it recomputes the forward in the
        # backward pass); our trainer does not checkpoint, so the default here is off: the same work.
        gradient_checkpointing=args.trl_gradient_checkpointing,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=math_reward, args=config,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    return trainer, model, tokenizer


# ----------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4, help="P prompts per optimizer step")
    ap.add_argument("--group-size", type=int, default=4, help="G completions per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="L, completion cap")
    ap.add_argument("--steps", type=int, default=3, help="measured steps per arm (after one warm-up each)")
    ap.add_argument("--dtype", choices=["bf16", "fp32", "auto"], default="auto",
                    help="both arms' precision (auto: bf16 where this CPU computes it natively, else fp32)")
    ap.add_argument("--engine", choices=["auto", "vllm", "hf"], default="auto",
                    help="our rollout.engine (auto: vLLM where it is installed, else the HF engine)")
    ap.add_argument("--trl-vllm", action="store_true",
                    help="TRL samples with its own colocated vLLM (use_vllm=True, vllm_mode='colocate') "
                         "instead of transformers' generate")
    ap.add_argument("--micro-batch-size", type=int, default=None,
                    help="our trainer.micro_batch_size (default: configs/train.yaml's); TRL runs all P*G rows "
                         "in one micro-batch")
    ap.add_argument("--trl-gradient-checkpointing", action="store_true",
                    help="keep TRL's own default (gradient checkpointing on); default: off, as in our trainer")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both arms (default: torch's)")
    ap.add_argument("--no-trl", action="store_true", help="run our arm only")
    ap.add_argument("--peak-seconds", type=float, default=2.0, help="length of one matmul-peak repeat")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "step_time.json"))
    args = ap.parse_args()
    args.dtype = resolve_dtype(args.dtype)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = uptime()
    print(f"load: {load_before}", flush=True)
    peak = matmul_peak(seconds=args.peak_seconds)
    print(f"matmul peak: bf16 {peak['bf16']['gflops']:.0f} GFLOP/s, fp32 {peak['fp32']['gflops']:.0f} GFLOP/s",
          flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="chordgym-step-time-"))
    ours, overrides = build_ours(args, tmp / "ours")
    captured: dict[int, Any] = {}
    ours_timers: dict[str, float] = {}
    patch_ours(ours, captured, ours_timers)
    ours_probe = AutocastProbe(ours.engine.module)
    cfg_model = ours.engine.module.config
    n_params = sum(p.numel() for p in ours.engine.module.parameters())
    n_layers, d_model = int(cfg_model.num_hidden_layers), int(cfg_model.hidden_size)

    # The same prompts, step by step: TRL's (unshuffled) step k takes dataset rows (k-1)P .. kP-1.
    env = ours.train_env
    step_indices = {s: step_prompt_indices(ours, s) for s in range(1, args.steps + 2)}
    rows = []
    for s in range(1, args.steps + 2):
        for idx in step_indices[s]:
            opening, info = env.reset(options={"index": idx})
            rows.append({"prompt": opening, "answer": str(info["answer"]), "index": idx})
    from agents import ChatRenderer

    renderer = ChatRenderer(ours.tokenizer)
    template_equal = all(
        renderer.render_prompt(r["prompt"]) == list(ours.tokenizer.apply_chat_template(
            r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        for r in rows)

    ours_runs: list[dict[str, Any]] = []

    def run_ours(step: int, label: str) -> None:
        ours_timers.clear()
        t0 = time.perf_counter()
        m = ours.train_step(step)
        wall = time.perf_counter() - t0
        trajs = captured.pop(step)
        live = [t for t in trajs]  # every row is live: rewards differ within groups (length bonus)
        flops = training_flops([t.num_tokens for t in live], n_params, n_layers, d_model)
        padded = (flops["tokens"] if ours.step_context.padding_free else  # packed: no padding is computed
                  sum(len(c) * max(trajs[i].num_tokens for i in c) for c in _micro_batches(ours.step_context, trajs)))
        row = {"step": step, "phase": label, "step_s": wall, "rollout_s": m["time/rollout_s"],
               "train_s": m["time/train_s"], "other_s": wall - m["time/rollout_s"] - m["time/train_s"],
               "optimizer_s": ours_timers.get("optimizer_s", 0.0),
               "fwd_bwd_s": m["time/train_s"] - ours_timers.get("optimizer_s", 0.0),
               "generated_tokens": sum(t.num_generated for t in trajs),
               "trained_tokens": flops["tokens"], "trained_tokens_padded": padded,
               "zero_adv_share": m.get("grpo/zero_adv_share"), "reward_mean": m["reward/mean"],
               "indices": sorted({int(t.info["index"]) for t in trajs}),
               "train_flops": flops["flops"], "train_dense_flops": flops["dense_flops"]}
        ours_runs.append(row)
        print(f"ours {label:7s} step {step}: {wall:6.2f} s (rollout {row['rollout_s']:.2f}, train "
              f"{row['train_s']:.2f}), {row['generated_tokens']} generated, {flops['tokens']} trained tokens",
              flush=True)

    trl_runs: list[dict[str, Any]] = []
    trl_info: dict[str, Any] = {}
    trl_error = None
    if args.no_trl:
        trl_error = "skipped (--no-trl)"
    else:
        try:
            import trl  # noqa: F401
        except ImportError as err:
            trl_error = f"trl not importable: {err}"
    if trl_error is None:
        from transformers import TrainerCallback

        trl_trainer, trl_model, trl_tok = build_trl(args, rows, tmp / "trl", env.verifier, env.max_response_chars)
        trl_probe = AutocastProbe(trl_model)
        trl_info = {"trl_version": __import__("trl").__version__,
                    "distributed_type": str(trl_trainer.accelerator.distributed_type),
                    "mixed_precision": str(trl_trainer.accelerator.mixed_precision),
                    "wrapped_model": type(trl_trainer.model_wrapped).__name__,
                    "ref_model": trl_trainer.ref_model is not None}
        pending: dict[str, Any] = {}
        original_gen = trl_trainer._generate_and_score_completions

        def timed_gen(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = original_gen(*a, **kw)
            pending["rollout_s"] = time.perf_counter() - t0
            pending["batch"] = out
            return out

        trl_trainer._generate_and_score_completions = timed_gen

        class StepTimer(TrainerCallback):
            def on_step_begin(self, a, state, control, **kw):  # noqa: ANN001
                pending.clear()
                pending["t0"] = time.perf_counter()

            def on_pre_optimizer_step(self, a, state, control, **kw):  # noqa: ANN001
                pending["opt0"] = time.perf_counter()

            def on_optimizer_step(self, a, state, control, **kw):  # noqa: ANN001
                pending["optimizer_s"] = time.perf_counter() - pending["opt0"]

            def on_step_end(self, a, state, control, **kw):  # noqa: ANN001
                wall = time.perf_counter() - pending["t0"]
                b = pending["batch"]
                pm, cm = b["prompt_mask"], b["completion_mask"]
                seq = (pm.sum(1) + cm.sum(1)).tolist()
                flops = training_flops([int(s) for s in seq], n_params, n_layers, d_model)
                k = state.global_step
                row = {"step": k, "phase": "warmup" if k == 1 else "measured", "step_s": wall,
                       "rollout_s": pending["rollout_s"], "train_s": wall - pending["rollout_s"],
                       "optimizer_s": pending.get("optimizer_s", 0.0),
                       "fwd_bwd_s": wall - pending["rollout_s"] - pending.get("optimizer_s", 0.0),
                       "generated_tokens": int(cm.sum()), "trained_tokens": flops["tokens"],
                       "trained_tokens_padded": int(pm.numel() + cm.numel()),
                       "train_flops": flops["flops"], "train_dense_flops": flops["dense_flops"]}
                trl_runs.append(row)
                print(f"TRL  {row['phase']:7s} step {k}: {wall:6.2f} s (rollout {row['rollout_s']:.2f}, train "
                      f"{row['train_s']:.2f}), {row['generated_tokens']} generated, {flops['tokens']} trained "
                      f"tokens", flush=True)
                if k <= args.steps:  # interleave: our next step runs between TRL's steps, untimed by TRL
                    run_ours(k + 1, "measured")

        trl_trainer.add_callback(StepTimer())
        run_ours(1, "warmup")
        trl_trainer.train()
        trl_info["param_dtype"] = str(next(trl_model.parameters()).dtype)
        trl_info["autocast_seen"] = trl_probe.summary()
    else:
        print(f"TRL arm not run: {trl_error}", flush=True)
        run_ours(1, "warmup")
        for s in range(2, args.steps + 2):
            run_ours(s, "measured")

    load_after = uptime()
    ours_m = [r for r in ours_runs if r["phase"] == "measured"]
    trl_m = [r for r in trl_runs if r["phase"] == "measured"]
    peak_dt = peak[args.dtype]["gflops"]

    def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
        if not runs:
            return {}
        med = {k: median([r[k] for r in runs]) for k in
               ("step_s", "rollout_s", "train_s", "fwd_bwd_s", "optimizer_s", "generated_tokens",
                "trained_tokens", "train_flops")}
        train_gflops = median([r["train_flops"] / r["train_s"] / 1e9 for r in runs])
        med.update({
            "train_gflops": train_gflops,
            "train_share_of_bf16_peak": train_gflops / peak["bf16"]["gflops"],
            "train_share_of_fp32_peak": train_gflops / peak["fp32"]["gflops"],
            "train_share_of_peak_in_run_dtype": train_gflops / peak_dt,
            "rollout_tokens_per_s": median([r["generated_tokens"] / r["rollout_s"] for r in runs]),
        })
        return med

    ours_s, trl_s = summarize(ours_m), summarize(trl_m)
    ratio = ours_s["step_s"] / trl_s["step_s"] if trl_s else None
    result = {
        "config": {"prompts": args.prompts, "group_size": args.group_size, "max_new_tokens": args.max_new_tokens,
                   "measured_steps": args.steps, "dtype": args.dtype,
                   "our_micro_batch_size": int(ours.t.micro_batch_size), "our_engine": ours.engine_kind,
                   "our_micro_batch_tokens": int(ours.t.micro_batch_tokens), "our_padding_free": ours.t.padding_free,
                   "trl_use_vllm": args.trl_vllm,
                   "trl_micro_batch_size": args.prompts * args.group_size,
                   "model": "smollm2-135m-instruct", "n_params": n_params, "n_layers": n_layers, "d_model": d_model,
                   "trl_gradient_checkpointing": args.trl_gradient_checkpointing,
                   "length_bonus_per_char": LENGTH_BONUS, "our_overrides": overrides},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "uptime_before": load_before,
                    "uptime_after": load_after},
        "matmul_peak": peak,
        "checks": {"chat_template_prompt_ids_equal": template_equal,
                   "same_prompt_indices": all(r["indices"] == sorted(set(step_indices[r["step"]])) for r in ours_runs),
                   "our_autocast_seen": ours_probe.summary(), **({"trl": trl_info} if trl_info else {})},
        "ours": {"median": ours_s, "steps": ours_runs},
        "trl": {"median": trl_s, "steps": trl_runs, "error": trl_error},
        "ratio_ours_over_trl": ratio,
        "flops_counted": "6 * n_params * unpadded trained tokens (forward + backward matmuls, tied lm_head counted "
                         "once in n_params) + 6 * n_layers * d_model * s^2 per sequence (causal attention); "
                         "optimizer step not counted",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))

    print(f"\n== one GRPO step, P={args.prompts} G={args.group_size} L={args.max_new_tokens}, {args.dtype}, "
          f"medians of {args.steps} ==")
    for name, s in (("ours", ours_s), ("TRL", trl_s)):
        if s:
            print(f"{name:5s} step {s['step_s']:6.2f} s = rollout {s['rollout_s']:6.2f} s + train {s['train_s']:6.2f} s"
                  f" (fwd+bwd {s['fwd_bwd_s']:.2f}, optimizer {s['optimizer_s']:.2f}) (+other); train {s['train_gflops']:.0f} GFLOP/s = {100 * s['train_share_of_bf16_peak']:.1f}% of "
                  f"bf16 peak; rollout {s['rollout_tokens_per_s']:.0f} tok/s")
    if ratio is not None:
        print(f"ratio ours/TRL: {ratio:.3f}  (goal <= 0.35 with vLLM rollouts; was <= 0.5 with the HF engine)")
    print(f"matmul peak bf16 {peak['bf16']['gflops']:.0f} / fp32 {peak['fp32']['gflops']:.0f} GFLOP/s; "
          f"load before: {load_before}; after: {load_after}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
