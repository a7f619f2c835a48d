"""Token-exact chat rendering with the tokenizer's own chat template.

A rollout never decodes and re-encodes the tokens the model sampled. It keeps them, and only renders the
*environment's* side of the conversation with the template:

* ``render_prompt(messages)``: the opening prompt, ``render(messages, add_generation_prompt=True)``.
* ``render_delta(conversation, new_messages)``: the tokens that follow the model's end-of-turn token up to
  the next generation start. ``conversation`` ends with the assistant message just sampled. The template
  renders that message as ``<|im_start|>assistant\\n{content}<|im_end|>\\n`` (ChatML); the model sampled
  ``{content}<|im_end|>``, so the delta starts with the ``\\n`` after ``<|im_end|>``:

      full   = render(conversation + new_messages, add_generation_prompt=True)
      prefix = render(conversation)                    # ends "...<|im_end|>\\n"
      k      = index just past the last end-of-turn token of prefix
      delta  = full[k:]                                # "\\n<|im_start|>tool\\n...<|im_end|>\\n<|im_start|>assistant\\n"

  ``full[:k] == prefix[:k]`` is checked (the template must be append-only for a token-exact rollout);
  a template that rewrites earlier turns raises ``TemplateError``.

The end-of-turn tokens are read from the template itself (render a probe assistant message and take what
follows its content), so nothing here hard-codes ChatML.

Native tool formats (``native=True``): the messages keep their OpenAI tool fields (``tool_calls``, ``name``,
``tool_call_id``, ``reasoning_content``) and every rendering takes the episode's ``tools`` (OpenAI function
dicts) through the template's ``tools=`` argument, so a Qwen- or Llama-class model sees its tools and
results the way its own template lays them out. Some templates rewrite earlier turns (Qwen3's thinking
template drops the ``<think>`` block of assistant turns before the last user query): such a template is
not append-only, and ``rewrites_history`` is True (found by rendering a probe conversation at
construction). Deltas are then rendered against a fixed base conversation instead of the real one, as
verl's and TRL's multi-turn rollouts do: ``render(BASE + new)[len(render(BASE)):]``, which holds exactly
the template's tokens for the new messages. The trajectory then keeps each turn as the model saw it when
it sampled it (earlier ``<think>`` blocks included), which no single rendering of the final conversation
reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Messages = list[dict[str, Any]]

_PROBE = "PROBE_CONTENT_7f3a"


class TemplateError(ValueError):
    """The chat template cannot support token-exact rollouts (not append-only, no end-of-turn token)."""


@dataclass(frozen=True)
class TurnDelta:
    """Environment tokens to append after an assistant turn: ``ids`` (all mask 0)."""

    ids: list[int]


class ChatRenderer:
    """Renders conversations with ``tokenizer``'s chat template and splits them at turn boundaries.

    Attributes:
        eot_ids: the tokens that close an assistant turn and that the model samples (ChatML: ``<|im_end|>``).
        eot_id: the first of them, the stop token to generate until.
        turn_close_ids: every token the template puts after an assistant message's content
            (ChatML: ``<|im_end|>`` and ``\\n``); ``turn_close_ids[len(eot_ids):]`` belongs to the environment.
    """

    def __init__(self, tokenizer: Any, native: bool = False):
        if getattr(tokenizer, "chat_template", None) is None:
            raise TemplateError("tokenizer has no chat_template")
        self.tokenizer = tokenizer
        self.native = bool(native)
        probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}]
        text = self.render_text(probe, add_generation_prompt=False)
        if _PROBE not in text:
            raise TemplateError("the chat template does not render assistant content verbatim")
        close_text = text[text.rindex(_PROBE) + len(_PROBE):]
        close_ids = self.encode(close_text)
        if not close_ids:
            raise TemplateError("the chat template puts nothing after an assistant message: no end-of-turn token")
        # The model samples the first closing token (a special token such as <|im_end|>); whitespace that
        # the template adds after it (ChatML's "\n") is the environment's.
        self.turn_close_ids: list[int] = close_ids
        self.eot_ids: list[int] = close_ids[:1]
        self.eot_id: int = close_ids[0]
        self.rewrites_history: bool = self._rewrites_history()

    def _rewrites_history(self) -> bool:
        """Does a later user turn change how an earlier assistant turn renders (e.g. drop its ``<think>``)?"""
        first = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "<think>r</think>a1"}]
        before = self.render(first)
        k = self.end_of_last_turn(before)
        after = self.render(first + [{"role": "user", "content": "q2"}], add_generation_prompt=True)
        return after[:k] != before[:k]

    # -- plain rendering --------------------------------------------------------------------------
    def render_text(self, messages: Messages, add_generation_prompt: bool,
                    tools: Sequence[dict[str, Any]] | None = None) -> str:
        """The template's text for ``messages``; ``tools`` go through the template's ``tools=`` argument in
        native mode (ignored otherwise: the prompt-mode environments list their tools in the system text)."""
        kwargs: dict[str, Any] = {}
        if self.native and tools:
            kwargs["tools"] = list(tools)
        keep = _native if self.native else _plain
        return self.tokenizer.apply_chat_template(
            [keep(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs)

    def encode(self, text: str) -> list[int]:
        """Encode template text (special tokens written as text become special tokens; no BOS added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: Messages, add_generation_prompt: bool = False,
               tools: Sequence[dict[str, Any]] | None = None) -> list[int]:
        """Token ids of ``messages`` rendered by the template, exactly as shipped."""
        return self.encode(self.render_text(messages, add_generation_prompt, tools))

    def render_prompt(self, messages: Messages, tools: Sequence[dict[str, Any]] | None = None) -> list[int]:
        """The opening prompt: ``messages`` plus the assistant generation prompt."""
        return self.render(messages, add_generation_prompt=True, tools=tools)

    # -- turn boundaries --------------------------------------------------------------------------
    def end_of_last_turn(self, rendered: Sequence[int]) -> int:
        """Index just past the last end-of-turn token in ``rendered`` (a rendering ending with an assistant turn)."""
        for i in range(len(rendered) - 1, -1, -1):
            if rendered[i] == self.eot_id:
                return i + len(self.eot_ids)
        raise TemplateError("no end-of-turn token in the rendering of a conversation ending with an assistant turn")

    def render_delta(self, conversation: Messages, new_messages: Messages,
                     add_generation_prompt: bool = True, tools: Sequence[dict[str, Any]] | None = None) -> list[int]:
        """Tokens between the end of the model's sampled turn (its end-of-turn token) and the next
        generation start (or the end of the conversation when ``add_generation_prompt`` is False).

        ``conversation`` must end with an assistant message. See the module docstring for the derivation;
        a template that ``rewrites_history`` renders the delta after a fixed base conversation instead.
        """
        if not conversation or conversation[-1].get("role") != "assistant":
            raise ValueError("render_delta needs a conversation that ends with the assistant's turn")
        base = _DELTA_BASE if self.rewrites_history else list(conversation)
        prefix = self.render(base, add_generation_prompt=False, tools=tools)
        k = self.end_of_last_turn(prefix)
        full = self.render(base + list(new_messages), add_generation_prompt=add_generation_prompt, tools=tools)
        if full[:k] != prefix[:k]:
            raise TemplateError("the chat template is not append-only: adding messages changed earlier tokens")
        return full[k:]

    def assistant_turn_ids(self, conversation: Messages, tools: Sequence[dict[str, Any]] | None = None) -> list[int]:
        """The canonical tokens of the final assistant message of ``conversation``: what a model would sample
        (content tokens + end-of-turn token), taken from the template's rendering."""
        if not conversation or conversation[-1].get("role") != "assistant":
            raise ValueError("assistant_turn_ids needs a conversation that ends with an assistant message")
        before = self.render(conversation[:-1], add_generation_prompt=True, tools=tools)
        full = self.render(conversation, add_generation_prompt=False, tools=tools)
        if full[:len(before)] == before:
            return full[len(before):self.end_of_last_turn(full)]
        # The generation prompt's last token merges with the turn's first characters when the two are
        # tokenised together (a header ending in "\n\n" before "{"), yet a model samples after the prompt's
        # own tokens: the turn is then its text tokenised on its own, if the texts line up.
        before_text = self.render_text(conversation[:-1], True, tools)
        full_text = self.render_text(conversation, False, tools)
        if not full_text.startswith(before_text):
            raise TemplateError("the chat template is not append-only: an assistant turn changed earlier tokens")
        turn = self.encode(full_text[len(before_text):])
        return turn[:self.end_of_last_turn(turn)]


#: the conversation deltas are rendered after when the template rewrites history (no ``<think>`` to drop)
_DELTA_BASE: Messages = [{"role": "user", "content": "."}, {"role": "assistant", "content": "."}]

#: the OpenAI message fields a native template reads
NATIVE_FIELDS = ("role", "content", "tool_calls", "name", "tool_call_id", "reasoning_content")


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """Role and content only: the env's messages are plain; extra keys must not change the rendering."""
    return {"role": message["role"], "content": message["content"]}


def _native(message: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI fields a native template reads (tool calls, tool-result names and ids); others dropped."""
    return {k: message[k] for k in NATIVE_FIELDS if k in message}
