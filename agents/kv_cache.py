"""KV-cache utilities and the prefix store: computing, cropping and reusing keys/values of token prefixes.

Used by the HF engine (a multi-turn rollout prefills only each turn's new tokens; the copies and shared
system prompt of a call are prefilled once) and by ``algorithms.prompt_kv`` (prompt prefixes computed
once without gradient and shared between training rows). Keys/values are held per layer as ``[H, n, D]``
pairs for one sequence, without padding.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

LayerKV = list[tuple[torch.Tensor, torch.Tensor]]


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of ``a`` and ``b`` (list slices compare in C; binary search on mismatch)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def new_cache(model: Any) -> Any:
    """An empty ``DynamicCache`` for ``model`` (or the module a DeepSpeed engine wraps)."""
    from transformers import DynamicCache

    return DynamicCache(config=getattr(model, "module", model).config)


def cache_from_kv(model: Any, kv: LayerKV, length: int, device: torch.device) -> Any:
    """A batch-of-one cache holding the first ``length`` positions of per-layer ``[H, n, D]`` keys/values."""
    cache = new_cache(model)
    for layer, (k, v) in enumerate(kv):
        cache.update(k[None, :, :length].to(device), v[None, :, :length].to(device), layer)
    return cache


def extend_kv(model: Any, kv: LayerKV, reused: int, tokens: list[int],
              device: torch.device) -> tuple[LayerKV, torch.Tensor]:
    """One unpadded forward over ``tokens[reused:]`` after the first ``reused`` positions of ``kv``.

    Returns the per-layer ``[H, n, D]`` keys/values of all of ``tokens`` and the last position's logits.
    Gradient mode is the caller's.
    """
    cache = cache_from_kv(model, kv if reused > 0 else [], reused, device)
    out = model(input_ids=torch.tensor([tokens[reused:]], device=device),
                position_ids=torch.arange(reused, len(tokens), device=device)[None],
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    return [(layer.keys[0], layer.values[0]) for layer in out.past_key_values.layers], out.logits[0, -1]


@dataclass
class PrefixEntry:
    """KV of one finished row: ``tokens`` whose keys/values are in ``kv`` (per layer ``[H, n, D]`` pairs)."""

    tokens: list[int]
    kv: LayerKV


class PrefixStore:
    """LRU of per-conversation KV caches, so a multi-turn rollout only prefills each turn's new tokens.

    Rollouts are append-only: turn ``k+1``'s prompt extends turn ``k``'s prompt + sampled tokens. After a
    batch, each row's KV (padding columns removed) is stored with its tokens; the next prompt that shares a
    prefix of at least ``min_reuse`` tokens with an entry starts from that entry's KV (cropped to the shared
    prefix). Entries are consumed when reused. Capacity is counted in tokens.
    """

    def __init__(self, max_tokens: int = 65536, min_reuse: int = 16):
        self.max_tokens = max_tokens
        self.min_reuse = min_reuse
        self._entries: OrderedDict[int, PrefixEntry] = OrderedDict()
        self._next_id = 0
        self.tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.tokens = 0

    def keeps(self, length: int) -> bool:
        """Would an entry of ``length`` tokens be stored (long enough to reuse, short enough to hold)?"""
        return self.min_reuse <= length <= self.max_tokens

    def add(self, tokens: list[int], kv: LayerKV) -> int | None:
        """Store ``tokens``' KV (evicting the oldest entries beyond capacity); its key, or None if not kept."""
        if not self.keeps(len(tokens)):
            return None
        key = self._next_id
        self._entries[key] = PrefixEntry(tokens, kv)
        self._next_id += 1
        self.tokens += len(tokens)
        while self.tokens > self.max_tokens:
            _, old = self._entries.popitem(last=False)
            self.tokens -= len(old.tokens)
        return key

    def match(self, prompt: list[int]) -> tuple[int | None, int]:
        """The entry sharing the longest prefix with ``prompt`` and that length (leaving >= 1 token to feed)."""
        best, best_len = None, 0
        limit = len(prompt) - 1
        for key, entry in self._entries.items():
            n = min(common_prefix_len(entry.tokens, prompt), limit)
            if n > best_len:
                best, best_len = key, n
        return (best, best_len) if best_len >= self.min_reuse else (None, 0)

    def get(self, key: int) -> PrefixEntry:
        return self._entries[key]

    def discard(self, keys: set[int]) -> None:
        for key in keys:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self.tokens -= len(entry.tokens)
