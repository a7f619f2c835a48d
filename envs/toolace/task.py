"""A ToolACE-style task: what the user asks, which tools are offered, and what a correct agent does.

A task is plain data (JSON-serialisable) so that splits can be written once and replayed anywhere:

* ``user_messages``: one entry per user turn (multi-turn tasks have several);
* ``ground_truth``: per user turn, the assistant's call lists in expert order, each call
  ``{"name", "arguments"}`` (a no-tool turn has ``[]``); the reward compares the multiset of calls per
  user turn, so order within and across call lists is free;
* ``expert``: the expert continuation after the first user message: assistant call strings (pythonic),
  the real tool messages they produce on a fresh ``World(world_seed)``, assistant answers, and the later
  user messages, exactly as the environment emits them;
* ``tools``: the offered tool names (needed ones plus distractors), in prompt order.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tools import ToolCall

#: task kinds; ``no_tool`` tasks carry ``meta["subkind"]`` in ``irrelevant``, ``chitchat``, ``missing_param``
KINDS = ("single", "parallel", "dependent", "multi_turn", "no_tool")


@dataclasses.dataclass
class Task:
    id: str
    kind: str
    domain: str
    tools: list[str]
    user_messages: list[str]
    ground_truth: list[list[list[dict[str, Any]]]]
    expert: list[dict[str, str]]
    world_seed: int
    split: str = "train"
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.id}: unknown kind {self.kind!r}; expected one of {KINDS}")
        if len(self.ground_truth) != len(self.user_messages):
            raise ValueError(f"task {self.id}: {len(self.user_messages)} user turns but "
                             f"{len(self.ground_truth)} ground-truth turns")

    @property
    def n_turns(self) -> int:
        return len(self.user_messages)

    def turn_calls(self, turn: int) -> list[ToolCall]:
        """All ground-truth calls of user turn ``turn`` (flattened over its call lists)."""
        return [ToolCall(c["name"], dict(c["arguments"])) for calls in self.ground_truth[turn] for c in calls]

    def needed_tools(self) -> list[str]:
        return list(dict.fromkeys(c["name"] for turn in self.ground_truth for calls in turn for c in calls))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        if not isinstance(data, dict):
            raise ValueError(f"a task must be a JSON object, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"task is missing field(s) {missing}")
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"task has unknown field(s) {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Task:
        return cls.from_dict(json.loads(text))
