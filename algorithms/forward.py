"""The CHORD objective over a batch too large for one forward pass.

    L = (1 - mu) * L_grpo(on-policy batch) + mu * L_sft(expert batch)

Each term is an average over its *own* batch (all ranks, all micro-batches). A micro-batch's term is
therefore scaled by its share of the term's units (tokens for ``token-mean``, sequences for the
``seq-mean-*`` modes) before its backward pass, and by the world size because DeepSpeed averages
gradients over ranks. Summed over micro-batches and ranks, the gradients equal those of the loss above
computed on the whole batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from algorithms.chord import AlgorithmConfig
from algorithms.idft import centred_loglik
from algorithms.logprobs import token_logprobs_and_entropy
from algorithms.losses import clipped_policy_loss, masked_mean
from algorithms.prompt_kv import DetachedPromptKV, detached_prompt_row_logits
from algorithms.sft import sft_loss


def aggregation_units(loss_mask: Tensor, mode: str) -> float:
    """How many units a batch contributes to the denominator of ``mode`` (tokens or sequences)."""
    if mode == "token-mean":
        return float(loss_mask.sum())
    return float((loss_mask.sum(dim=-1) > 0).sum())


def plan_micro_batches(lengths: list[int], max_rows: int, max_tokens: int) -> list[list[int]]:
    """Row indices sorted by length, grouped into micro-batches of at most ``max_rows`` rows and
    ``max_tokens`` padded tokens (rows x longest row; a longer row gets a micro-batch of its own).

    The token cap bounds activation memory whatever the lengths: short rows (math) share a pass, long
    ones (ToolACE) go one or two at a time.
    """
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        current = batches[-1] if batches else None
        if current and len(current) < max_rows and (len(current) + 1) * lengths[i] <= max_tokens:
            current.append(i)
        else:
            batches.append([i])
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


def _stack_rows(rows: list[Tensor | None]) -> Tensor:
    """Per-row logits of equal shape stacked into a batch; a row with nothing to train (None) gets zeros."""
    ref = next(r for r in rows if r is not None)
    return torch.stack([r if r is not None else ref.new_zeros(ref.shape) for r in rows])


def trainable_start(loss_mask: list[int] | Tensor) -> int:
    """The position whose logits predict a row's first trainable token (0 for a row with none)."""
    mask = torch.as_tensor(loss_mask)
    return max(int(mask.argmax()) - 1, 0) if bool(mask.any()) else 0


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


@dataclass
class MicroBatchOutput:
    loss: Tensor
    metrics: dict[str, float]


def on_policy_micro_loss(model: torch.nn.Module, batch: dict[str, Tensor], advantages: Tensor,
                         algo: AlgorithmConfig, temperature: float, use_sampler_logprobs: bool,
                         max_len: int | None, prompt_kv: DetachedPromptKV | None = None,
                         ref_model: torch.nn.Module | None = None,
                         ref_prompt_kv: DetachedPromptKV | None = None) -> MicroBatchOutput:
    """GRPO's clipped surrogate on one micro-batch of on-policy trajectories (mean over the micro-batch).

    Old log-probs are the detached current ones (one optimizer step per rollout batch, the paper's
    setting: rho = 1) unless ``use_sampler_logprobs``; the sampler/trainer mismatch is reported either way.
    With ``algo.kl_coef != 0`` the frozen ``ref_model`` (the initial weights) scores the same tokens and
    the k3 estimate of KL(pi || pi_ref) is added with that weight, as TRL's ``beta`` and verl's
    ``kl_loss_coef`` do (metric ``grpo/kl``).
    """
    ref_logp = None
    if algo.kl_coef != 0.0:
        if ref_model is None:
            raise ValueError("algorithm.kl_coef != 0 needs the reference model")
        with torch.no_grad():
            ref_logits, ref_window = completion_logits(ref_model, batch, ref_prompt_kv)
            ref_logp, _ = token_logprobs_and_entropy(ref_logits, ref_window["input_ids"], temperature=temperature,
                                                     with_entropy=False)
    logits, batch = completion_logits(model, batch, prompt_kv)
    need_entropy = algo.entropy_coef != 0.0 or temperature == 1.0
    logp, entropy = token_logprobs_and_entropy(logits, batch["input_ids"], temperature=temperature,
                                               with_entropy=need_entropy, entropy_grad=algo.entropy_coef != 0.0)
    mask = batch["loss_mask"]
    old_logp = batch["old_logprobs"] if use_sampler_logprobs else logp.detach()
    loss, pg_metrics = clipped_policy_loss(
        logp, old_logp, advantages, mask, eps_low=algo.eps_low, eps_high=algo.eps_high,
        dual_clip=algo.dual_clip, agg=algo.loss_agg, max_len=max_len, ref_logp=ref_logp, kl_coef=algo.kl_coef,
        entropy=entropy, entropy_coef=algo.entropy_coef,
    )
    with torch.no_grad():
        metrics = {f"grpo/{k}": float(v) for k, v in pg_metrics.items()}
        metrics["grpo/sampler_logprob_abs_diff"] = float(masked_mean((logp - batch["old_logprobs"]).abs(), mask))
        if entropy is not None and temperature == 1.0:
            metrics["onpolicy/cll_mean"] = float(masked_mean(centred_loglik(logp.detach(), entropy.detach()), mask))
    return MicroBatchOutput(loss, metrics)


def expert_micro_loss(model: torch.nn.Module, batch: dict[str, Tensor], algo: AlgorithmConfig, step: int,
                      total_steps: int, max_len: int | None, prompt_kv: DetachedPromptKV | None = None
                      ) -> MicroBatchOutput:
    """The weighted SFT term on one micro-batch of expert trajectories (mean over the micro-batch).

    The entropy pass is always run: IDFT needs it, and the centred log-likelihood of the expert tokens is
    the diagnostic that shows how far off-policy the expert data is.
    """
    logits, batch = completion_logits(model, batch, prompt_kv)
    logp, entropy = token_logprobs_and_entropy(logits, batch["input_ids"], temperature=1.0, with_entropy=True)
    mask = batch["loss_mask"]
    loss, sft_metrics = sft_loss(logp, mask, weighting=algo.sft_weighting, agg=algo.loss_agg, entropy=entropy,
                                 idft_params=algo.idft_params(step, total_steps), max_len=max_len)
    with torch.no_grad():
        metrics = {f"sft/{k}": float(v) for k, v in sft_metrics.items()}
        metrics["expert/cll_mean"] = float(masked_mean(centred_loglik(logp.detach(), entropy.detach()), mask))
    return MicroBatchOutput(loss, metrics)
