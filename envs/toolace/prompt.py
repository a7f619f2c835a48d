"""The system prompt of the ToolACE environment: BFCL's prompting-mode prompt, plus one paragraph.

The text follows BFCL V4's default prompt sentence for sentence (quirks included: the persona and task
run together, two spaces before "You SHOULD NOT", "json format"), and every function description gets
BFCL's " Note that the provided function is in Python 3 syntax." suffix, so that a model trained here
sees at evaluation time the prompt it learned with. ``style="toolace"`` (the default) adds one
paragraph that BFCL leaves implicit but our episodes need: after tool results, or when no function fits
or parameters are missing, reply in plain text. ``style="bfcl"`` gives BFCL's text unchanged.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

PYTHON_HINT = " Note that the provided function is in Python 3 syntax."
PERSONA = "You are an expert in composing functions."
TASK = (
    "You are given a question and a set of possible functions. Based on the question, you will need to make "
    "one or more function/tool calls to achieve the purpose. If none of the functions can be used, point it "
    "out. If the given question lacks the parameters required by the function, also point it out."
)
CALL_FORMAT = "[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]"
TOOL_CALL_FORMAT = (
    "You should only return the function calls in your response.\n\n"
    f"If you decide to invoke any of the function(s), you MUST put it in the format of {CALL_FORMAT}. "
    " You SHOULD NOT include any other text in the response."
)
MULTITURN_BEHAVIOR = (
    "At each turn, you should try your best to complete the tasks requested by the user within the current "
    "turn. Continue to output functions to call until you have fulfilled the user's request to the best of "
    "your ability. Once you have no more functions to call, the system will consider the current turn "
    "complete and proceed to the next turn or task."
)
PLAIN_TEXT = (
    "The results of your calls come back in a tool message. When you have the results you need, answer the "
    "user in plain text based on them, without any function call. If none of the functions fits the "
    "request, or the request lacks required parameters, do not call any function: say so in plain text "
    "(and ask for the missing parameters)."
)
AVAILABLE_TOOLS = "Here is a list of functions in json format that you can invoke.\n{functions}\n"

PromptStyle = Literal["toolace", "bfcl"]


def with_python_hint(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ToolACE/BFCL-dialect function schemas with BFCL's Python note on each description."""
    out = copy.deepcopy(functions)
    for fn in out:
        fn["description"] = fn.get("description", "") + PYTHON_HINT
    return out


def system_prompt(functions: list[dict[str, Any]], style: PromptStyle = "toolace") -> str:
    """The system message listing ``functions`` (ToolACE dialect, hinted here) as indented JSON."""
    if style not in ("toolace", "bfcl"):
        raise ValueError(f"unknown prompt style {style!r}; use 'toolace' or 'bfcl'")
    tools = AVAILABLE_TOOLS.format(functions=json.dumps(with_python_hint(functions), indent=4))
    extra = f"{PLAIN_TEXT}\n\n" if style == "toolace" else ""
    return f"{PERSONA}{TASK}\n\n{TOOL_CALL_FORMAT}\n\n{MULTITURN_BEHAVIOR}\n\n{extra}{tools}"
