"""``trainer.prompt_grad``: full vs detached, in speed and in what the model learns, in one run.

Both arms are the project's ``Trainer`` (``algorithm=sft``, weighting none, the embedded model, bf16
autocast, lr 3e-4 constant, ``--experts`` expert trajectories per step, no rollouts), built from the same
seed, so step ``k`` draws the same expert batch in both. Each arm is scored by its token-mean negative
log-likelihood of the expert turns of ``--val`` ToolACE val tasks (same tools as training, unseen
requests), computed exactly (full forward, no gradient) before training, after ``--steps`` steps, and,
for the detached arm, again once its training time has reached the full arm's (``--match-time``):

* per step: how much of the exact gradient's learning the detached gradient keeps;
* per second: which one lowers the held-out NLL more in the same training time.

    .venv/bin/python bench/prompt_grad.py --steps 6 --experts 16 --val 24

Results: ``bench/results/prompt_grad.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build_trainer(mode: str, experts: int, run_dir: str, seed: int) -> Any:
    from hydra import compose, initialize_config_dir

    from algorithms.trainer import Trainer

    overrides = ["env=toolace", "algorithm=sft", "model=smollm2", f"seed={seed}", f"run_dir={run_dir}",
                 f"trainer.prompt_grad={mode}", f"trainer.expert_per_step={experts}", "trainer.eval_every=0",
                 "trainer.save_every=0", "trainer.resume=never", "trainer.progress=false", "trainer.total_steps=1000"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    return Trainer(cfg)


def val_trajectories(trainer: Any, n: int) -> list[Any]:
    from agents import expert_trajectory

    env = trainer._make_env(trainer.cfg.env.val_split)
    out = []
    for i in range(env.num_tasks):
        opening, info = env.reset(options={"index": i})
        if info.get("expert"):
            out.append(expert_trajectory(opening, info["expert"], trainer.tokenizer, group_id=f"val-{i}"))
        if len(out) == n:
            break
    return out


@torch.no_grad()
def expert_nll(trainer: Any, trajectories: list[Any]) -> float:
    """Token-mean NLL of the expert turns (the exact forward, one row at a time)."""
    from agents.models import autocast_context
    from agents.trajectory import collate
    from algorithms.forward import completion_logits
    from algorithms.logprobs import token_logprobs_and_entropy

    model = trainer.engine.module
    model.eval()
    total, tokens = 0.0, 0.0
    for t in trajectories:
        data = {k: v.to(trainer.device) for k, v in collate([t], pad_token_id=0).items()}
        with autocast_context(trainer.device_type, trainer.dtype):
            logits, window = completion_logits(model, data)
            logp, _ = token_logprobs_and_entropy(logits, window["input_ids"], temperature=1.0, with_entropy=False)
        mask = window["loss_mask"]
        total += float(-(logp.float() * mask).sum())
        tokens += float(mask.sum())
    model.train()
    return total / tokens


def run_arm(mode: str, args: argparse.Namespace, time_budget: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(mode, args.experts, run_dir, args.seed)
        val = val_trajectories(trainer, args.val)
        record: dict[str, Any] = {"mode": mode, "nll": {0: expert_nll(trainer, val)}, "step_train_s": []}
        print(f"[{mode}] val NLL before training {record['nll'][0]:.4f}", flush=True)
        step, spent = 0, 0.0
        while step < args.steps or (time_budget is not None and spent < time_budget and step < 4 * args.steps):
            step += 1  # the trainer's steps are 1-based
            metrics = trainer.train_step(step)
            spent += metrics["time/train_s"]
            record["step_train_s"].append(metrics["time/train_s"])
            print(f"[{mode}] step {step}: train {metrics['time/train_s']:.1f} s, sft loss {metrics['loss/sft']:.4f}",
                  flush=True)
            if step == args.steps:
                record["nll"][step] = expert_nll(trainer, val)
                print(f"[{mode}] val NLL after {step} steps {record['nll'][step]:.4f}", flush=True)
        if step not in record["nll"]:
            record["nll"][step] = expert_nll(trainer, val)
            print(f"[{mode}] val NLL after {step} steps ({spent:.0f} s of training) {record['nll'][step]:.4f}",
                  flush=True)
        record["steps"] = step
        record["train_s"] = spent
        del trainer
        return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--val", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--match-time", action=argparse.BooleanOptionalAction, default=True,
                        help="run the detached arm on until its training time matches the full arm's")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "prompt_grad.json"))
    args = parser.parse_args()

    started = time.time()
    full = run_arm("full", args, None)
    detached = run_arm("detached", args, full["train_s"] if args.match_time else None)
    k = args.steps
    per_step_ratio = (sum(detached["step_train_s"][:k]) / sum(full["step_train_s"][:k]))
    drop_full = full["nll"][0] - full["nll"][k]
    drop_detached = detached["nll"][0] - detached["nll"][k]
    result = {
        "args": vars(args), "machine": platform.platform(), "threads": torch.get_num_threads(),
        "full": full, "detached": detached,
        "train_time_ratio_detached_over_full": per_step_ratio,
        "nll_drop_same_steps": {"full": drop_full, "detached": drop_detached,
                                "detached_share": drop_detached / drop_full if drop_full else None},
        "nll_same_train_time": {"full": full["nll"][k],
                                "detached": detached["nll"][detached["steps"]],
                                "detached_steps": detached["steps"]},
        "seconds": time.time() - started,
    }
    print(f"training time per step, detached / full: {per_step_ratio:.2f}x")
    print(f"held-out expert NLL after {k} steps: full {full['nll'][k]:.4f} (drop {drop_full:.4f}), "
          f"detached {detached['nll'][k]:.4f} (drop {drop_detached:.4f})")
    print(f"same training time ({full['train_s']:.0f} s): full {full['nll'][k]:.4f} after {k} steps, "
          f"detached {detached['nll'][detached['steps']]:.4f} after {detached['steps']} steps")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
