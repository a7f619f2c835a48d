"""``chordgym/ToolCalls-v0``: tool-calling episodes replayed from a dataset the user brings.

Each sample of the file (``envs.toolcalls.data``: OpenAI messages+tools, the ToolACE release, the Tool-N1
splits of the CHORD paper) is one task. The opening is everything before the sample's first assistant
message; every assistant message of the sample is one step the model plays:

* an assistant turn **with calls** is scored against its gold calls: the paper's reward, 1 iff the
  multiset of ``(name, arguments)`` calls equals the gold one, type-strict (``1`` is not ``1.0`` nor
  ``"1"``; argument order and call order are free). With ``require_think`` a reply without a
  ``<think>...</think>`` block scores 0 (Tool-N1's format reward). When the calls match, the data's own
  following messages (the recorded tool results, a user follow-up) come back and the episode goes on;
  otherwise it ends there: the data has no result for a call it does not hold.
* an assistant turn **without calls** is a text turn: a reply without calls passes (its wording is not
  scored), a reply with calls (or malformed call markup) ends the episode.

The episode's reward arrives with its last step: ``strict`` (default) 1.0 iff every turn passed;
``partial`` the mean per-turn score over all the sample's turns, a call turn scoring its share of matched
calls ``|gold & reply| / max(|gold|, |reply|)`` and turns never reached 0 (shaping; the held-out score
stays strict). ``failure`` says why an episode failed: ``format_error``, ``missing_think``, ``no_call``,
``wrong_calls``, ``unexpected_call``, ``turn_cap``.

How the tools and calls reach the model (``call_format``):

* ``hermes`` / ``llama3_json``: native. The tools go through the chat template's ``tools=`` argument
  (``info["tools"]``, read by ``agents.rollout`` with a ``ChatRenderer(native=True)``), the expert's calls are
  assistant messages with ``tool_calls`` that the template renders, tool results are ``tool`` messages with
  ``name`` and ``tool_call_id``; replies are parsed in the template's own format.
* ``pythonic`` / ``tool_n1``: prompt formats for templates that do not render tools (the embedded SmolLM2):
  the tools are listed in a system prompt (BFCL's for ``pythonic``, Tool-N1's for ``tool_n1``), the
  expert's calls are assistant text in that format, tool results plain ``tool`` messages.

The expert continuation (``info["expert"]``) is the sample's own messages after the opening, in the chosen
format, so the same file gives the tasks and the expert data (CHORD's SFT term).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envs.base import ChatEnv
from envs.call_prompt import call_system_prompt
from envs.toolcalls.data import ToolCallSample, load_samples
from tools import ToolCall
from tools.call_formats import ParsedReply, get_call_format

NATIVE_FORMATS = ("hermes", "llama3_json")
PROMPT_FORMATS = ("pythonic", "tool_n1")
REWARD_MODES = ("strict", "partial")

TOOL_N1_SYSTEM = (
    "You are a helpful dialogue assistant capable of leveraging tool calls to solve user tasks and provide "
    "structured chat responses.\n\n**Available Tools**\nIn your response, you can use the following tools:\n"
    "{tools}\n\n**Steps for Each Turn**\n1. **Think:** Recall relevant context and analyze the current user "
    "goal.\n2. **Decide on Tool Usage:** If a tool is needed, specify the tool and its parameters.\n"
    "3. **Respond Appropriately:** If a response is needed, generate one while maintaining consistency "
    "across user queries.\n\n**Output Format**\n```plaintext\n<think> Your thoughts and reasoning </think>\n"
    "<tool_call>\n[{{\"name\": \"Tool name\", \"arguments\": {{\"Parameter name\": \"Parameter content\"}}}}, "
    "...]\n</tool_call>\n```"
)


@dataclass(frozen=True)
class _Turn:
    """One assistant message of a sample (the gold) and the messages that follow it up to the next one."""

    gold: dict[str, Any]
    calls: list[ToolCall]
    after: list[dict[str, Any]]


@dataclass(frozen=True)
class _Task:
    sample: ToolCallSample
    opening: list[dict[str, Any]]
    turns: list[_Turn]


def _split_task(sample: ToolCallSample) -> _Task:
    messages = [dict(m) for m in sample.messages]
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
    if first is None:
        raise ValueError(f"{sample.source}: the sample has no assistant message, so no turn to score")
    turns: list[_Turn] = []
    i = first
    while i < len(messages):
        gold = messages[i]
        j = i + 1
        while j < len(messages) and messages[j]["role"] != "assistant":
            j += 1
        calls = [ToolCall(c["function"]["name"], dict(c["function"]["arguments"])) for c in gold.get("tool_calls") or []]
        turns.append(_Turn(gold, calls, messages[i + 1:j]))
        i = j
    return _Task(sample, messages[:first], turns)


def multiset_share(gold: Sequence[ToolCall], reply: Sequence[ToolCall]) -> float:
    """Matched calls over ``max(|gold|, |reply|)``, calls compared type-strict as ``(name, arguments)``
    (1.0 iff the multisets are equal)."""
    if not gold and not reply:
        return 1.0
    matched = sum((Counter(c.key for c in gold) & Counter(c.key for c in reply)).values())
    return matched / max(len(gold), len(reply))


class ToolCallsEnv(ChatEnv):
    """Episodes replayed from a tool-calling dataset; see the module docstring.

    Args:
        path: the data file, or ``{split: file}`` (one file per split).
        split: which of ``path``'s files (ignored when ``path`` is one file).
        format: ``auto`` | ``openai`` | ``toolace`` | ``tool_n1`` (``envs.toolcalls.data``).
        on_error: ``skip`` (report each broken line as ``file:line`` and go on) or ``raise``.
        call_format: ``pythonic`` | ``tool_n1`` (tools in the system prompt) | ``hermes`` | ``llama3_json``
            (the chat template's native tools; the trainer sets it from ``call_format=native|auto``).
        reward_mode: ``strict`` | ``partial``.
        require_think: a call turn without a ``<think>`` block scores 0.
        keep_system: in native formats, keep the sample's own system message (prompt formats replace it).
        limit: read at most this many samples.
    """

    def __init__(self, path: str | Mapping[str, str], split: str = "train", format: str = "auto",
                 on_error: str = "skip", call_format: str = "pythonic", reward_mode: str = "strict",
                 require_think: bool = False, keep_system: bool = True, limit: int | None = None,
                 max_turns: int = 16, render_mode: str | None = None):
        super().__init__(max_turns=max_turns, render_mode=render_mode)
        if isinstance(path, Mapping):
            if split not in path:
                raise ValueError(f"path has no file for split {split!r} (it has {', '.join(map(str, path))})")
            path = path[split]
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {', '.join(REWARD_MODES)}, got {reward_mode!r}")
        if call_format not in NATIVE_FORMATS + PROMPT_FORMATS:
            raise ValueError(f"call_format must be one of {', '.join(NATIVE_FORMATS + PROMPT_FORMATS)}, got "
                             f"{call_format!r} (call_format=native|auto is resolved by the trainer from the chat template)")
        self.path, self.split = str(path), split
        self.call_format = call_format
        self.format = get_call_format(call_format)
        self.native = call_format in NATIVE_FORMATS
        self.reward_mode, self.require_think, self.keep_system = reward_mode, bool(require_think), bool(keep_system)
        samples, self.report = load_samples(self.path, format=format, on_error=on_error, limit=limit)
        self.tasks: list[_Task] = []
        for sample in samples:
            try:
                self.tasks.append(_split_task(sample))
            except ValueError as err:
                if on_error == "raise":
                    raise
                self.report.skipped += 1
                self.report.errors.append(str(err))
        if not self.tasks:
            raise ValueError(f"{self.path}: no usable sample ({self.report.summary()})")
        self._task: _Task | None = None
        self._next = 0
        self._scores: list[float] = []

    # -- the task list ---------------------------------------------------------------------------------
    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_ids(self) -> list[str]:
        return [t.sample.id for t in self.tasks]

    def call_schemas(self) -> list[dict[str, Any]] | None:
        """The current task's tools for schema-guided decoding (pythonic call lists only)."""
        if self.call_format != "pythonic" or self._task is None:
            return None
        return [dict(t["function"]) for t in self._task.sample.tools]

    # -- episodes --------------------------------------------------------------------------------------
    def _reset_task(self, options: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        index = options.get("index")
        if index is None:
            index = int(self.np_random.integers(self.num_tasks))
        if not 0 <= int(index) < self.num_tasks:
            raise IndexError(f"task index {index} out of range [0, {self.num_tasks})")
        task = self.tasks[int(index)]
        self._task, self._next, self._scores = task, 0, []
        info: dict[str, Any] = {"task_id": task.sample.id, "index": int(index), "source": task.sample.source,
                                "kind": _kind(task), "call_format": self.call_format,
                                "expert": self._expert(task)}
        if self.native:
            info["tools"] = [dict(t) for t in task.sample.tools]
        return self._opening(task), info

    def _opening(self, task: _Task) -> list[dict[str, Any]]:
        messages = [self._message(m) for m in task.opening]
        if self.native:
            return messages if self.keep_system else [m for m in messages if m["role"] != "system"]
        rest = [m for m in messages if m["role"] != "system"]
        return [{"role": "system", "content": self._system_prompt(task)}, *rest]

    def _system_prompt(self, task: _Task) -> str:
        functions = [dict(t["function"]) for t in task.sample.tools]
        if self.call_format == "tool_n1":
            return TOOL_N1_SYSTEM.format(tools="\n".join(json.dumps(f, ensure_ascii=False) for f in functions))
        return call_system_prompt(functions)

    def _message(self, message: dict[str, Any]) -> dict[str, Any]:
        """A data message as this format shows it to the model (prompt formats: plain role + content)."""
        if self.native:
            return dict(message)
        if message["role"] == "assistant":
            return {"role": "assistant", "content": self._assistant_text(message)}
        return {"role": message["role"], "content": str(message.get("content") or "")}

    def _assistant_text(self, message: dict[str, Any]) -> str:
        calls = [ToolCall(c["function"]["name"], dict(c["function"]["arguments"])) for c in message.get("tool_calls") or []]
        content = str(message.get("content") or "")
        think = message.get("reasoning") or message.get("reasoning_content")
        if not calls:
            return content
        try:
            return self.format.render(calls, content=content, think=think)
        except ValueError:  # the format cannot hold this content beside calls (pythonic): the calls alone
            return self.format.render(calls, think=think)

    def _expert(self, task: _Task) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for turn in task.turns:
            out.append(self._message(turn.gold))
            out.extend(self._message(m) for m in turn.after)
        return out

    def _step_turn(self, assistant_text: str) -> tuple[list[dict[str, Any]], float, bool, dict[str, Any]]:
        task = self._task
        if task is None:
            raise RuntimeError("step() before reset()")
        turn = task.turns[self._next]
        reply = self.format.parse(assistant_text)
        score, failure = self._score(turn, reply)
        self._scores.append(score)
        self._next += 1
        info: dict[str, Any] = {"turn_scores": list(self._scores), "parsed_calls": [c.to_dict() for c in reply.calls],
                                "parse_error": reply.error}
        passed = failure is None
        if passed and self._next < len(task.turns):
            info["failure"] = None
            return [self._message(m) for m in turn.after], 0.0, False, info
        info["failure"] = failure
        return [], self._episode_reward(task), True, info

    def _score(self, turn: _Turn, reply: ParsedReply) -> tuple[float, str | None]:
        if not turn.calls:  # a text turn
            return (0.0, "unexpected_call") if reply.calls or reply.error else (1.0, None)
        if reply.error is not None:
            return 0.0, "format_error"
        if self.require_think and not reply.think:
            return 0.0, "missing_think"
        if not reply.calls:
            return 0.0, "no_call"
        share = multiset_share(turn.calls, reply.calls)
        return share, (None if share == 1.0 else "wrong_calls")

    def _episode_reward(self, task: _Task) -> float:
        if self.reward_mode == "partial":
            return sum(self._scores) / len(task.turns)
        return 1.0 if len(self._scores) == len(task.turns) and all(s == 1.0 for s in self._scores) else 0.0

    def _on_truncate(self, reward: float, info: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        task = self._task
        partial = sum(self._scores) / len(task.turns) if task and self.reward_mode == "partial" else 0.0
        return partial, {**info, "failure": "turn_cap"}


def _kind(task: _Task) -> str:
    """``single`` / ``parallel`` (one call turn with one / several calls), ``multi_step`` (several call
    turns), ``no_tool`` (no call turn)."""
    call_turns = [t for t in task.turns if t.calls]
    if not call_turns:
        return "no_tool"
    if len(call_turns) > 1:
        return "multi_step"
    return "parallel" if len(call_turns[0].calls) > 1 else "single"
