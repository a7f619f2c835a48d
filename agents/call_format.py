"""Which tool-call format a run uses: the ``call_format`` setting of an environment, resolved with the model.

``env.kwargs.call_format`` (environments that take one, such as ``chordgym/ToolCalls-v0``) accepts the
concrete formats of ``tools.call_formats`` (``pythonic``, ``tool_n1``: tools listed in a system prompt;
``hermes``, ``llama3_json``: the chat template's own tools and calls) and two settings decided by the
model's chat template:

* ``native``: the format the template renders (``tools.call_formats.detect_call_format``); a template that
  renders no tools (the embedded SmolLM2's) is an error naming the key;
* ``auto``: ``native`` where the template renders tools, else ``pythonic``.

The train, evaluate and realign commands resolve it once, before they make their environments, and render
every conversation with ``renderer_for``: a native format passes the episode's tools to the template.
"""

from __future__ import annotations

from typing import Any

from agents.chat_render import ChatRenderer
from tools.call_formats import detect_call_format

NATIVE_FORMATS = ("hermes", "llama3_json")
SETTINGS = ("native", "auto")


def resolve_call_format(setting: Any, tokenizer: Any, key: str = "env.kwargs.call_format") -> Any:
    """The concrete format for ``setting`` with this tokenizer's template (other values pass unchanged)."""
    if setting not in SETTINGS:
        return setting
    detected = detect_call_format(tokenizer)
    if detected is not None:
        return detected
    if setting == "native":
        raise ValueError(f"{key}=native: the model's chat template renders no tools (it ignores tools= and "
                         "tool_calls); use call_format=pythonic or auto, or give the tokenizer a template that "
                         "renders them (configs/chat_templates, docs/call-formats.md)")
    return "pythonic"


def is_native(call_format: Any) -> bool:
    """Whether the chat template renders this format's tools and calls."""
    return call_format in NATIVE_FORMATS


def renderer_for(tokenizer: Any, call_format: Any = None) -> ChatRenderer:
    """The ``ChatRenderer`` every rollout, expert and evaluation of the run shares."""
    return ChatRenderer(tokenizer, native=is_native(call_format))


def set_chat_template(tokenizer: Any, template: Any, key: str = "model.chat_template") -> Any:
    """Give ``tokenizer`` another chat template: ``None`` keeps its own; a name of ``configs/chat_templates``
    (``hermes``, ``llama3_json``, ``qwen3_thinking``) or a path to a Jinja file replaces it. Returns the
    tokenizer (changed in place, so checkpoints save the template the run trained with)."""
    if template is None:
        return tokenizer
    from pathlib import Path

    from tools.call_formats import TEMPLATE_CALL_FORMATS, load_chat_template

    if str(template) in TEMPLATE_CALL_FORMATS:
        tokenizer.chat_template = load_chat_template(str(template))
        return tokenizer
    path = Path(str(template)).expanduser()
    if not path.is_file():
        raise ValueError(f"{key}={template!r} is neither a shipped template ({', '.join(sorted(TEMPLATE_CALL_FORMATS))}) "
                         "nor a readable Jinja file")
    tokenizer.chat_template = path.read_text()
    return tokenizer
