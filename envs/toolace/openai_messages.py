"""The environment's pythonic messages as OpenAI chat messages (``tool_calls``, one ``tool`` message per result).

``ToolACEEnv`` stores its expert trajectories the way its prompting mode shows them to the model: a call
list is assistant text (``[get_weather(city='Paris')]``) and its results come back as one ``tool`` message
whose content is the JSON list of ``{"name", "results"}`` / ``{"name", "error"}`` items. Chat templates
that render tools natively, and every tool that reads OpenAI's chat format, want instead an assistant
message with ``tool_calls`` (dict arguments) and one ``tool`` message per result, linked to its call by
``tool_call_id``. Both the exporter (``envs.toolace.export``) and the environment's native mode use these
functions, so the exported data, the native expert trajectories and the native rollouts agree token for
token on what a result looks like.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tools.calls import ToolCall, looks_like_calls, parse_pythonic

__all__ = ["CallIds", "native_tool_messages", "openai_expert"]


class CallIds:
    """``call_0``, ``call_1``, ... across one conversation: every call gets an id no other call of it has."""

    def __init__(self) -> None:
        self.count = 0

    def take(self, n: int) -> list[str]:
        ids = [f"call_{self.count + i}" for i in range(n)]
        self.count += n
        return ids


def tool_call_entries(calls: Sequence[ToolCall], ids: Sequence[str]) -> list[dict[str, Any]]:
    """``tool_calls`` entries: ``{"id", "type": "function", "function": {"name", "arguments": dict}}``."""
    return [{"id": i, "type": "function", "function": {"name": c.name, "arguments": dict(c.arguments)}}
            for c, i in zip(calls, ids, strict=True)]


def native_tool_messages(items: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> list[dict[str, Any]]:
    """One ``tool`` message per result item (``{"name", "results"}`` or ``{"name", "error"}``), in order:
    ``{"role": "tool", "tool_call_id", "name", "content"}`` with the result (or ``{"error": ...}``) as JSON
    text. ``ids[i]`` is the id of item ``i``'s call; items past the ids (a reply's extra error, e.g. calls
    over the per-reply cap) get ids of their own from the names ``call_x<i>``."""
    out = []
    for i, item in enumerate(items):
        body = item["results"] if "results" in item else {"error": item.get("error")}
        out.append({"role": "tool", "tool_call_id": ids[i] if i < len(ids) else f"call_x{i}",
                    "name": str(item.get("name", "")), "content": json.dumps(body, ensure_ascii=False)})
    return out


def _paired_ids(items: Sequence[Mapping[str, Any]], calls: Sequence[ToolCall], ids: Sequence[str],
                where: str) -> list[str]:
    """The call id of each result item, matched by name in call order (a result never comes before its call)."""
    free = list(zip((c.name for c in calls), ids, strict=True))
    paired = []
    for item in items:
        slot = next((k for k, (name, _) in enumerate(free) if name == item.get("name")), None)
        if slot is None:
            raise ValueError(f"{where}: a result of {item.get('name')!r} with no call of it before")
        paired.append(free.pop(slot)[1])
    return paired


def openai_expert(expert: Sequence[Mapping[str, Any]], where: str = "expert",
                  ids: CallIds | None = None) -> Iterator[tuple[dict[str, Any], list[ToolCall]]]:
    """Each message of a pythonic expert continuation in OpenAI form, with the calls it makes (``[]`` for
    all but call turns). A call list becomes ``{"role": "assistant", "content": None, "tool_calls": [...]}``,
    its ``tool`` message one message per result; answers and user turns pass as they are. ``ValueError``
    (naming ``where``) for a result of no call."""
    ids = ids or CallIds()
    calls: list[ToolCall] = []
    call_ids: list[str] = []
    for m in expert:
        role, content = m["role"], m["content"]
        if role == "assistant" and looks_like_calls(content, "pythonic"):
            calls = parse_pythonic(content)
            call_ids = ids.take(len(calls))
            yield {"role": "assistant", "content": None, "tool_calls": tool_call_entries(calls, call_ids)}, calls
        elif role == "tool":
            items = json.loads(content)
            for message in native_tool_messages(items, _paired_ids(items, calls, call_ids, where)):
                yield message, []
            calls, call_ids = [], []
        else:
            yield {"role": role, "content": content}, []
