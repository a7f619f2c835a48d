"""Export the generated ToolACE-style tasks as OpenAI messages+tools JSONL.

The tasks of ``envs.toolace`` are our own format (``Task``); tools that read OpenAI's chat format (Hugging
Face ``datasets``, TRL, verifiers, and ``envs.toolcalls.data``) cannot read them. This writes each task as
one record ``{"id", "messages", "tools", ...}``: the first user message, then the task's expert trajectory
(``Task.expert``), its pythonic call strings parsed into ``tool_calls`` with dict arguments, each tool
result as its own ``tool`` message linked to its call by ``tool_call_id``, the answers and later user
turns as they are. ``tools`` are the offered catalog tools as OpenAI function tools (their JSON-schema
parameters, ``tools.schema.Tool.openai_schema``). A system prompt (the environment's, listing the same
tools) is optional. Every record is checked on the way out: its calls per user turn must be the task's
ground truth, as multisets, or the export stops with ``ValueError``.

    python -m envs.toolace.export --split train --out runs/toolace_train.openai.jsonl [--limit N]

The file reads back with ``envs.toolcalls.data.iter_samples(path, format="openai")``.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from envs.toolace.openai_messages import openai_expert
from envs.toolace.task import Task
from tools.calls import ToolCall

__all__ = ["catalog_schemas", "export_tasks", "main", "task_record"]

SystemStyle = Literal["none", "toolace", "bfcl"]


def catalog_schemas(names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """``name -> {"type": "function", "function": {...}}`` for the catalog's tools (all, or ``names``)."""
    from tools.catalog import World, catalog_tools

    return {t.name: t.openai_schema() for t in catalog_tools(World(0), names)}


def _system_text(task: Task, style: SystemStyle) -> str | None:
    if style == "none":
        return None
    from envs.toolace.prompt import system_prompt
    from tools.catalog import World, catalog_tools

    return system_prompt([t.toolace_schema() for t in catalog_tools(World(0), task.tools)], style)


def task_record(task: Task, schemas: Mapping[str, dict[str, Any]], system: str | None = None) -> dict[str, Any]:
    """One task as an OpenAI messages+tools record (see the module docstring); ``ValueError`` when the
    expert's calls of a user turn are not the task's ground truth, ``KeyError`` for a tool without schema."""
    missing = [n for n in task.tools if n not in schemas]
    if missing:
        raise KeyError(f"task {task.id}: no schema for tool(s) {missing}")
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": task.user_messages[0]})
    turn = 0
    called: list[list[ToolCall]] = [[] for _ in task.user_messages]
    for message, calls in openai_expert(task.expert, where=f"task {task.id}"):
        turn += message["role"] == "user"
        called[turn].extend(calls)
        messages.append(message)
    for u in range(task.n_turns):
        if collections.Counter(called[u]) != collections.Counter(task.turn_calls(u)):
            raise ValueError(f"task {task.id}: the expert's calls of user turn {u} are not its ground truth")
    return {"id": task.id, "messages": messages, "tools": [schemas[n] for n in task.tools],
            "kind": task.kind, "domain": task.domain, "split": task.split, "world_seed": task.world_seed}


def export_tasks(tasks: Iterable[Task], out: str | Path, system: SystemStyle = "none") -> int:
    """Write ``tasks`` to ``out`` as JSONL (gzipped when the name ends in ``.gz``), atomically: a temporary
    file renamed into place, so a reader never sees half an export. Returns the number written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    schemas = catalog_schemas()
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    prompts: dict[tuple[str, ...], str | None] = {}  # one prompt per tool list
    count = 0
    try:
        with os.fdopen(fd, "wb") as raw, (gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)
                                          if out.name.endswith(".gz") else raw) as f:
            for task in tasks:
                key = tuple(task.tools)
                if key not in prompts:
                    prompts[key] = _system_text(task, system)
                record = task_record(task, schemas, prompts[key])
                f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
                count += 1
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def main(argv: list[str] | None = None) -> int:
    """The command line: export one split (generated first if missing, see ``envs.toolace.data``)."""
    parser = argparse.ArgumentParser(prog="python -m envs.toolace.export",
                                     description="Export generated ToolACE-style tasks as OpenAI messages+tools "
                                                 "JSONL.")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--out", required=True, help="output file (.jsonl, or .jsonl.gz to gzip it)")
    parser.add_argument("--limit", type=int, default=None, help="export the first N tasks only")
    parser.add_argument("--data-dir", default=None, help="directory holding <split>.jsonl (default: the cache)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed of the cached splits")
    parser.add_argument("--system", default="none", choices=("none", "toolace", "bfcl"),
                        help="add the environment's system prompt in this style (default: none)")
    args = parser.parse_args(argv)
    from envs.toolace.data import load_split
    from envs.toolace.env import expert_check

    tasks = load_split(args.split, args.data_dir, seed=args.seed, check=expert_check())
    if args.limit is not None:
        tasks = tasks[:max(args.limit, 0)]
    count = export_tasks(tasks, args.out, args.system)
    print(f"wrote {count} {args.split} task(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
