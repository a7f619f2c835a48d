"""Generate ToolACE-style train/val/test splits from the executable catalog.

    python -m envs.toolace.generate --out DIR --seed S --n-train 5000 --n-val 400 --n-test 800

Writes ``train/val/test.jsonl`` and ``meta.json`` under ``DIR`` (``envs.toolace.data.generate_all``; the
tasks are synthesised by ``envs.toolace.generator``). Each task is replayed through ``ToolACEEnv`` and kept
only if its expert trajectory scores 1.0 (a task that fails replay is a bug in a template and raises;
``--no-verify`` skips the replay). Output is deterministic for a seed: same files byte for byte.
"""

from __future__ import annotations

import argparse
import json
import sys

from envs.toolace.data import DEFAULT_SIZES, generate_all
from envs.toolace.env import expert_check


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m envs.toolace.generate", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output directory for train/val/test.jsonl and meta.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=DEFAULT_SIZES["train"])
    p.add_argument("--n-val", type=int, default=DEFAULT_SIZES["val"])
    p.add_argument("--n-test", type=int, default=DEFAULT_SIZES["test"])
    p.add_argument("--no-verify", action="store_true", help="skip the replay check of every expert trajectory")
    a = p.parse_args(argv)
    sizes = {"train": a.n_train, "val": a.n_val, "test": a.n_test}
    meta = generate_all(a.out, a.seed, sizes, check=None if a.no_verify else expert_check())
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
