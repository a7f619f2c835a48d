"""The system prompt of the ToolACE environment: BFCL's prompting-mode prompt, plus one paragraph.

The text follows BFCL V4's default prompt sentence for sentence (quirks included: the persona and task
run together, two spaces before "You SHOULD NOT", "json format"), and every function description gets
BFCL's " Note that the provided function is in Python 3 syntax." suffix, so that a model trained here
sees at evaluation time the prompt it learned with. ``style="toolace"`` (the default) adds one
paragraph that BFCL leaves implicit but our episodes need: after tool results, or when no function fits
or parameters are missing, reply in plain text. ``style="bfcl"`` gives BFCL's text unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Literal

# ToolACE's prompt is BFCL's prompting-mode prompt (so that training transfers to the held-out suite)
# plus one paragraph on tool results and plain-text answers.
from envs.bfcl.prompt import (
    AVAILABLE_TOOLS,
    MULTITURN_BEHAVIOR,
    PERSONA,
    TASK,
    TOOL_CALL_FORMAT,
    add_python_hint,
)

PLAIN_TEXT = (
    "The results of your calls come back in a tool message. When you have the results you need, answer the "
    "user in plain text based on them, without any function call. If none of the functions fits the "
    "request, or the request lacks required parameters, do not call any function: say so in plain text "
    "(and ask for the missing parameters)."
)
PromptStyle = Literal["toolace", "bfcl"]


def system_prompt(functions: list[dict[str, Any]], style: PromptStyle = "toolace") -> str:
    """The system message listing ``functions`` (ToolACE dialect, hinted here) as indented JSON."""
    if style not in ("toolace", "bfcl"):
        raise ValueError(f"unknown prompt style {style!r}; use 'toolace' or 'bfcl'")
    tools = AVAILABLE_TOOLS.format(functions=json.dumps(add_python_hint(functions), indent=4))
    extra = f"{PLAIN_TEXT}\n\n" if style == "toolace" else ""
    return f"{PERSONA}{TASK}\n\n{TOOL_CALL_FORMAT}\n\n{MULTITURN_BEHAVIOR}\n\n{extra}{tools}"
