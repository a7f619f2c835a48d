"""The realigned expert set: the JSONL file ``python -m algorithms.realign`` writes and the trainer reads
(``trainer.expert_data``) instead of the environment's own expert continuations.

One accepted episode per line, a JSON object with
``index`` (the task), ``opening`` (the messages ``env.reset`` gave), ``expert`` (the continuation to train
on: the rewritten assistant turns and the environment's real replies to them), ``original_expert``,
``source`` (``"hinted"``: rewritten by Hinted Decoding; ``"self"``: the model's own rollout, rewarded
fully; ``"original"``: the expert's own continuation, kept as a fallback), ``reward``, ``task`` (the reset
info without the expert), ``turns`` (per rewritten turn: mode, stop reason, switch position, tokens,
mean lam) and the centred log-likelihoods ``cll_original`` and ``cll_rewritten``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Messages = list[dict[str, Any]]

SOURCE_HINTED = "hinted"
SOURCE_SELF = "self"
SOURCE_ORIGINAL = "original"


def write_realigned(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Write records one JSON object per line, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def load_realigned(path: str | Path, sources: Sequence[str] | None = None) -> list[tuple[Messages, Messages]]:
    """The realigned expert pool: ``(opening messages, expert continuation)`` per line of ``path``, the same
    pair the trainer gets from ``env.reset`` (opening, ``info["expert"]``) and hands to ``expert_trajectory``.
    ``sources`` filters by record source (``"hinted"``, ``"self"``, ``"original"``; default: all)."""
    pairs = []
    with Path(path).open() as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                r["opening"], r["expert"]  # noqa: B018  (both keys are required)
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{number}: not a realigned expert record ({err!r})") from err
            if sources is not None and r.get("source") not in sources:
                continue
            pairs.append((r["opening"], r["expert"]))
    return pairs
