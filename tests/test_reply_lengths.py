"""bench/reply_lengths.py: which replies a per-turn token cap makes impossible to get right."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("reply_lengths", REPO / "bench" / "reply_lengths.py")
reply_lengths = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reply_lengths)


def test_summary_counts_what_is_strictly_over_each_cap() -> None:
    s = reply_lengths.summary([10, 64, 65, 128, 129], [64, 128])
    assert s == {"n": 5, "median": 65, "p90": 128, "max": 129, "over_64": 3, "over_128": 1}


def test_the_command_counts_call_turns_only_and_the_tasks_a_cap_rules_out(tmp_path) -> None:
    out = tmp_path / "lengths.json"
    proc = subprocess.run([sys.executable, "bench/reply_lengths.py", "--no-bfcl", "--caps", "64", "10000",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())["toolace"]
    for split in ("train", "val", "test"):
        turns = result[split]["turns"]
        assert "no_tool" not in turns  # prose replies are not call turns: cut short, they still answer
        assert all(s["over_10000"] == 0 for s in turns.values())
        head = result[split]["first_200_tasks"]
        assert head["n"] == 200 and head["need_over_10000"] == 0
        # parallel call lists are the long ones: only they, and a task needing one, can pass 64 tokens
        assert turns["parallel"]["over_64"] > 0 and 0 < head["need_over_64"] <= turns["parallel"]["over_64"]
        assert all(s["over_64"] == 0 for kind, s in turns.items() if kind in ("single", "dependent"))
    assert "ToolACE expert call turns" in proc.stdout
    shares = json.loads(out.read_text())["expert_weight_shares"]
    assert abs(sum(w["trajectories"] for w in shares.values()) - 1) < 1e-9
    assert abs(sum(w["tokens"] for w in shares.values()) - 1) < 1e-9
    # a refusal is a few words and a parallel call list many: token-mean weighs the first far below its count
    irrelevant = shares["no_tool · irrelevant"]
    assert irrelevant["tokens"] < irrelevant["trajectories"] / 2
    assert shares["parallel"]["tokens"] > shares["parallel"]["trajectories"]
