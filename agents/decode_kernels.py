"""Decode-time pieces for :class:`agents.HFEngine`: a preallocated KV cache layer and a grouped-query
attention path for one new token.

Why: one decode step of a batch on CPU is memory-bound. Measured on the embedded model, batch 16, 900
cached tokens, bf16 autocast (``bench/rollout.py``'s shapes): 323 ms per step with transformers'
``DynamicCache`` and SDPA, of which the cache's ``torch.cat`` (it copies every layer's whole cache each
token) took about a third and SDPA's CPU flash kernel, on a 3-row packed query, most of the rest.

* :class:`SlabLayer` keeps each layer's keys and values in a buffer sized for the prompt plus the token
  budget and writes each new token in place; ``keys``/``values`` are views of the filled part.
* :func:`grouped_decode_attention` computes attention for a single query position as two batched
  matmuls on the key/value heads (queries grouped per KV head, no ``repeat_kv``, no mask materialised
  per head). Every other call (prefill, training forwards, anything with gradients) goes to
  transformers' SDPA path unchanged.

Numerics: scores are computed in the matmul's dtype (bf16 under autocast) and the softmax in fp32; in
fp32 the path agrees with SDPA to float rounding (tested).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

DECODE_ATTENTION = "chordgym_decode"


class SlabLayer(DynamicLayer):
    """A cache layer over a preallocated ``[B, H, capacity, D]`` buffer; grows by doubling if overrun."""

    def __init__(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, length: int):
        """A slab over ``key_buffer``/``value_buffer`` whose first ``length`` columns hold the cache."""
        super().__init__()
        self._k, self._v, self._len = key_buffer, value_buffer, length
        self.dtype, self.device, self.is_initialized = key_buffer.dtype, key_buffer.device, True
        self._expose()

    @classmethod
    def zeros(cls, batch: int, heads: int, length: int, key_dim: int, value_dim: int, capacity: int,
              dtype: torch.dtype, device: torch.device | str) -> SlabLayer:
        """A slab of ``length`` zero columns (to be filled through ``keys``/``values``), room for ``capacity``."""
        capacity = max(capacity, length)
        return cls(torch.zeros((batch, heads, capacity, key_dim), dtype=dtype, device=device),
                   torch.zeros((batch, heads, capacity, value_dim), dtype=dtype, device=device), length)

    def _expose(self) -> None:
        self.keys = self._k[:, :, :self._len]
        self.values = self._v[:, :, :self._len]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[-2]
        if self._len + n > self._k.shape[2]:
            grow = max(self._k.shape[2], n)
            self._k = torch.cat([self._k, self._k.new_empty(self._k.shape[:2] + (grow, self._k.shape[3]))], 2)
            self._v = torch.cat([self._v, self._v.new_empty(self._v.shape[:2] + (grow, self._v.shape[3]))], 2)
        self._k[:, :, self._len:self._len + n] = key_states
        self._v[:, :, self._len:self._len + n] = value_states
        self._len += n
        self._expose()
        return self.keys, self.values

    def select(self, rows: torch.Tensor, first_column: int) -> None:
        """Keep batch ``rows`` and drop the columns before ``first_column`` (spare capacity is kept)."""
        self._k = self._k.index_select(0, rows)[:, :, first_column:]
        self._v = self._v.index_select(0, rows)[:, :, first_column:]
        self._len -= first_column
        self._expose()


def grouped_decode_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                             value: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float = 0.0,
                             scaling: float | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention for one query position per row without gradients; SDPA for everything else.

    ``query [B, Hq, 1, D]``, ``key``/``value [B, Hkv, T, D]``, ``attention_mask`` as built for SDPA
    (boolean, True = attend, or additive float; broadcastable to ``[B, 1, 1, T]``). Returns
    ``[B, 1, Hq, D]`` like transformers' attention functions.
    """
    if query.shape[2] != 1 or torch.is_grad_enabled() or (module.training and dropout > 0):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    b, hq, _, d = query.shape
    hkv = key.shape[1]
    scale = scaling if scaling is not None else d ** -0.5
    q = query.reshape(b, hkv, hq // hkv, d)
    acc = torch.promote_types(query.dtype, torch.float32)  # fp32 softmax, fp64 stays fp64
    scores = torch.matmul(q, key.transpose(-1, -2)).to(acc) * scale  # [B, Hkv, G, T]
    if attention_mask is not None:
        mask = attention_mask[..., -1:, -key.shape[2]:]  # [B or 1, 1, 1, T]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(acc)
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs, value)  # [B, Hkv, G, D]
    return out.reshape(b, 1, hq, value.shape[-1]), None


AttentionInterface.register(DECODE_ATTENTION, grouped_decode_attention)
AttentionMaskInterface.register(DECODE_ATTENTION, sdpa_mask)


@contextlib.contextmanager
def decode_attention(model: Any) -> Iterator[None]:
    """Route ``model``'s attention through :func:`grouped_decode_attention` while inside (SDPA models only)."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current != "sdpa":
        yield
        return
    config._attn_implementation = DECODE_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = current
