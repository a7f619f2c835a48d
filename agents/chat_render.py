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

    def __init__(self, tokenizer: Any):
        if getattr(tokenizer, "chat_template", None) is None:
            raise TemplateError("tokenizer has no chat_template")
        self.tokenizer = tokenizer
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

    # -- plain rendering --------------------------------------------------------------------------
    def render_text(self, messages: Messages, add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            [_plain(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        """Encode template text (special tokens written as text become special tokens; no BOS added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: Messages, add_generation_prompt: bool = False) -> list[int]:
        """Token ids of ``messages`` rendered by the template, exactly as shipped."""
        return self.encode(self.render_text(messages, add_generation_prompt))

    def render_prompt(self, messages: Messages) -> list[int]:
        """The opening prompt: ``messages`` plus the assistant generation prompt."""
        return self.render(messages, add_generation_prompt=True)

    # -- turn boundaries --------------------------------------------------------------------------
    def end_of_last_turn(self, rendered: Sequence[int]) -> int:
        """Index just past the last end-of-turn token in ``rendered`` (a rendering ending with an assistant turn)."""
        for i in range(len(rendered) - 1, -1, -1):
            if rendered[i] == self.eot_id:
                return i + len(self.eot_ids)
        raise TemplateError("no end-of-turn token in the rendering of a conversation ending with an assistant turn")

    def render_delta(self, conversation: Messages, new_messages: Messages,
                     add_generation_prompt: bool = True) -> list[int]:
        """Tokens between the end of the model's sampled turn (its end-of-turn token) and the next
        generation start (or the end of the conversation when ``add_generation_prompt`` is False).

        ``conversation`` must end with an assistant message. See the module docstring for the derivation.
        """
        if not conversation or conversation[-1].get("role") != "assistant":
            raise ValueError("render_delta needs a conversation that ends with the assistant's turn")
        prefix = self.render(conversation, add_generation_prompt=False)
        k = self.end_of_last_turn(prefix)
        full = self.render(list(conversation) + list(new_messages), add_generation_prompt=add_generation_prompt)
        if full[:k] != prefix[:k]:
            raise TemplateError("the chat template is not append-only: adding messages changed earlier tokens")
        return full[k:]

    def assistant_turn_ids(self, conversation: Messages) -> list[int]:
        """The canonical tokens of the final assistant message of ``conversation``: what a model would sample
        (content tokens + end-of-turn token), taken from the template's rendering."""
        if not conversation or conversation[-1].get("role") != "assistant":
            raise ValueError("assistant_turn_ids needs a conversation that ends with an assistant message")
        before = self.render(conversation[:-1], add_generation_prompt=True)
        full = self.render(conversation, add_generation_prompt=False)
        if full[:len(before)] != before:
            raise TemplateError("the chat template is not append-only: an assistant turn changed earlier tokens")
        return full[len(before):self.end_of_last_turn(full)]


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """Role and content only: the env's messages are plain; extra keys must not change the rendering."""
    return {"role": message["role"], "content": message["content"]}
