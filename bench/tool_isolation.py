"""What running each episode's tools in a worker process costs, against threads and inline calls.

Replays ToolACE expert trajectories (every tool call of the expert, through ``env.step``) with the built-in
catalog under ``tool_isolation=process`` (the default: a forked worker per episode, killed at the time
limit), ``thread`` (abandoned at the limit, not stopped) and inline (no limit), in a process that holds
the embedded model, as the trainer does (forking costs more the more memory the parent maps). Prints the
time per episode for each, and the ratios, and writes ``bench/results/tool_isolation.json``.

    .venv/bin/python bench/tool_isolation.py [--episodes 200]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from agents import load_model
from envs.toolace import ToolACEEnv, load_split
from envs.toolace.replay import replay_expert

OUT = Path(__file__).resolve().parent / "results" / "tool_isolation.json"


def per_episode_ms(env: ToolACEEnv, tasks: list) -> float:
    start = time.perf_counter()
    for task in tasks:
        reward, problem = replay_expert(env, task)
        assert reward == 1.0 and problem is None, (task.id, problem)
    return 1000 * (time.perf_counter() - start) / len(tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    args = parser.parse_args()
    model, _ = load_model("smollm2-135m-instruct", dtype="fp32")  # a trainer-sized parent process
    tasks = [t for t in load_split("val") if any(m["role"] == "tool" for m in t.expert)][:args.episodes]
    envs = {"inline": ToolACEEnv(tasks=[], tool_timeout_s=None),
            "thread": ToolACEEnv(tasks=[], tool_isolation="thread"),
            "process": ToolACEEnv(tasks=[], tool_isolation="process")}
    per_episode_ms(envs["inline"], tasks[:10])  # warm-up: imports, prompt caches
    results = {name: per_episode_ms(env, tasks) for name, env in envs.items()}
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"episodes": len(tasks), "parent_max_rss_mb": round(rss_mb), "ms_per_episode": results,
              "process_over_thread": results["process"] / results["thread"],
              "process_minus_thread_ms": results["process"] - results["thread"]}
    print(json.dumps(report, indent=1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1))
    del model


if __name__ == "__main__":
    main()
