"""``trainer.prompt_grad=detached``: prompts forwarded once, without gradient, and shared between rows.

A ToolACE trajectory is ~80% prompt (the system prompt with its tool list: 940 of 1,160 tokens on
average over the first 200 train tasks) and ~7% trainable tokens, yet the exact loss back-propagates
through every prompt token at every layer. This mode computes each row's prompt prefix (everything before
the position that predicts its first trainable token) under ``torch.no_grad`` and runs only the rest of the
row with gradient, attending to that prefix's keys and values:

- the forward values (logits, log-probs, the loss) are those of the full forward; the gradient leaves out
  the terms through the prompt positions' keys and values (how the weights encode the prompt), keeping
  everything the trainable positions compute, including their attention over the prompt. It is a
  stop-gradient on the context, not the exact gradient: ``full`` stays the default of every algorithm
  config; ``docs/training.md`` says what it buys and costs.
- prefixes are shared by longest common prefix (``agents.kv_cache.PrefixStore``): the rollouts of one
  GRPO group share their whole prompt, and every ToolACE row shares the system prompt's instructions
  (~315 tokens). The store holds KV computed at the current weights, so it is cleared at every optimizer
  step.

Cost per row: about one no-grad forward of its prompt (minus what is shared) plus a forward/backward of
its trainable part, instead of a forward/backward (~3 forwards) of the whole row.
"""

from __future__ import annotations

from typing import Any

import torch

from agents.kv_cache import PrefixStore, cache_from_kv, extend_kv


class DetachedPromptKV:
    """Keys/values of prompt prefixes at the current weights, computed without gradient and reused by
    longest common prefix; ``clear()`` whenever the weights change."""

    def __init__(self, max_tokens: int = 65536, min_reuse: int = 16):
        self.store = PrefixStore(max_tokens=max_tokens, min_reuse=min_reuse)
        self.prompt_tokens = 0  # prefix tokens asked for since the last clear
        self.computed_tokens = 0  # of those, run through the model (the rest came from the store)

    def clear(self) -> None:
        self.store.clear()
        self.prompt_tokens = self.computed_tokens = 0

    def cache_for(self, model: Any, tokens: list[int]) -> Any:
        """A fresh ``DynamicCache`` holding ``tokens``' keys/values (no gradient), for the caller to extend."""
        device = next(model.parameters()).device
        key, reused = self.store.match(tokens + [-1])  # match() keeps one token to feed; all of ``tokens`` may be reused
        kv = self.store.get(key).kv if key is not None else []
        if reused < len(tokens):
            with torch.no_grad():
                kv, _ = extend_kv(model, kv, reused, tokens, device)
            self.store.add(list(tokens), kv)
            self.computed_tokens += len(tokens) - reused
        self.prompt_tokens += len(tokens)
        return cache_from_kv(model, kv, len(tokens), device)


def detached_prompt_row_logits(model: Any, input_ids: torch.Tensor, cut: int, prompt_kv: DetachedPromptKV
                               ) -> torch.Tensor:
    """Logits ``[len(input_ids) - cut, V]`` for positions ``cut ..`` of one unpadded row, its first ``cut``
    tokens taken from ``prompt_kv`` (no gradient through them)."""
    if cut <= 0:
        return model(input_ids=input_ids[None]).logits[0]
    cache = prompt_kv.cache_for(model, input_ids[:cut].tolist())
    n = input_ids.shape[0]
    return model(input_ids=input_ids[None, cut:], position_ids=torch.arange(cut, n, device=input_ids.device)[None],
                 past_key_values=cache, use_cache=True).logits[0]
