"""The text of BFCL's default prompting-mode system prompt, shared by every environment that speaks it.

BFCL V4 builds its default prompt (``ret_fmt=python, tool_call_tag=False, func_doc_fmt=json,
prompt_fmt=plaintext, style=classic``) from a template, not from the ``_DEFAULT_SYSTEM_PROMPT`` text it
keeps "for reference". The template's quirks are reproduced on purpose, because published scores were
measured with them: the persona and the task sentence are joined without a space, the empty
"parameter types" slot leaves two spaces before "You SHOULD NOT", and the doc format is spelled ``json``.

Two environments use it: BFCL's (``envs.bfcl.prompt``: the held-out suite, text unchanged) and ToolACE's
(``envs.toolace.prompt``: the training environment, which adds one paragraph), so that a model trained on
ToolACE sees at evaluation time the prompt it learned with. Each keeps its own specifics in its own
package; the sentences live here only.
"""

from __future__ import annotations

import copy
import json
from typing import Any

PYTHON_HINT = " Note that the provided function is in Python 3 syntax."

PERSONA = "You are an expert in composing functions."
TASK = (
    "You are given a question and a set of possible functions. Based on the question, you will need to make "
    "one or more function/tool calls to achieve the purpose. If none of the functions can be used, point it "
    "out. If the given question lacks the parameters required by the function, also point it out."
)
OUTPUT_FORMAT = "[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]"
TOOL_CALL_FORMAT = (
    "You should only return the function calls in your response.\n\n"
    f"If you decide to invoke any of the function(s), you MUST put it in the format of {OUTPUT_FORMAT}. "
    " You SHOULD NOT include any other text in the response."  # the empty param-types slot: two spaces
)
MULTITURN_BEHAVIOR = (
    "At each turn, you should try your best to complete the tasks requested by the user within the current "
    "turn. Continue to output functions to call until you have fulfilled the user's request to the best of "
    "your ability. Once you have no more functions to call, the system will consider the current turn "
    "complete and proceed to the next turn or task."
)
AVAILABLE_TOOLS = "Here is a list of functions in json format that you can invoke.\n{functions}\n"


def add_python_hint(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``functions`` with BFCL's Python-language note appended to every description."""
    out = copy.deepcopy(functions)
    for fn in out:
        fn["description"] = fn.get("description", "") + PYTHON_HINT
    return out


def call_system_prompt(functions: list[dict[str, Any]], extra_paragraphs: tuple[str, ...] = ()) -> str:
    """BFCL's default system prompt listing ``functions`` (already hinted) as 4-space-indented JSON.

    ``extra_paragraphs`` go after BFCL's own paragraphs and before the function list, each followed by a
    blank line; with none, the text is BFCL's to the character.
    """
    paragraphs = (f"{PERSONA}{TASK}", TOOL_CALL_FORMAT, MULTITURN_BEHAVIOR, *extra_paragraphs)
    tools = AVAILABLE_TOOLS.format(functions=json.dumps(functions, indent=4))
    return "\n\n".join(paragraphs) + "\n\n" + tools
