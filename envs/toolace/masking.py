"""Function masking (Hammer, Lin et al. 2024, arXiv:2410.04587): offer a task's tools under random names.

A model fine-tuned on a fixed catalog learns which *name* answers which request and, facing tools it has
never seen, reaches for a familiar name (measured here: session 5's model, guided, on 200 held-out ToolACE
tasks calls a wrong offered tool in 48 of its 151 failures; in 30 of them the wrong pick is a training
tool and the right one is unseen; ``docs/results.md``). Hammer's remedy is to rename functions in part of the training data to random
strings, so that the only way to pick the right one is to read its description. ``ToolACEEnv`` applies it
per task with probability ``mask_tool_names`` (training environments only: ``env.train_kwargs``): the
prompt lists the renamed tools, the expert trajectory calls them by their new names, the tool messages
answer under them, and the calls are scored against the ground truth renamed the same way. Parameter
names are kept (Hammer also masks them; argument-level failures are rare here).

Which tasks are masked, and their names, are a pure function of ``(seed, task id)``: the same task is
masked the same way in every rollout, every expert draw and after a resume.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from collections.abc import Mapping, Sequence
from typing import Any

from tools import looks_like_calls
from tools.calls import ToolCall, format_pythonic, parse_pythonic
from tools.schema import is_call_name


def _rng(seed: int, task_id: str) -> random.Random:
    digest = hashlib.sha256(f"mask:{seed}:{task_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def check_probability(probability: float) -> float:
    """``probability`` as a float, or ``ValueError`` naming ``mask_tool_names`` when it is outside [0, 1]."""
    if not 0.0 <= float(probability) <= 1.0:
        raise ValueError(f"mask_tool_names must be a probability in [0, 1], got {probability!r}")
    return float(probability)


def masked_names(task_id: str, names: Sequence[str], probability: float, seed: int = 0) -> dict[str, str]:
    """``{name: random name}`` for every offered tool when the task is drawn for masking, else ``{}``.

    Random names are two lowercase chunks joined by ``_`` (``qmzt_vokra``): identifiers, never Python
    keywords, distinct from each other and from the real names.
    """
    probability = check_probability(probability)
    rng = _rng(seed, task_id)
    if probability == 0.0 or rng.random() >= probability:
        return {}
    taken = set(names)
    out: dict[str, str] = {}
    for name in names:
        while True:
            alias = "_".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 6))) for _ in range(2))
            if alias not in taken and is_call_name(alias):
                break
        taken.add(alias)
        out[name] = alias
    return out


def rename_calls(calls: Sequence[ToolCall], names: Mapping[str, str]) -> list[ToolCall]:
    """The calls with each tool name mapped through ``names`` (names it lacks are kept)."""
    return [ToolCall(names.get(c.name, c.name), c.arguments) for c in calls]


def mask_messages(messages: Sequence[Mapping[str, Any]], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """An expert continuation with its tools renamed: pythonic call lists in assistant turns, the ``name``
    of each item in tool messages. Plain text (answers, requests) is left as it is."""
    out = []
    for message in messages:
        message = dict(message)
        content = message.get("content")
        if names and isinstance(content, str):
            if message.get("role") == "assistant" and looks_like_calls(content, "pythonic"):
                message["content"] = format_pythonic(rename_calls(parse_pythonic(content), names))
            elif message.get("role") == "tool":
                items = json.loads(content)
                for item in items if isinstance(items, list) else [items]:
                    if isinstance(item, dict) and item.get("name") in names:
                        item["name"] = names[item["name"]]
                message["content"] = json.dumps(items, ensure_ascii=False)
        out.append(message)
    return out
