"""The system prompt of the ToolACE environment: BFCL's prompting-mode prompt, plus one paragraph.

The shared text (``envs.call_prompt``) follows BFCL V4's default prompt sentence for sentence, and every
function description gets BFCL's " Note that the provided function is in Python 3 syntax." suffix, so that
a model trained here sees at evaluation time the prompt it learned with. ``style="toolace"`` (the default)
adds one paragraph that BFCL leaves implicit but our episodes need: after tool results, or when no function
fits or parameters are missing, reply in plain text. ``style="bfcl"`` gives BFCL's text unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from envs.call_prompt import add_python_hint, call_system_prompt

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
    extra = (PLAIN_TEXT,) if style == "toolace" else ()
    return call_system_prompt(add_python_hint(functions), extra)
