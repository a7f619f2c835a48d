"""Throughput of multi-turn rollouts: vLLM and the HF engine in the token-exact rollout, vs a naive loop.

All arms run the same episodes (same env indices, same per-turn token budget, same turn cap) in one process:

* ``vllm``: ``agents.rollout_with_stats`` with ``VLLMEngine`` (the rollout engine wherever vLLM is
  installed; skipped, and said so, where it is not): vLLM's continuous batching and prefix cache.
* ``batched``: ``agents.rollout_with_stats`` with ``HFEngine``: every live episode in one generate batch
  per turn, KV cache within a turn and prefix KV reuse across turns (each turn prefills only its delta).
* ``naive``: for each episode and turn, re-render the conversation with the chat template and call HF
  ``model.generate`` on that one prompt (KV cache within the call, nothing reused across turns or episodes).

The episodes are ``--prompts`` tasks x ``--group-size`` samples each, as in a GRPO step (the training
default is 4 x 4). Both run under the model's autocast policy (bf16 on CPU) and without autograd
(``torch.no_grad``, as ``generate`` itself). The figure is generated tokens per second of
wall time (the arms sample different texts, so their token counts differ); each engine arm runs once to
warm up (vLLM compiles its sampler on a machine's first call) and is timed on the second run. Results go to
``bench/results/rollout.json``.

    .venv/bin/python bench/rollout.py --prompts 4 --group-size 4 --max-new-tokens 64 --turns 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402
from agents import ChatRenderer, HFEngine, SamplingParams, autocast_context, load_model, rollout_with_stats  # noqa: E402
from agents.engines import vllm_installed  # noqa: E402
from agents.models import resolve_dtype  # noqa: E402


def naive_rollout(env_name: str, env_kwargs: dict[str, Any], indices: list[int], model: Any, tokenizer: Any,
                  renderer: ChatRenderer, sampling: SamplingParams, turns: int, dtype: str) -> dict[str, Any]:
    """One ``model.generate`` per episode per turn on the re-rendered conversation."""
    generated = turns_done = 0
    t0 = time.perf_counter()
    for i in indices:
        env = envs.make(env_name, **env_kwargs)
        conv, _ = env.reset(seed=sampling.seed, options={"index": i})
        conv = list(conv)
        for _ in range(turns):
            prompt = torch.tensor([renderer.render_prompt(conv)])
            with torch.no_grad(), autocast_context("cpu", dtype):  # as generate() itself; see HFEngine
                out = model.generate(
                    input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=sampling.max_new_tokens,
                    do_sample=not sampling.is_greedy, temperature=sampling.temperature if not sampling.is_greedy else None,
                    top_p=sampling.top_p if not sampling.is_greedy else None, top_k=None,
                    eos_token_id=renderer.eot_id, pad_token_id=tokenizer.pad_token_id)
            new = out[0, prompt.shape[1]:].tolist()
            generated += len(new)
            turns_done += 1
            text = tokenizer.decode(new[:-1] if new and new[-1] == renderer.eot_id else new,
                                    skip_special_tokens=False, clean_up_tokenization_spaces=False)
            messages, _, terminated, truncated, _ = env.step(text)
            conv += [{"role": "assistant", "content": text}, *messages]
            if terminated or truncated:
                break
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "generated_tokens": generated, "turns": turns_done,
            "tokens_per_s": generated / wall if wall > 0 else 0.0}


def batched_rollout(env_name: str, env_kwargs: dict[str, Any], indices: list[int], engine: Any,
                    renderer: ChatRenderer, sampling: SamplingParams, turns: int) -> dict[str, Any]:
    """``rollout_with_stats`` on ``engine``, starting without cached prefixes (like the naive arm)."""
    if isinstance(engine, HFEngine):
        engine.update_weights()
    else:
        engine.llm.reset_prefix_cache()
    envs_ = [envs.make(env_name, **env_kwargs) for _ in indices]
    reset = [{"seed": sampling.seed, "options": {"index": i}} for i in indices]
    t0 = time.perf_counter()
    trajs, stats = rollout_with_stats(envs_, engine, renderer, sampling=sampling, reset_kwargs=reset,
                                      max_turns=turns)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "generated_tokens": stats.generated_tokens, "turns": stats.turns,
            "tokens_per_s": stats.generated_tokens / wall if wall > 0 else 0.0,
            "generate_calls": stats.generate_calls, "generate_s": stats.generate_s, "env_s": stats.env_s,
            "render_mismatch_turns": stats.render_mismatch_turns, "length_cut_turns": stats.length_cut_turns,
            "mean_reward": sum(t.reward for t in trajs) / len(trajs),
            "engine": {k: v for k, v in vars(engine.stats).items() if isinstance(v, int | float)}}


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=4, help="distinct tasks")
    p.add_argument("--group-size", type=int, default=4, help="samples per task (GRPO group)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="per-turn token budget (both arms)")
    p.add_argument("--turns", type=int, default=2, help="turn cap per episode (both arms)")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--dtype", default="auto", help="bf16, fp32 or auto (bf16 where this CPU computes it natively)")
    p.add_argument("--env", default="toolace", help="env config name or Gymnasium id")
    p.add_argument("--split", default="train")
    p.add_argument("--start-index", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-vllm", action="store_true", help="leave out the vLLM arm")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "rollout.json"))
    args = p.parse_args(argv)
    args.dtype = resolve_dtype(args.dtype)

    model, tokenizer = load_model(args.model, dtype=args.dtype)
    renderer = ChatRenderer(tokenizer)
    engine = HFEngine(model, tokenizer, dtype=args.dtype)
    sampling = SamplingParams(temperature=args.temperature, top_p=1.0, max_new_tokens=args.max_new_tokens,
                              greedy=args.greedy, seed=args.seed)
    env_kwargs = {"split": args.split}
    indices = [args.start_index + i for i in range(args.prompts) for _ in range(args.group_size)]

    # warm-up (first-call allocations, autocast kernels) outside the timings
    engine.generate([renderer.encode("warm up")], SamplingParams(max_new_tokens=4, seed=0))

    vllm = None
    if args.no_vllm or not vllm_installed():
        print("vllm: " + ("left out (--no-vllm)" if args.no_vllm else "not installed, arm skipped"), flush=True)
    else:
        from agents.vllm_engine import VLLMEngine

        sampler = VLLMEngine(args.model, tokenizer, dtype=args.dtype, seed=args.seed)
        print(f"vllm: loaded in {sampler.stats.load_seconds:.1f} s; warm-up run ...", flush=True)
        batched_rollout(args.env, env_kwargs, indices, sampler, renderer, sampling, args.turns)
        vllm = batched_rollout(args.env, env_kwargs, indices, sampler, renderer, sampling, args.turns)
        vllm["load_s"] = sampler.stats.load_seconds
        print(f"  {vllm['generated_tokens']} tokens in {vllm['wall_s']:.1f} s = {vllm['tokens_per_s']:.1f} tok/s",
              flush=True)
        del sampler
    print(f"batched (HF engine): {args.prompts} tasks x {args.group_size} samples x <= {args.turns} turns x <= "
          f"{args.max_new_tokens} tokens ...", flush=True)
    batched_rollout(args.env, env_kwargs, indices, engine, renderer, sampling, args.turns)
    batched = batched_rollout(args.env, env_kwargs, indices, engine, renderer, sampling, args.turns)
    print(f"  {batched['generated_tokens']} tokens in {batched['wall_s']:.1f} s = {batched['tokens_per_s']:.1f} tok/s",
          flush=True)
    print("naive: one model.generate per episode per turn ...", flush=True)
    naive = naive_rollout(args.env, env_kwargs, indices, model, tokenizer, renderer, sampling, args.turns, args.dtype)
    print(f"  {naive['generated_tokens']} tokens in {naive['wall_s']:.1f} s = {naive['tokens_per_s']:.1f} tok/s")
    speedup = batched["tokens_per_s"] / naive["tokens_per_s"] if naive["tokens_per_s"] else float("nan")
    print(f"speedup (tokens/s batched / naive): {speedup:.2f}x  (goal >= 3x)")
    vllm_speedup = vllm["tokens_per_s"] / batched["tokens_per_s"] if vllm and batched["tokens_per_s"] else None
    if vllm_speedup is not None:
        print(f"vllm / HF engine (tokens/s): {vllm_speedup:.2f}x  (goal >= 2x)")

    result = {
        "bench": "rollout", "config": vars(args), "vllm": vllm, "batched": batched, "naive": naive,
        "speedup": speedup, "vllm_vs_hf_engine": vllm_speedup,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpus": os.cpu_count()},
        "commit": _git_commit(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
