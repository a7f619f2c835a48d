"""How long the right replies are, in the embedded model's tokens, against a per-turn token cap.

A call list cut at ``max_new_tokens`` cannot be right: it does not parse. This counts, for ToolACE's expert
call-list turns (by task kind; a prose turn cut short still answers, so those are left out) and BFCL's
ground-truth call lists (by category, rendered as ``[f(a=1), ...]`` with optional parameters left out, the
shortest right reply), how many exceed each cap, and how many of the first ``--first`` tasks of each
ToolACE split need at least one call turn over it (the most that split's score can reach at that cap is
then ``1 - that share``). The counts include the reply's ``<|im_end|>``, which a turn must also fit.
It also gives each kind of training task (no-tool ones by sub-kind) its share of the expert trajectories and
of their assistant tokens: the weight a kind gets in the SFT term under ``loss_agg=seq-mean-token-mean`` and
under ``token-mean``. Prints tables and writes JSON:

    .venv/bin/python bench/reply_lengths.py                  # caps 64 and 128, first 200 of test and val
    .venv/bin/python bench/reply_lengths.py --caps 64 --no-bfcl
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from agents.models import EMBEDDED_SPEC, load_tokenizer
from tools import looks_like_calls

SPLITS = ("train", "val", "test")
BFCL_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple",
                   "live_parallel", "live_parallel_multiple")


def summary(lengths: list[int], caps: list[int]) -> dict[str, Any]:
    """Count, median, 90th percentile, maximum and how many are over each cap."""
    a = np.asarray(lengths)
    return {"n": int(a.size), "median": int(np.median(a)), "p90": int(np.percentile(a, 90)), "max": int(a.max()),
            **{f"over_{c}": int((a > c).sum()) for c in caps}}


def toolace_lengths(splits: dict[str, list], tokenize, caps: list[int], first: int) -> dict[str, Any]:
    """Per split: expert call-list turns by task kind, and the first ``first`` tasks needing one over a cap."""
    out: dict[str, Any] = {}
    for split, tasks in splits.items():
        turns: dict[str, list[int]] = defaultdict(list)
        longest = []
        for task in tasks:
            lengths = [tokenize(m["content"]) for m in task.expert
                       if m["role"] == "assistant" and looks_like_calls(m["content"], "pythonic")]
            if lengths:
                turns[task.kind] += lengths
            longest.append((task.kind, max(lengths, default=0)))
        head = longest[:first]
        out[split] = {
            "turns": {kind: summary(v, caps) for kind, v in sorted(turns.items())},
            f"first_{first}_tasks": {"n": len(head), **{f"need_over_{c}": sum(n > c for _, n in head) for c in caps}},
        }
    return out


def expert_weight_shares(tasks: list, tokenize) -> dict[str, dict[str, float]]:
    """Per task kind (``no_tool · <subkind>`` apart): its share of ``tasks``' expert trajectories and of their
    assistant tokens (every assistant turn, calls and prose: what the SFT term trains on)."""
    trajectories: dict[str, int] = defaultdict(int)
    tokens: dict[str, int] = defaultdict(int)
    for task in tasks:
        kind = f"no_tool · {task.meta.get('subkind')}" if task.kind == "no_tool" else task.kind
        trajectories[kind] += 1
        tokens[kind] += sum(tokenize(m["content"]) for m in task.expert if m["role"] == "assistant")
    n, t = sum(trajectories.values()), sum(tokens.values())
    return {kind: {"trajectories": trajectories[kind] / n, "tokens": tokens[kind] / t,
                   "mean_tokens": tokens[kind] / trajectories[kind]} for kind in sorted(trajectories)}


def bfcl_lengths(tokenize, caps: list[int]) -> dict[str, Any]:
    """Per BFCL category: the ground truth's shortest right reply (``envs.bfcl.ground_truth.answer_text``)."""
    from envs.bfcl.data import load_answers, load_entries  # noqa: PLC0415
    from envs.bfcl.ground_truth import answer_text  # noqa: PLC0415

    out = {}
    for category in BFCL_CATEGORIES:
        answers = load_answers(category)
        out[category] = summary([tokenize(answer_text(e["function"], answers[e["id"]]))
                                 for e in load_entries(category)], caps)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caps", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--first", type=int, default=200, help="the ToolACE tasks an evaluation scores")
    parser.add_argument("--no-bfcl", action="store_true")
    parser.add_argument("--out", default="bench/results/reply_lengths.json")
    args = parser.parse_args()
    tok = load_tokenizer(EMBEDDED_SPEC)

    def tokenize(text: str) -> int:
        return len(tok(text + "<|im_end|>", add_special_tokens=False)["input_ids"])

    from envs.toolace.data import load_split  # noqa: PLC0415

    splits = {split: load_split(split) for split in SPLITS}
    result: dict[str, Any] = {"caps": args.caps, "toolace": toolace_lengths(splits, tokenize, args.caps, args.first),
                              "expert_weight_shares": expert_weight_shares(splits["train"], tokenize)}
    if not args.no_bfcl:
        result["bfcl"] = bfcl_lengths(tokenize, args.caps)
    def row(label: str, s: dict[str, Any]) -> str:
        return (f"{label:32} {s['n']:6} {s['median']:6} {s['p90']:5} {s['max']:5} "
                + " ".join(f"{s[f'over_{c}']:6}" for c in args.caps))

    over = " ".join(f"{'>' + str(c):>6}" for c in args.caps)
    print(f"{'ToolACE expert call turns':32} {'n':>6} {'median':>6} {'p90':>5} {'max':>5} {over}")
    for split, block in result["toolace"].items():
        for kind, s in block["turns"].items():
            print(row(f"{split} {kind}", s))
        head = block[f"first_{args.first}_tasks"]
        label = f"{split} first {head['n']} tasks needing a call turn over the cap"
        print(f"{label:62} " + " ".join(f"{head[f'need_over_{c}']:6}" for c in args.caps))
    for category, s in result.get("bfcl", {}).items():
        print(row(f"BFCL {category}", s))
    print(f"\n{'ToolACE train expert weight':32} {'trajectories':>12} {'tokens':>7} {'mean':>6}")
    for kind, w in result["expert_weight_shares"].items():
        print(f"{kind:32} {w['trajectories']:12.1%} {w['tokens']:7.1%} {w['mean_tokens']:6.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
