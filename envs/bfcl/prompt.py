"""BFCL's prompting mode, as an entry sees it: the system prompt placed before the entry's own messages,
and the message that reveals held-out functions in a ``miss_func`` turn.

The prompt's sentences are shared with the ToolACE training environment and live in ``envs.call_prompt``;
here BFCL uses them unchanged.
"""

from __future__ import annotations

from typing import Any

from envs.call_prompt import call_system_prompt

#: what BFCL (prompting mode) says when a miss_func turn hands over the held-out functions
ADDITIONAL_FUNCTIONS_SUFFIX = "I have updated some more functions you can choose from. What about now?"


def system_prompt(functions: list[dict[str, Any]]) -> str:
    """BFCL's default system prompt listing ``functions`` (already hinted) as 4-space-indented JSON."""
    return call_system_prompt(functions)


def with_system_prompt(messages: list[dict[str, Any]], functions: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The opening messages of an entry: BFCL's prompt first; an entry's own system message follows it.

    When the entry starts with a system message, BFCL prepends its prompt to that message's content with a
    blank line between them; otherwise the prompt becomes a new first message.
    """
    out = [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt = system_prompt(functions)
    if out and out[0]["role"] == "system":
        out[0]["content"] = prompt + "\n\n" + out[0]["content"]
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def additional_functions_message(functions: list[dict[str, Any]]) -> dict[str, str]:
    """The user message of a miss_func turn that reveals held-out functions.

    BFCL formats the doc list with Python's ``str`` (not JSON) in prompting mode; kept as is.
    """
    return {"role": "user", "content": f"{functions}\n{ADDITIONAL_FUNCTIONS_SUFFIX}"}
