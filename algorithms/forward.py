"""The training forward pass over a micro-batch: logits for the trainable window only, and how a batch too
large for one pass is split into micro-batches.

The loss terms built on these logits (GRPO's surrogate, the weighted SFT term) and their combination
``(1 - mu) L_grpo + mu L_sft`` are CHORD's, in ``algorithms.chord``; this module only makes the forward
pass cheap (no lm_head over prompt positions, no padded attention for long rows, optional detached
prompts) while giving the same logits as a full pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from algorithms.logprobs import token_logprobs_and_entropy
from algorithms.packed import packed_logprobs, trainable_start
from algorithms.prompt_kv import DetachedPromptKV, detached_prompt_row_logits


def plan_micro_batches(lengths: list[int], max_rows: int, max_tokens: int, packed: bool = False) -> list[list[int]]:
    """Row indices sorted by length, grouped into micro-batches of at most ``max_rows`` rows and
    ``max_tokens`` padded tokens (rows x longest row; a longer row gets a micro-batch of its own).

    The token cap bounds activation memory whatever the lengths: short rows (math) share a pass, long
    ones (ToolACE) go one or two at a time.

    ``packed`` (``trainer.padding_free``): the cap is on real tokens, the sum of the rows' lengths, since a
    packed micro-batch holds no padding; rows are placed longest first, each into the first micro-batch
    it fits (first-fit decreasing), so few micro-batches run nearly full.
    """
    if packed:
        return _first_fit_decreasing(lengths, max_rows, max_tokens)
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        current = batches[-1] if batches else None
        if current and len(current) < max_rows and (len(current) + 1) * lengths[i] <= max_tokens:
            current.append(i)
        else:
            batches.append([i])
    return batches


def _first_fit_decreasing(lengths: list[int], max_rows: int, max_tokens: int) -> list[list[int]]:
    batches: list[list[int]] = []
    totals: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for k, batch in enumerate(batches):
            if len(batch) < max_rows and totals[k] + lengths[i] <= max_tokens:
                batch.append(i)
                totals[k] += lengths[i]
                break
        else:
            batches.append([i])
            totals.append(lengths[i])
    return batches


PADDED_FORWARD_MAX_LEN = 512  # padded micro-batches up to this length run as one masked forward pass


def completion_logits(model: torch.nn.Module, batch: dict[str, Tensor], prompt_kv: DetachedPromptKV | None = None
                      ) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits for the positions that predict trainable tokens only, and the batch cut to match.

    Prompts (the system prompt with its tool list) are most of a trajectory's tokens, but only positions
    from the first trainable token on need the vocabulary-wide lm_head, softmax and entropy. With
    ``f`` the first masked position over the batch, ``logits_to_keep = T - f + 1`` keeps positions
    ``f - 1 .. T - 1``; the returned batch tensors are cut to the same window, so the usual shift convention
    (``logp[:, t]`` predicts token ``t`` from position ``t - 1``; position 0 of the window gets 0) holds and
    loses nothing: the window's position 0 (``f - 1``) is unmasked in every row.

    A right-padded batch longer than ``PADDED_FORWARD_MAX_LEN`` is run row by row, each row cut to its own
    length, and the logits are zero-padded back to the window: with padding, SDPA's CPU path for a masked
    batch materialises every attention score for the backward pass (measured on 8 ToolACE expert
    trajectories, 4 per micro-batch: 20 GB peak and 52 s, against 24 s unpadded). Unpadded rows take the
    causal kernel; the gradients are the same. Short rows (math prompts) stay one padded pass: there the
    scores are small and one batched matmul beats many thin ones.

    With ``prompt_kv`` (``trainer.prompt_grad=detached``) every row is run on its own: its prompt, up to the
    position that predicts its first trainable token, comes from ``prompt_kv`` without gradient
    (``algorithms.prompt_kv``); the logits are the same, the gradient leaves out the prompt's keys/values,
    and the window starts at each row's own first trainable token - 1.
    """
    lengths = [int(n) for n in batch["attention_mask"].sum(dim=1).tolist()]
    if prompt_kv is not None:
        return _detached_prompt_logits(model, batch, lengths, prompt_kv)
    mask = batch["loss_mask"]
    seq_len = mask.shape[1]
    rows_with_tokens = mask.sum(dim=1) > 0
    first = int(mask[rows_with_tokens].argmax(dim=1).min()) if bool(rows_with_tokens.any()) else seq_len - 1
    start = max(first - 1, 0)
    keep = seq_len - start
    window = {k: (v[:, start:] if v.dim() == 2 and v.shape[1] == seq_len else v) for k, v in batch.items()}
    if all(n == seq_len for n in lengths):  # no padding: no mask, SDPA's causal kernel
        return model(input_ids=batch["input_ids"], logits_to_keep=keep).logits, window
    if seq_len <= PADDED_FORWARD_MAX_LEN:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     logits_to_keep=keep).logits, window
    rows: list[Tensor | None] = []
    for b, n in enumerate(lengths):
        if n <= start:  # no position of this row lies in the window (it has no trainable token)
            rows.append(None)
            continue
        out = model(input_ids=batch["input_ids"][b:b + 1, :n], logits_to_keep=n - start).logits[0]
        rows.append(torch.nn.functional.pad(out, (0, 0, 0, keep - (n - start))))
    return _stack_rows(rows), window


def completion_logprobs(model: torch.nn.Module, batch: dict[str, Tensor], prompt_kv: DetachedPromptKV | None = None,
                        *, temperature: float = 1.0, with_entropy: bool = True, entropy_grad: bool = False,
                        padding_free: bool = False) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    """``(logp, entropy, window)``: the per-token log-probs (and entropies, ``algorithms.logprobs``) of the
    trainable window and the batch cut to match, whichever way the forward pass runs.

    ``padding_free`` (``trainer.padding_free``, ``algorithms.packed``): the rows packed into one sequence,
    each row's own window; otherwise ``completion_logits``. The values on every trainable token are the
    same either way; ``prompt_kv`` (detached prompts) runs rows one by one and takes precedence.
    """
    if padding_free and prompt_kv is None:
        return packed_logprobs(model, batch, temperature=temperature, with_entropy=with_entropy,
                               entropy_grad=entropy_grad)
    logits, window = completion_logits(model, batch, prompt_kv)
    logp, entropy = token_logprobs_and_entropy(logits, window["input_ids"], temperature=temperature,
                                               with_entropy=with_entropy, entropy_grad=entropy_grad)
    return logp, entropy, window


def _stack_rows(rows: list[Tensor | None]) -> Tensor:
    """Per-row logits of equal shape stacked into a batch; a row with nothing to train (None) gets zeros."""
    ref = next(r for r in rows if r is not None)
    return torch.stack([r if r is not None else ref.new_zeros(ref.shape) for r in rows])


def _detached_prompt_logits(model: torch.nn.Module, batch: dict[str, Tensor], lengths: list[int],
                            prompt_kv: DetachedPromptKV) -> tuple[Tensor, dict[str, Tensor]]:
    """Each row forwarded from its own ``trainable_start`` with its prompt's KV from ``prompt_kv``.

    The window is per row: row ``b``'s positions ``cut_b .. n_b - 1``, right-padded to the longest such span
    (pad: zero logits, masked), so a micro-batch of rows with very different prompt lengths holds no more
    logits than its trainable spans. The shift convention of ``completion_logits`` holds row by row.
    """
    mask = batch["loss_mask"]
    spans = [(trainable_start(mask[b]), n) if bool(mask[b].any()) else None for b, n in enumerate(lengths)]
    width = max((n - cut for cut, n in filter(None, spans)), default=1)
    rows: list[Tensor | None] = []
    for b, span in enumerate(spans):
        if span is None:
            rows.append(None)
            continue
        cut, n = span
        out = detached_prompt_row_logits(model, batch["input_ids"][b, :n], cut, prompt_kv)
        rows.append(torch.nn.functional.pad(out, (0, 0, 0, width - (n - cut))))
    logits = _stack_rows(rows)
    seq_len = mask.shape[1]
    window: dict[str, Tensor] = {}
    for key, value in batch.items():
        if value.dim() != 2 or value.shape[1] != seq_len:
            window[key] = value
            continue
        cut_rows = []
        for b, span in enumerate(spans):
            piece = value[b, span[0]:span[1]] if span is not None else value[b, :0]
            cut_rows.append(torch.nn.functional.pad(piece, (0, width - piece.shape[0])))
        window[key] = torch.stack(cut_rows)
    return logits, window
