"""Per-token log-probabilities and entropies from causal-LM logits, without a full-vocab float copy.

Shift convention (used everywhere in chordgym, and by `agents.Trajectory.logprobs`):

    logp[b, t]    = log p(input_ids[b, t] | input_ids[b, :t])   computed from logits[b, t - 1]
    entropy[b, t] = H(p(. | input_ids[b, :t]))                  the distribution that produced token t
    logp[b, 0] = entropy[b, 0] = 0                              (the first token has no prediction)

So `logp` is aligned with `input_ids` and with the token-level `loss_mask`: the mask of position t selects
the log-probability of token t. The last position's logits (predicting a token after the sequence) are unused.

Memory: a naive `log_softmax(logits.float())` materialises a float32 [B, T, V] tensor (plus another for
backward). Here the vocabulary-wide work runs in chunks of positions, and the log-probability uses a custom
autograd function whose backward recomputes softmax chunk by chunk, so the only saved extra state is the
[B, T] log-normaliser. Entropy costs another full-vocab pass; ask for it only when needed (IDFT, cll
diagnostics, an entropy bonus). It is detached unless `entropy_grad=True` (only an entropy bonus needs it).
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_CHUNK_TOKENS = 4096


def _chunks(n_pos: int, batch: int, chunk_tokens: int) -> list[tuple[int, int]]:
    """Split positions 0..n_pos-1 into ranges holding about `chunk_tokens` tokens across the batch."""
    step = max(1, chunk_tokens // max(batch, 1))
    return [(s, min(s + step, n_pos)) for s in range(0, n_pos, step)]


def _scaled(logits: Tensor, temperature: float) -> Tensor:
    """``logits / temperature`` in float32, a fresh tensor (at temperature 1 only the float copy: x / 1 == x)."""
    z = logits.float()
    if z.data_ptr() == logits.data_ptr():  # already float32: .float() returned the tensor itself
        z = z.clone()
    return z if temperature == 1.0 else z.div_(temperature)


class _ShiftedTokenLogProb(torch.autograd.Function):
    """logp[b, t] = z[b, t, y[b, t]] - logsumexp(z[b, t]),  z = logits[:, :-1] / temperature, y = ids[:, 1:]."""

    @staticmethod
    def forward(ctx, logits: Tensor, input_ids: Tensor, temperature: float, chunk_tokens: int) -> Tensor:
        batch, seq_len, _ = logits.shape
        n_pos = seq_len - 1
        targets = input_ids[:, 1:]
        logp = torch.empty(batch, n_pos, dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(logp)
        for s, e in _chunks(n_pos, batch, chunk_tokens):
            z = _scaled(logits[:, s:e], temperature)
            lse[:, s:e] = torch.logsumexp(z, dim=-1)
            logp[:, s:e] = z.gather(-1, targets[:, s:e].unsqueeze(-1)).squeeze(-1) - lse[:, s:e]
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature = temperature
        ctx.chunk_tokens = chunk_tokens
        return logp

    @staticmethod
    def backward(ctx, grad_logp: Tensor):
        logits, targets, lse = ctx.saved_tensors
        batch, seq_len, _ = logits.shape
        grad_logits = torch.zeros_like(logits)
        grad_logp = grad_logp.float()
        # d logp / d z = onehot(y) - softmax(z);  d z / d logits = 1 / temperature
        for s, e in _chunks(seq_len - 1, batch, ctx.chunk_tokens):
            g = grad_logp[:, s:e].unsqueeze(-1)
            # in place on the chunk's own float copy: -softmax(z) * g, one vocabulary-wide buffer per chunk
            grad_z = _scaled(logits[:, s:e], ctx.temperature).sub_(lse[:, s:e].unsqueeze(-1)).exp_().mul_(-g)
            grad_z.scatter_add_(-1, targets[:, s:e].unsqueeze(-1), g)
            if ctx.temperature != 1.0:
                grad_z.div_(ctx.temperature)
            grad_logits[:, s:e] = grad_z  # copy_ casts to the logits' dtype
        return grad_logits, None, None, None


def _shifted_entropy(logits: Tensor, temperature: float, chunk_tokens: int) -> Tensor:
    """H[b, t] of softmax(logits[b, t] / temperature) for t < T - 1; autograd-differentiable."""
    batch, seq_len, _ = logits.shape
    parts = []
    for s, e in _chunks(seq_len - 1, batch, chunk_tokens):
        z = _scaled(logits[:, s:e], temperature)
        lse = torch.logsumexp(z, dim=-1, keepdim=True)
        probs = torch.exp(z - lse)
        parts.append(lse.squeeze(-1) - (probs * z).sum(-1))  # H = logsumexp(z) - E_p[z]
    return torch.cat(parts, dim=1)


def token_logprobs_and_entropy(
    logits: Tensor,
    input_ids: Tensor,
    temperature: float = 1.0,
    with_entropy: bool = True,
    entropy_grad: bool = False,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> tuple[Tensor, Tensor | None]:
    """Log-probability of each token of `input_ids` under `logits`, and the next-token entropy.

    Args:
        logits: [B, T, V] causal-LM output for `input_ids` (any float dtype; computed in float32).
        input_ids: [B, T] the tokens whose log-probabilities are wanted.
        temperature: logits are divided by it (use the sampler's temperature to compare with its logprobs;
            1.0 for cll / IDFT, which are defined at temperature 1).
        with_entropy: also return the entropy (another pass over the vocabulary).
        entropy_grad: let gradients flow through the entropy (only an entropy bonus needs this).
        chunk_tokens: about how many positions (across the batch) are processed per vocab-wide chunk.

    Returns:
        (logp [B, T] float32, entropy [B, T] float32 or None), both 0 at position 0 (see module docstring).
    """
    if logits.dim() != 3 or input_ids.shape != logits.shape[:2]:
        raise ValueError(f"need logits [B,T,V] and input_ids [B,T], got {tuple(logits.shape)}, "
                         f"{tuple(input_ids.shape)}")
    batch, seq_len, _ = logits.shape
    first = torch.zeros(batch, 1, dtype=torch.float32, device=logits.device)
    if seq_len < 2:
        zeros = first.expand(batch, seq_len).clone() + 0.0 * logits.sum(-1).float()
        return zeros, (zeros.detach().clone() if with_entropy else None)

    shifted_logp = _ShiftedTokenLogProb.apply(logits, input_ids.long(), float(temperature), int(chunk_tokens))
    logp = torch.cat([first, shifted_logp], dim=1)

    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            shifted_entropy = _shifted_entropy(logits, float(temperature), int(chunk_tokens))
        entropy = torch.cat([first, shifted_entropy], dim=1)
    return logp, entropy
