"""``ToolACEEnv``: a ToolACE-style tool-use episode over the executable catalog.

An episode is one task. ``reset`` returns the system prompt (BFCL-style, listing the offered tools) and
the first user message. Each ``step`` takes the assistant's text:

* an attempted call list (``looks_like_calls``) is parsed, validated and executed on the episode's own
  ``World`` (built fresh for every reset, never shared); the results come back as one ``tool`` message.
  A parse error comes back the same way, as ``{"name": "invalid_call", "error": ...}``, and counts in
  ``info["errors"]``;
* plain text is the answer to the current user turn: the next user message follows for a multi-turn
  task, otherwise the episode terminates and is scored.

Reward (``reward_mode="strict"``, the default): 1.0 only if, for every user turn, the multiset of calls
equals the ground truth (argument values compared type-aware, see ``envs.toolace.reward``) with no
failed call, and the episode ended with a plain-text answer containing some text; for no-tool turns,
no call at all. Anything else is 0: no reward for format alone. ``reward_mode="partial"`` gives the mean
over user turns of matched / max(expected, attempted) instead (still 0 when cut at the turn cap), and
``reward_mode="graded"`` the mean over user turns of ToolRL's name / parameter / value score
(``envs.toolace.reward.graded_turn_score``), which also credits the right tool with wrong arguments.
Hitting ``max_turns`` truncates with reward 0.

``call_format`` chooses how the tools and calls reach the model. ``pythonic`` (default): the tools are listed
in the system prompt and calls are written as ``syntax`` says (the embedded SmolLM2 has no tool template).
``hermes`` / ``llama3_json``: native, for models whose chat template renders tools: ``info["tools"]`` holds
the offered tools as OpenAI function tools (``agents.rollout`` passes them to the template's ``tools=``), the
system message keeps only the plain-text paragraph (``prompt_style="toolace"``) or is left out (``bfcl``),
replies are parsed in that format (``tools.call_formats``), and each result comes back as its own ``tool``
message with ``name`` and ``tool_call_id`` (``envs.toolace.openai_messages``); the expert trajectories are
the same calls as assistant messages with ``tool_calls``. Scoring does not depend on the format.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from envs.base import ChatEnv, Messages
from envs.toolace.data import load_split, read_tasks
from envs.toolace.failures import classify_episode, classify_turn
from envs.toolace.masking import check_probability, mask_messages, masked_names, rename_calls
from envs.toolace.openai_messages import CallIds, native_tool_messages, openai_expert
from envs.toolace.prompt import PLAIN_TEXT, PromptStyle, system_prompt
from envs.toolace.replay import replay_check
from envs.toolace.reward import graded_turn_score, turn_score
from envs.toolace.task import Task
from tools import (
    ToolCall,
    ToolCallParseError,
    ToolResult,
    Toolset,
    looks_like_calls,
    parse_tool_calls,
    tool_message,
)
from tools.call_formats import get_call_format, openai_tool
from tools.catalog import World, build_catalog
from tools.toolset import Isolation

ToolsetFactory = Callable[[Task], Toolset]
TaskSource = Sequence[Task] | str | Path
_HAS_TEXT = re.compile(r"\w")
_OPTION_KEYS = {"index", "task_id", "task"}
NATIVE_FORMATS = ("hermes", "llama3_json")
CALL_FORMATS = ("pythonic", *NATIVE_FORMATS)


def catalog_toolset(timeout_s: float | None = 2.0, isolation: Isolation = "process") -> ToolsetFactory:
    """The default toolset factory: the task's offered catalog tools on a fresh ``World(task.world_seed)``."""
    return lambda task: build_catalog(World(task.world_seed), task.tools, timeout_s=timeout_s, isolation=isolation)


def user_tasks(tasks: TaskSource | Mapping[str, TaskSource], split: str | None) -> list[Task]:
    """The tasks of ``split`` from a user's source (see ``ToolACEEnv``'s ``tasks``); ``ValueError`` names
    the splits there are when ``split`` has none. ``split=None`` takes a list or file whole."""
    def load(source: TaskSource) -> list[Task]:
        return read_tasks(source) if isinstance(source, str | Path) else list(source)

    def labelled(chosen: list[Task]) -> list[Task]:  # tasks chosen by their split's key or file are of it
        return [t if t.split == split else dataclasses.replace(t, split=split) for t in chosen]

    per_split_files = isinstance(tasks, str | Path) and "{split}" in str(tasks)
    if split is None:
        if isinstance(tasks, Mapping) or per_split_files:
            raise ValueError("tasks holds several splits: name the one to use with split=...")
        return load(tasks)
    if isinstance(tasks, Mapping):
        if split not in tasks:
            raise ValueError(f"tasks has no split {split!r}; its splits: {sorted(tasks)}")
        return labelled(load(tasks[split]))
    if per_split_files:
        return labelled(read_tasks(str(tasks).replace("{split}", split)))
    loaded = load(tasks)
    kept = [t for t in loaded if t.split == split]
    if loaded and not kept:
        present = sorted({t.split for t in loaded})
        raise ValueError(f"none of the {len(loaded)} tasks has split {split!r} (their splits: {present}); set each "
                         f"Task's split, or pass tasks as {{split: tasks}} or a path with '{{split}}'")
    return kept


def bounded(toolset: Toolset, timeout_s: float | None) -> Toolset:
    """``toolset`` with a per-call limit of at most ``timeout_s`` (a copy when it changes; ``None``: as is)."""
    if timeout_s is None or (toolset.timeout_s is not None and toolset.timeout_s <= timeout_s):
        return toolset
    limited = copy.copy(toolset)
    limited.timeout_s = timeout_s
    return limited


_MCP_TOOLSETS: dict[str, Toolset] = {}


def mcp_toolset_factory(spec: Mapping[str, Any]) -> ToolsetFactory:
    """``task -> Toolset`` over an MCP server: the task's ``tools`` (all the server's when it names none).
    The connection is opened now (a bad command or URL fails at construction) and shared per process."""
    from tools.mcp import mcp_toolset

    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _MCP_TOOLSETS:
        _MCP_TOOLSETS[key] = mcp_toolset(spec)
    server = _MCP_TOOLSETS[key]
    return lambda task: server.subset(task.tools) if task.tools else server


class ToolACEEnv(ChatEnv):
    """Tool-use episodes with strict, execution-grounded rewards.

    Args:
        split: ``train``, ``val`` or ``test`` (generated on first use, see ``envs.toolace.data``; default
            ``train``); with ``tasks``, the split to keep (default: all the tasks given).
        data_dir: directory holding ``<split>.jsonl``; ``None`` uses the seeded cache.
        max_turns: assistant turns per episode before truncation.
        syntax: call syntax the agent writes: ``pythonic``, ``json`` or ``auto``.
        reward_mode: ``strict`` (default), ``partial`` or ``graded``.
        data_seed: generator seed of the cached splits.
        tasks: your own tasks instead of the generated splits: a list of ``Task``, a JSONL path, a path
            holding ``{split}`` (``data/{split}.jsonl``) or a mapping ``split -> list or path``. The
            environment keeps the tasks of ``split`` only (each ``Task`` carries its ``split``, default
            ``train``) and refuses a split none of them has, so a held-out run never scores training tasks.
        toolset_factory: ``task -> Toolset`` for a custom tool catalog (default: the built-in catalog).
        mcp: a toolset from an MCP server instead (``{"command": [...]}`` over stdio or ``{"url": ...}``
            over streamable HTTP, see ``tools.mcp``); each task is offered its ``tools``. One connection per
            server and process, shared by episodes: the server's own state is not reset between episodes.
        prompt_style: ``toolace`` (BFCL's prompt plus a plain-text paragraph) or ``bfcl`` (BFCL's exactly).
        tool_timeout_s: the per-call time limit of every tool the episode runs, the built-in catalog's and
            your toolset's alike (a toolset of your own with a shorter limit keeps it; ``None`` leaves the
            toolset's own limit).
        tool_isolation: where the built-in catalog's calls run: ``process`` (default: a worker process per
            episode, killed at the time limit, with a memory cap; ~3-25 ms to fork, by the parent's size) or
            ``thread`` (no fork: a timed-out call is abandoned, not stopped; for trusted tools at scale).
        max_calls_per_reply: calls of one reply that run (default 32; also at most the toolset's own cap,
            ``Toolset.max_calls_per_reply``); the others do not, and one more error result says so.
        max_tool_message_chars: length of one tool message (default 16,384 characters; also at most the
            toolset's own, ``Toolset.max_message_chars``): results past it are replaced by a short error.
            ``None`` for either: the toolset's own cap only.
        mask_tool_names: probability that a task's tools are offered under random names (Hammer's
            function masking, ``envs.toolace.masking``); for training environments, 0 for evaluation (1 in
            an evaluation: every tool renamed, so only its description identifies it).
        call_format: ``pythonic`` (tools in the system prompt, calls in ``syntax``) or a native format,
            ``hermes`` / ``llama3_json`` (the chat template's tools and calls; see the module docstring; the
            trainer resolves ``native`` / ``auto`` from the model's template).
    """

    def __init__(self, split: str | None = None, data_dir: str | Path | None = None, max_turns: int = 6,
                 syntax: Literal["pythonic", "json", "auto"] = "pythonic",
                 reward_mode: Literal["strict", "partial", "graded"] = "strict", data_seed: int = 0,
                 tasks: TaskSource | Mapping[str, TaskSource] | None = None,
                 toolset_factory: ToolsetFactory | None = None, mcp: Mapping[str, Any] | None = None,
                 prompt_style: PromptStyle = "toolace", tool_timeout_s: float | None = 2.0,
                 max_action_chars: int = 32_768, render_mode: str | None = None, mask_tool_names: float = 0.0,
                 max_calls_per_reply: int | None = 32, max_tool_message_chars: int | None = 16_384,
                 tool_isolation: Isolation = "process", call_format: str = "pythonic"):
        super().__init__(max_turns=max_turns, max_action_chars=max_action_chars, render_mode=render_mode)
        if call_format not in CALL_FORMATS:
            raise ValueError(f"call_format must be one of {', '.join(CALL_FORMATS)}, got {call_format!r} "
                             "(call_format=native|auto is resolved by the trainer from the chat template)")
        self.call_format = call_format
        self.native = call_format in NATIVE_FORMATS
        self.format = get_call_format(call_format) if self.native else None
        if syntax not in ("pythonic", "json", "auto"):
            raise ValueError(f"syntax must be 'pythonic', 'json' or 'auto', got {syntax!r}")
        if reward_mode not in ("strict", "partial", "graded"):
            raise ValueError(f"reward_mode must be 'strict', 'partial' or 'graded', got {reward_mode!r}")
        if prompt_style not in ("toolace", "bfcl"):
            raise ValueError(f"prompt_style must be 'toolace' or 'bfcl', got {prompt_style!r}")
        self.mask_tool_names = check_probability(mask_tool_names)
        self.aliases: dict[str, str] = {}
        self.data_seed = data_seed
        self.split = split
        self.syntax = syntax
        self.reward_mode = reward_mode
        self.prompt_style = prompt_style
        if tool_timeout_s is not None and not tool_timeout_s > 0:
            raise ValueError(f"tool_timeout_s must be positive or None, got {tool_timeout_s!r}")
        if toolset_factory is not None and mcp is not None:
            raise ValueError("give toolset_factory or mcp, not both")
        self.tool_timeout_s = tool_timeout_s
        for name, cap in (("max_calls_per_reply", max_calls_per_reply),
                          ("max_tool_message_chars", max_tool_message_chars)):
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {cap!r}")
        self.max_calls_per_reply = max_calls_per_reply
        self.max_tool_message_chars = max_tool_message_chars
        if tasks is None:
            self.tasks = load_split(split or "train", data_dir, seed=data_seed, check=expert_check())
        else:
            self.tasks = user_tasks(tasks, split)
        self._by_id = {t.id: i for i, t in enumerate(self.tasks)}
        self._default_tools = toolset_factory is None and mcp is None
        self._prompts: dict[tuple[str, ...], str] = {}
        if mcp is not None:
            toolset_factory = mcp_toolset_factory(mcp)
        if tool_isolation not in ("process", "thread"):
            raise ValueError(f"tool_isolation must be 'process' or 'thread', got {tool_isolation!r}")
        self.toolset_factory = toolset_factory or catalog_toolset(tool_timeout_s, tool_isolation)
        self.task: Task | None = None
        self.toolset: Toolset | None = None

    @property
    def num_tasks(self) -> int:
        """How many tasks ``reset(options={"index": i})`` can pick from."""
        return len(self.tasks)

    @property
    def task_ids(self) -> list[str]:
        return [t.id for t in self.tasks]

    # -- episode state -------------------------------------------------------------------------------
    def _pick(self, options: dict[str, Any]) -> Task:
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; expected one of {sorted(_OPTION_KEYS)}")
        if "task" in options:
            task = options["task"]
            return task if isinstance(task, Task) else Task.from_dict(task)
        if "task_id" in options:
            if options["task_id"] not in self._by_id:
                raise KeyError(f"no task with id {options['task_id']!r} in this environment")
            return self.tasks[self._by_id[options["task_id"]]]
        if not self.tasks:
            raise ValueError("this environment has no tasks; pass options={'task': ...} or give it tasks")
        if "index" in options:
            i = int(options["index"])
            if not 0 <= i < len(self.tasks):
                raise IndexError(f"task index {i} out of range for {len(self.tasks)} tasks")
            return self.tasks[i]
        return self.tasks[int(self.np_random.integers(len(self.tasks)))]

    def _on_episode_end(self) -> None:
        """Stop the episode's tool worker now: otherwise it lives until this env's next reset (a whole
        training step for a held-out env), holding a copy-on-write copy of every page the trainer writes
        meanwhile (weights, optimizer state, an in-process vLLM's KV cache)."""
        if self.toolset is not None:
            self.toolset.stop_worker()

    def _reset_task(self, options: dict[str, Any]) -> tuple[Messages, dict[str, Any]]:
        task = self._pick(options)
        self.task = task
        self.toolset = bounded(self.toolset_factory(task), self.tool_timeout_s)
        self.aliases = masked_names(task.id, self.toolset.names, self.mask_tool_names, self.data_seed)
        if self.aliases:
            self.toolset = self.toolset.renamed(self.aliases)
        self.user_turn = 0
        self.calls: list[list[ToolCall]] = [[] for _ in task.user_messages]
        self.turn_errors = [0] * task.n_turns
        self.turn_unparsed = [0] * task.n_turns
        self.errors = 0
        self.parse_errors = 0
        self.call_ids = CallIds()
        expert = mask_messages(task.expert, self.aliases)
        info = {"task_id": task.id, "kind": task.kind, "domain": task.domain, "tools": list(task.tools),
                "expert": expert, "ground_truth": task.ground_truth,
                "meta": dict(task.meta), "tool_aliases": dict(self.aliases), "call_format": self.call_format}
        user = {"role": "user", "content": task.user_messages[0]}
        if not self.native:
            return [{"role": "system", "content": self._system_prompt(task)}, user], info
        info["tool_names"] = info["tools"]
        info["tools"] = [openai_tool(self.toolset[name]) for name in self.toolset.names]
        info["expert"] = [m for m, _ in openai_expert(expert, where=f"task {task.id}")]
        return ([{"role": "system", "content": PLAIN_TEXT}] if self.prompt_style == "toolace" else []) + [user], info

    def _system_prompt(self, task: Task) -> str:
        """The prompt for the task's tools; cached by tool list for the built-in catalog (same schemas)."""
        assert self.toolset is not None
        if not self._default_tools or self.aliases:
            return system_prompt(self.toolset.schemas("toolace"), self.prompt_style)
        key = tuple(task.tools)
        prompt = self._prompts.get(key)
        if prompt is None:
            if len(self._prompts) >= 8192:
                self._prompts.clear()
            prompt = self._prompts[key] = system_prompt(self.toolset.schemas("toolace"), self.prompt_style)
        return prompt

    # -- a turn --------------------------------------------------------------------------------------------
    def _step_turn(self, assistant_text: str) -> tuple[Messages, float, bool, dict[str, Any]]:
        assert self.task is not None and self.toolset is not None, "reset() first"
        if self.native:
            reply = self.format.parse(assistant_text)
            if reply.calls or reply.error is not None:
                return self._native_tool_turn(reply.calls, reply.error)
        elif looks_like_calls(assistant_text, self.syntax):
            return self._tool_turn(assistant_text)
        if self.user_turn + 1 < self.task.n_turns and _HAS_TEXT.search(assistant_text):
            self.user_turn += 1
            info = self._progress_info()
            return [{"role": "user", "content": self.task.user_messages[self.user_turn]}], 0.0, False, info
        reward, info = self._score(answered=bool(_HAS_TEXT.search(assistant_text)))
        return [], reward, True, info

    def _tool_turn(self, text: str) -> tuple[Messages, float, bool, dict[str, Any]]:
        try:
            calls = parse_tool_calls(text, self.syntax)
        except ToolCallParseError as e:
            results = self._run_calls([], f"could not parse the function calls: {e}")
        else:
            results = self._run_calls(calls, None)
        return [tool_message(results)], 0.0, False, self._progress_info()

    def _native_tool_turn(self, calls: list[ToolCall], error: str | None) -> tuple[Messages, float, bool, dict[str, Any]]:
        """A reply in the template's call format: one ``tool`` message per result (an unparsable reply: one
        ``invalid_call`` result)."""
        results = self._run_calls(calls, None if error is None else f"could not parse the function calls: {error}")
        ids = self.call_ids.take(len(calls))
        return native_tool_messages([r.to_message_item() for r in results], ids), 0.0, False, self._progress_info()

    def _run_calls(self, calls: list[ToolCall], parse_error: str | None) -> list[ToolResult]:
        """Execute one reply's calls (or record its parse error) on the current user turn; the results."""
        u = self.user_turn
        if parse_error is not None:
            results = [ToolResult("invalid_call", error=parse_error)]
            self.turn_unparsed[u] += 1
            self.parse_errors += 1
        elif not calls:
            results = [ToolResult("invalid_call", error="empty call list: call at least one function, "
                                                          "or answer in plain text")]
            self.turn_unparsed[u] += 1
        else:
            results = self.toolset.execute_all(calls, max_calls=self.max_calls_per_reply,
                                               max_message_chars=self.max_tool_message_chars)
            self.calls[u].extend(calls)
        failed = sum(not r.ok for r in results)
        self.turn_errors[u] += failed
        self.errors += failed
        return results

    # -- scoring -------------------------------------------------------------------------------------------
    def call_schemas(self) -> list[dict[str, Any]] | None:
        """The episode's offered tools (the prompt's list) when calls are pythonic; see ``ChatEnv``."""
        if self.toolset is None or self.syntax != "pythonic" or self.native:
            return None
        return self.toolset.schemas("toolace")

    def _schema(self, name: str) -> dict[str, Any] | None:
        assert self.toolset is not None
        return self.toolset[name].parameters if name in self.toolset else None

    def _score(self, answered: bool, cut: bool = False) -> tuple[float, dict[str, Any]]:
        assert self.task is not None
        exact, partial, graded, failures = [], [], [], []
        for u in range(self.task.n_turns):
            if u > self.user_turn:
                exact.append(False)
                partial.append(0.0)
                graded.append(0.0)
                continue
            expected = rename_calls(self.task.turn_calls(u), self.aliases)
            e, p = turn_score(expected, self.calls[u], self.turn_errors[u], self.turn_unparsed[u], self._schema)
            exact.append(e)
            partial.append(p)
            graded.append(graded_turn_score(expected, self.calls[u], self.turn_unparsed[u], self._schema))
            failures.append(classify_turn(expected, self.calls[u], self.turn_errors[u], self.turn_unparsed[u],
                                          self._schema))
        completed = answered and self.user_turn == self.task.n_turns - 1
        success = completed and all(exact)
        if self.reward_mode == "strict":
            reward = 1.0 if success else 0.0
        else:
            scores = partial if self.reward_mode == "partial" else graded
            reward = sum(scores) / len(scores) if completed else 0.0
        failure = None if success else classify_episode(failures, self.user_turn, answered, cut)
        info = self._progress_info()
        info.update(final=True, matched=exact, partial_scores=partial, graded_scores=graded, answered=answered,
                    success=success, failure=failure[0] if failure else None,
                    failure_turn=failure[1] if failure else None)
        return reward, info

    def _progress_info(self) -> dict[str, Any]:
        assert self.task is not None
        return {"task_id": self.task.id, "kind": self.task.kind, "user_turn": self.user_turn,
                "calls": [[c.to_dict() for c in turn] for turn in self.calls],
                "errors": self.errors, "parse_errors": self.parse_errors, "final": False}

    def _on_truncate(self, reward: float, info: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        _, final = self._score(answered=False, cut=True)
        final.update(truncated_at_turn_cap=True)
        return 0.0, final


def expert_check(max_turns: int = 6) -> Callable[[Task], None]:
    """The check of every generated task: its expert trajectory replays to reward 1.0 through a
    ``ToolACEEnv`` (built at the first task; the catalog's calls run inline, our own tools on our own inputs)
    and reproduces the task's messages. It raises ``RuntimeError`` otherwise: a bug in a template."""
    return replay_check(lambda: ToolACEEnv(tasks=[], max_turns=max_turns, tool_timeout_s=None))
