"""``trainer.padding_free``: a micro-batch's rows packed into one sequence, attention kept within each row.

The rows of a micro-batch, each cut to its own length, are concatenated into one sequence ``[1, sum n_b]``
(TRL's ``padding_free``, verl's ``use_remove_padding``):

- ``position_ids`` restart at 0 at every row, so RoPE sees each row at its own positions;
- attention runs through ``PACKED_ATTENTION``, an attention function registered with transformers'
  ``AttentionInterface`` that splits q/k/v at the row boundaries and runs causal SDPA (``is_causal``, no
  mask: the kernel that never materialises the scores) on each row, so no score crosses rows and none is
  computed for padding; the model's own implementation is switched to it for the packed call only
  (``_attention_implementation``), and since transformers builds no mask for an implementation it has no
  mask function for, the call gets none;
- every other layer (embeddings, projections, MLPs, norms) runs once over all the packed tokens: big GEMMs
  instead of one thin pass per row or a padded batch;
- the lm_head runs only on the positions that predict a trainable token (each row's window,
  ``trainable_start .. n_b - 1``), picked by ``logits_to_keep`` as an index tensor.

The log-probs and entropies come back as ``[B, W]`` per-row windows (row ``b``'s positions ``cut_b ..
n_b - 1``, right-padded with zeros to the widest), the layout ``trainer.prompt_grad=detached`` already
uses, with the batch's other per-token tensors cut to match: the loss code is unchanged, and the values
(hence losses and gradients) are those of the padded pass. A row with no trainable token is not run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from algorithms.logprobs import token_logprobs_and_entropy


def trainable_start(loss_mask: list[int] | Tensor) -> int:
    """The position whose logits predict a row's first trainable token (0 for a row with none)."""
    mask = torch.as_tensor(loss_mask)
    return max(int(mask.argmax()) - 1, 0) if bool(mask.any()) else 0

PACKED_ATTENTION = "chordgym_packed_sdpa"


def packed_sdpa_attention(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor,
                          attention_mask: Tensor | None, *, packed_lengths: tuple[int, ...] | None = None,
                          **kwargs: Any) -> tuple[Tensor, None]:
    """Causal SDPA on each packed row: q/k/v ``[1, heads, sum n_b, d]`` split at ``packed_lengths``."""
    if packed_lengths is None or attention_mask is not None or query.shape[0] != 1:
        raise RuntimeError(f"{PACKED_ATTENTION} runs only inside algorithms.packed.packed_forward "
                           "(one packed row, packed_lengths given, no mask)")
    kwargs.pop("is_causal", None)
    parts = [sdpa_attention_forward(module, q, k, v, None, is_causal=True, **kwargs)[0]
             for q, k, v in zip(query.split(packed_lengths, dim=2), key.split(packed_lengths, dim=2),
                                value.split(packed_lengths, dim=2), strict=True)]
    return (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)), None


AttentionInterface.register(PACKED_ATTENTION, packed_sdpa_attention)


def _hf_model(model: Any) -> Any:
    """The transformers model behind ``model`` (a DeepSpeed engine wraps it as ``.module``)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, torch.nn.Module) and hasattr(inner, "config") else model


def require_attention_interface(model: Any) -> Any:
    """The transformers model behind ``model``, if its attention goes through ``AttentionInterface`` (what the
    packed pass switches); else ``ValueError`` naming the key that turns packing off. The trainer calls it at
    start-up, so that a model without it stops before the first step, not inside it."""
    hf = _hf_model(model)
    if not getattr(hf, "_supports_attention_backend", False):
        raise ValueError(f"trainer.padding_free=true needs a transformers model whose attention goes through "
                         f"AttentionInterface; {type(hf).__name__} does not: set trainer.padding_free=false")
    return hf


@contextlib.contextmanager
def _attention_implementation(model: Any, name: str) -> Iterator[None]:
    """The model's attention implementation set to ``name`` for the duration of one forward call."""
    hf = require_attention_interface(model)
    config = hf.config
    previous = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = previous


def row_spans(batch: dict[str, Tensor]) -> list[tuple[int, int] | None]:
    """Per row: ``(cut, n)``, the window of positions ``cut .. n - 1`` whose logits predict its trainable
    tokens (``cut``: one before the first trainable token; ``n``: the row's length), or None without any."""
    lengths = [int(n) for n in batch["attention_mask"].sum(dim=1).tolist()]
    mask = batch["loss_mask"]
    return [(trainable_start(mask[b, :n]), n) if bool(mask[b, :n].any()) else None for b, n in enumerate(lengths)]


def packed_forward(model: Any, input_ids: Tensor, rows: list[tuple[int, int, int]]) -> tuple[Tensor, Tensor]:
    """Logits ``[1, K, V]`` of the rows ``(b, cut, n)`` of ``input_ids`` packed into one sequence (each row's
    first ``n`` tokens), for each row's positions ``cut .. n - 1`` in that order, and the tokens at those
    positions ``[1, K]``."""
    device = input_ids.device
    ids = torch.cat([input_ids[b, :n] for b, _, n in rows])[None]
    positions = torch.cat([torch.arange(n, device=device) for _, _, n in rows])[None]
    offsets = [0]
    for _, _, n in rows:
        offsets.append(offsets[-1] + n)
    keep = torch.cat([torch.arange(o + cut, o + n, device=device) for o, (_, cut, n) in zip(offsets, rows, strict=False)])
    with _attention_implementation(model, PACKED_ATTENTION):
        logits = model(input_ids=ids, position_ids=positions, logits_to_keep=keep,
                       packed_lengths=tuple(n for _, _, n in rows)).logits
    return logits, ids[:, keep]


def _unpack(flat: Tensor, rows: list[tuple[int, int, int]], batch_size: int, width: int) -> Tensor:
    """``flat [1, K]`` (the rows' windows end to end) as ``[B, width]``: row ``b``'s window at ``b``, left-aligned,
    zero elsewhere and at each window's position 0 (it has no prediction within the row)."""
    device = flat.device
    out = torch.zeros(batch_size, width, dtype=flat.dtype, device=device)
    if not rows:
        return out
    b_idx, t_idx, src = [], [], []
    offset = 0
    for b, cut, n in rows:
        span = n - cut
        b_idx.append(torch.full((span - 1,), b, dtype=torch.long, device=device))
        t_idx.append(torch.arange(1, span, device=device))
        src.append(torch.arange(offset + 1, offset + span, device=device))
        offset += span
    values = flat[0, torch.cat(src)]
    return out.index_put((torch.cat(b_idx), torch.cat(t_idx)), values)


def window_batch(batch: dict[str, Tensor], spans: list[tuple[int, int] | None], width: int) -> dict[str, Tensor]:
    """The batch's per-token tensors cut to each row's window, left-aligned and zero-padded to ``width``."""
    seq_len = batch["loss_mask"].shape[1]
    out: dict[str, Tensor] = {}
    for key, value in batch.items():
        if value.dim() != 2 or value.shape[1] != seq_len:
            out[key] = value
            continue
        pieces = []
        for b, span in enumerate(spans):
            piece = value[b, span[0]:span[1]] if span is not None else value[b, :0]
            pieces.append(torch.nn.functional.pad(piece, (0, width - piece.shape[0])))
        out[key] = torch.stack(pieces)
    return out


def packed_logprobs(model: Any, batch: dict[str, Tensor], temperature: float = 1.0, with_entropy: bool = True,
                    entropy_grad: bool = False) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    """``(logp, entropy, window)`` of a right-padded micro-batch from one packed forward pass.

    ``logp``/``entropy`` are ``[B, W]`` over each row's own window (``row_spans``), ``window`` the batch cut
    the same way; the shift convention of ``algorithms.logprobs`` holds row by row (window position 0
    gets 0). A batch with no trainable token runs one token, for a zero loss that still has a graph.
    """
    spans = row_spans(batch)
    rows = [(b, *span) for b, span in enumerate(spans) if span is not None]
    width = max((n - cut for _, cut, n in rows), default=1)
    logits, targets = packed_forward(model, batch["input_ids"], rows or [(0, 0, 1)])
    flat_logp, flat_entropy = token_logprobs_and_entropy(logits, targets, temperature=temperature,
                                                         with_entropy=with_entropy, entropy_grad=entropy_grad)
    batch_size = batch["input_ids"].shape[0]
    logp = _unpack(flat_logp, rows, batch_size, width)
    entropy = _unpack(flat_entropy, rows, batch_size, width) if flat_entropy is not None else None
    if not rows:  # keep the graph: a zero loss must still back-propagate (ZeRO reduces in every backward)
        logp = logp + 0.0 * flat_logp.sum()
    return logp, entropy, window_batch(batch, spans, width)
