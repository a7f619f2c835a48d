r"""Hinted Decoding ("Towards On-Policy SFT"): rewrite an expert reply in the model's own distribution.

Two streams of the *same* model are decoded together, token by token, and always receive the same token:

* the **hinted** stream p sees the conversation plus the reference reply (``hint_messages``: a system
  instruction to turn the reference into its own reply without mentioning it, and the reference itself);
* the **student** stream q sees the conversation alone (the opening messages the environment gives).

Per step (``mix_logprobs`` and ``sample_next``, exactly the formulas of docs ALGORITHMS.md):

    first token:      sampled from p                                  (lam is not defined yet)
    then:             lam   = clamp(beta * H(p) / log|V|, 0, 1)
                      mixed = log_softmax(p) * (1 - lam) + log_softmax(q) * lam     (geometric mixture)
                      token ~ top_p(softmax(mixed / temperature))                    (T = 0.3, top-p 0.95)
    after the marker: token ~ top_p(softmax(log_softmax(q) / temperature))          (q alone)

Low entropy in p (the reference decides the token) keeps lam near 0; where p is unsure the student's own
preference takes over. beta = 0 is plain sampling from p (self-distillation). The *marker* is the final
answer's opening (math: ``\boxed{``; tool calls: ``[`` starting a pythonic call list); once it is in the
generated text, the rest comes from q alone. Decoding stops on the end-of-turn token, a length cap, or a
``repeat_window``-token window seen ``repeat_count`` times.

KV-cache design (``KVBatch``): B problems x 2 streams are one batch of 2B rows in one ``DynamicCache``.
Each prompt is prefilled alone (no compute spent on padding; ``logits_to_keep=1``), and a prompt that
shares a prefix with an earlier one (p and q share the environment's system prompt, often most of the
prompt) reuses that prefix's K/V and runs only the rest. The rows' K/V are then left-padded with zeros
into one cache; the attention mask marks the padding and each row's positions continue from its own
length, so every row sees positions 0, 1, ... exactly as if it were alone. Each later step feeds one
token per row with the cache. Rows that are no longer needed (a finished problem, the p row after the switch)
are removed from the cache with ``batch_select_indices``, so late steps cost only what is still decoding.
The authors' reference recomputes the whole prefix every token; this is O(T) per token instead of O(T^2).

Reproducibility: each problem has its own ``torch.Generator`` (seeded per row) and every sampled token
consumes exactly one uniform draw of it, whatever the batch composition, so a row's output depends only
on its prompts, its seed and the parameters.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from agents.models import autocast_context

#: stop reasons of a ``HintedSample``
STOP_EOS = "eos"
STOP_LENGTH = "length"
STOP_REPETITION = "repetition"

HINT_INSTRUCTION = (
    "A reference reply to the conversation is given at the end of the last message. Write your own reply "
    "that reaches exactly the same result (the same final answer, the same function calls with the same "
    "arguments), in your own words and step by step where reasoning is needed. Never mention or refer to "
    "the reference reply: answer as if you had worked it out yourself."
)
REFERENCE_HEADER = "Reference reply (rewrite it as your own; do not mention it):"


# ----------------------------------------------------------------------------------------------- parameters


@dataclass
class HintedParams:
    """Parameters of one Hinted Decoding run (defaults: the paper's).

    beta: lam = clamp(beta * H(p) / log|V|, 0, 1); 0 samples from the hinted stream alone.
    temperature, top_p: applied to the mixed log-probabilities (temperature first, then the nucleus);
        temperature <= 0 is greedy.
    max_new_tokens: length cap per reply.
    repeat_window, repeat_count: stop when a window of ``repeat_window`` tokens has occurred
        ``repeat_count`` times among the generated tokens.
    """

    beta: float = 1.0
    temperature: float = 0.3
    top_p: float = 0.95
    max_new_tokens: int = 512
    repeat_window: int = 30
    repeat_count: int = 5


@dataclass
class HintedSample:
    """One decoded reply.

    token_ids: the generated tokens, ending with the end-of-turn token when ``stop_reason == "eos"``.
    text: their text without the end-of-turn token (what is handed to ``env.step``).
    stop_reason: ``"eos"``, ``"length"`` or ``"repetition"``.
    switch_pos: index in ``token_ids`` of the first token sampled from q alone (the marker was complete
        just before it); ``None`` if the marker never appeared (or the stream was student-only).
    lams: lam of every mixed step (not the first token, not the tokens after the switch).
    """

    token_ids: list[int]
    text: str
    stop_reason: str
    switch_pos: int | None
    lams: list[float] = field(default_factory=list)

    @property
    def mean_lam(self) -> float:
        """Mean lam over the mixed steps (0.0 when there were none)."""
        return sum(self.lams) / len(self.lams) if self.lams else 0.0


# ----------------------------------------------------------------------------------------------- markers

Marker = Callable[[str], bool]

_CALL_LIST = re.compile(r"\[\s*[A-Za-z_][\w.]*\s*\(")


def boxed_marker(text: str) -> bool:
    r"""Math: the final answer starts with ``\boxed{``."""
    return "\\boxed{" in text


def call_list_marker(text: str) -> bool:
    """Tool calls: a ``[`` that starts a pythonic call list, i.e. ``[`` + a (dotted) name + ``(``.

    The name and ``(`` are required so a plain ``[`` in prose (a list, a citation) does not switch.
    """
    return _CALL_LIST.search(text) is not None


def never_marker(text: str) -> bool:
    """No switch: the mixture is used to the end of the reply."""
    return False


MARKERS: dict[str, Marker] = {"boxed": boxed_marker, "call_list": call_list_marker, "none": never_marker}


def resolve_marker(marker: str | Marker | None) -> Marker:
    """A marker callable from a name in ``MARKERS``, a callable, or ``None`` (never switch)."""
    if marker is None:
        return never_marker
    if callable(marker):
        return marker
    try:
        return MARKERS[marker]
    except KeyError:
        raise ValueError(f"unknown marker {marker!r}; use one of {sorted(MARKERS)} or a callable") from None


# ----------------------------------------------------------------------------------------------- repetition


def repeated_window(ids: Sequence[int], window: int, count: int) -> bool:
    """True if some run of ``window`` consecutive tokens occurs at least ``count`` times in ``ids``
    (occurrences may overlap). The reference the incremental ``RepetitionDetector`` must agree with."""
    if window < 1 or count < 1 or len(ids) < window:
        return False
    seen = Counter(tuple(ids[i:i + window]) for i in range(len(ids) - window + 1))
    return max(seen.values()) >= count


class RepetitionDetector:
    """Incremental ``repeated_window``: ``push`` each generated token, it returns True once a
    ``window``-token window has been seen ``count`` times. O(window) per token."""

    def __init__(self, window: int, count: int):
        self.window, self.count = int(window), int(count)
        self.ids: list[int] = []
        self.seen: Counter[tuple[int, ...]] = Counter()

    def push(self, token: int) -> bool:
        self.ids.append(int(token))
        if self.window < 1 or self.count < 1 or len(self.ids) < self.window:
            return False
        key = tuple(self.ids[-self.window:])
        self.seen[key] += 1
        return self.seen[key] >= self.count


# ----------------------------------------------------------------------------------------------- the mixture


def entropy_from_logprobs(logp: Tensor) -> Tensor:
    """H = -sum_v p(v) log p(v) over the last dimension (``logp`` are log-probabilities)."""
    return -(logp.exp() * logp).sum(-1)


def mix_logprobs(logp_p: Tensor, logp_q: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """The geometric mixture of one step, per row.

    lam = clamp(beta * H(p) / log|V|, 0, 1);  mixed = logp_p * (1 - lam) + logp_q * lam.
    ``logp_*`` are [R, V] log-probabilities (log_softmax of the logits); returns (mixed [R, V], lam [R]).
    -inf entries are clamped to the most negative finite float first, so 0 * (-inf) never makes a NaN and
    lam = 0 returns ``logp_p`` exactly.
    """
    lo = torch.finfo(logp_p.dtype).min
    logp_p, logp_q = logp_p.clamp(min=lo), logp_q.clamp(min=lo)
    lam = (beta * entropy_from_logprobs(logp_p) / math.log(logp_p.shape[-1])).clamp(0.0, 1.0)
    mixed = logp_p * (1.0 - lam).unsqueeze(-1) + logp_q * lam.unsqueeze(-1)
    return mixed, lam


_TOPK_FIRST = 64


def sample_next(logp: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """Sample one token from the [V] log-scores ``logp``: divide by ``temperature``, keep the smallest set
    of most likely tokens whose probability reaches ``top_p`` (at least one), renormalise, and draw by
    inverse CDF with exactly one uniform from ``generator``. ``temperature <= 0`` is greedy (still one draw,
    so the random stream stays aligned)."""
    u = torch.rand((), generator=generator, device=logp.device if generator is None else generator.device)
    if temperature <= 0:
        return int(logp.argmax())
    probs = torch.softmax(logp.float() / temperature, dim=-1)
    # The nucleus is a prefix of the descending order: when the k most likely tokens already hold top_p of
    # the mass it lies inside them and a top-k replaces the full sort (same result, much cheaper).
    sorted_p, order = probs.topk(min(_TOPK_FIRST, probs.shape[-1]))
    if float(sorted_p.sum()) < top_p:
        sorted_p, order = probs.sort(descending=True)
    cum = sorted_p.cumsum(0)
    keep = (cum - sorted_p) < top_p  # a token is kept if the mass before it is below top_p
    keep[0] = True
    kept = sorted_p * keep
    target = u.to(kept.device) * kept.sum()
    pick = int(torch.searchsorted(kept.cumsum(0), target, right=True).clamp(max=int(keep.sum()) - 1))
    return int(order[pick])


# ----------------------------------------------------------------------------------------------- KV cache


class KVBatch:
    """Rows of left-padded token sequences decoded incrementally with one shared KV cache.

    ``prefill(prompts)`` runs the padded prompts once; ``step(tokens)`` appends one token per row and
    returns the next-token logits; ``select(rows)`` keeps only the given rows (cache, mask, positions).
    ``ids`` / ``mask`` hold the full padded sequences, so a test can recompute them without the cache.
    """

    def __init__(self, model: Any, pad_id: int, dtype: str | None = None):
        self.model = model
        self.pad_id = int(pad_id)
        self.device = next(model.parameters()).device
        self.dtype = dtype or getattr(model.config, "chordgym_dtype", "fp32")
        self.cache: Any = None
        self.ids = torch.empty(0, 0, dtype=torch.long, device=self.device)
        self.mask = torch.empty(0, 0, dtype=torch.long, device=self.device)
        self.next_pos = torch.empty(0, dtype=torch.long, device=self.device)

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    def _forward(self, ids: Tensor, positions: Tensor) -> Tensor:
        with torch.no_grad(), autocast_context(self.device, self.dtype):
            out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=positions,
                             past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        return out.logits[:, -1].float()

    def _run_row(self, prompt: Sequence[int], prefix: list[tuple[Tensor, Tensor]] | None, start: int
                 ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Run ``prompt[start:]`` alone (no padding) on top of ``prefix`` (the K/V of ``prompt[:start]``);
        returns its next-token logits [V] and the row's K/V per layer ([1, heads, len, dim])."""
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=prefix) if prefix else None
        ids = torch.tensor([list(prompt[start:])], dtype=torch.long, device=self.device)
        positions = torch.arange(start, len(prompt), device=self.device).unsqueeze(0)
        with torch.no_grad(), autocast_context(self.device, self.dtype):
            out = self.model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True,
                             logits_to_keep=1)
        kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        return out.logits[0, -1].float(), kv

    def prefill(self, prompts: Sequence[Sequence[int]], min_shared: int = 16) -> Tensor:
        """Run ``prompts`` and build the left-padded batch cache; returns the [R, V] next-token logits.

        Each row runs alone, so no compute is spent on padding; a row that shares a prefix of at least
        ``min_shared`` tokens with an earlier row (the hinted and student prompts share the environment's
        system prompt, often most of the prompt) reuses that row's K/V for the prefix and runs only the rest.
        The rows' K/V are then left-padded with zeros (masked out) into one ``DynamicCache``.
        """
        from transformers import DynamicCache

        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("prefill needs at least one prompt and no empty prompt")
        length = max(len(p) for p in prompts)
        rows_kv: list[list[tuple[Tensor, Tensor]]] = []
        logits = []
        for r, prompt in enumerate(prompts):
            best, shared = None, 0
            for q in range(r):
                n = _common_prefix(prompt, prompts[q])
                if n > shared:
                    best, shared = q, n
            shared = min(shared, len(prompt) - 1)  # at least one token runs, to get its logits
            if best is None or shared < min_shared:
                row_logits, kv = self._run_row(prompt, None, 0)
            else:
                prefix = [(k[:, :, :shared], v[:, :, :shared]) for k, v in rows_kv[best]]
                row_logits, kv = self._run_row(prompt, prefix, shared)
            rows_kv.append(kv)
            logits.append(row_logits)

        def pad(t: Tensor) -> Tensor:
            return torch.cat([t.new_zeros(*t.shape[:2], length - t.shape[2], t.shape[3]), t], dim=2)

        layers = [(torch.cat([pad(kv[i][0]) for kv in rows_kv]), torch.cat([pad(kv[i][1]) for kv in rows_kv]))
                  for i in range(len(rows_kv[0]))]
        self.cache = DynamicCache(ddp_cache_data=layers)
        ids = torch.full((len(prompts), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), length), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, length - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[r, length - len(p):] = 1
        self.ids, self.mask = ids.to(self.device), mask.to(self.device)
        self.next_pos = torch.tensor([len(p) for p in prompts], dtype=torch.long, device=self.device)
        return torch.stack(logits)

    def step(self, tokens: Sequence[int]) -> Tensor:
        """Append one token per row; returns the [R, V] logits of the token after it."""
        if len(tokens) != self.rows:
            raise ValueError(f"step needs one token per row ({self.rows}), got {len(tokens)}")
        new = torch.tensor(list(tokens), dtype=torch.long, device=self.device).unsqueeze(1)
        self.ids = torch.cat([self.ids, new], dim=1)
        self.mask = torch.cat([self.mask, torch.ones_like(new)], dim=1)
        positions = self.next_pos.unsqueeze(1)
        self.next_pos = self.next_pos + 1
        return self._forward(new, positions)

    def select(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order) in the cache and the bookkeeping."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.ids, self.mask, self.next_pos = self.ids[index], self.mask[index], self.next_pos[index]


# ----------------------------------------------------------------------------------------------- decoding


@dataclass
class _Row:
    """Decoding state of one problem."""

    gen: list[int]
    generator: torch.Generator
    detector: RepetitionDetector
    hinted: bool  # True while the p stream is still in use (before the switch)
    first: bool = True
    switch_pos: int | None = None
    lams: list[float] = field(default_factory=list)
    stop: str | None = None


def hinted_decode(model: Any, tokenizer: Any, student_prompts: Sequence[Sequence[int]],
                  hinted_prompts: Sequence[Sequence[int]] | None, seeds: Sequence[int],
                  params: HintedParams | None = None, marker: str | Marker | None = None,
                  eos_ids: Sequence[int] | None = None, dtype: str | None = None) -> list[HintedSample]:
    """Decode one reply per problem with Hinted Decoding (or plain sampling when ``hinted_prompts`` is None).

    Args:
        model, tokenizer: the HF causal LM and its tokenizer (its pad token pads the left).
        student_prompts: per problem, the token ids of q's prompt (conversation + generation prompt).
        hinted_prompts: per problem, p's prompt (conversation with the hint + generation prompt); ``None``
            samples from q alone (the model's own rollout, the same sampler and stop rules).
        seeds: per problem, the seed of its ``torch.Generator``.
        params: ``HintedParams``.
        marker: a name in ``MARKERS``, a ``(text) -> bool`` callable, or None (never switch).
        eos_ids: tokens that end a reply (default: the tokenizer's eos token).
        dtype: ``"bf16"``/``"fp32"`` autocast policy (default: the model's ``chordgym_dtype``).

    Returns:
        One ``HintedSample`` per problem, in order.
    """
    params = params or HintedParams()
    check = resolve_marker(marker)
    n = len(student_prompts)
    if len(seeds) != n or (hinted_prompts is not None and len(hinted_prompts) != n):
        raise ValueError("student_prompts, hinted_prompts and seeds need one entry per problem")
    if n == 0:
        return []
    eos = set(int(t) for t in (eos_ids if eos_ids is not None else [tokenizer.eos_token_id]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batch = KVBatch(model, pad_id, dtype)
    device = batch.device

    states = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        states.append(_Row([], g, RepetitionDetector(params.repeat_window, params.repeat_count),
                           hinted=hinted_prompts is not None))
    # Row layout of the cache: (problem, stream) pairs; p rows first, then q rows.
    layout: list[tuple[int, str]] = []
    prompts: list[Sequence[int]] = []
    if hinted_prompts is not None:
        layout += [(i, "p") for i in range(n)]
        prompts += list(hinted_prompts)
    layout += [(i, "q") for i in range(n)]
    prompts += list(student_prompts)
    logits = batch.prefill(prompts)

    while True:
        logp = torch.log_softmax(logits, dim=-1)
        where = {key: r for r, key in enumerate(layout)}
        tokens: dict[int, int] = {}
        for i in sorted({i for i, _ in layout}):
            st = states[i]
            if st.hinted and st.first:
                scores = logp[where[(i, "p")]]  # the first token is sampled from p
            elif st.hinted:
                mixed, lam = mix_logprobs(logp[where[(i, "p")]][None], logp[where[(i, "q")]][None], params.beta)
                scores = mixed[0]
                st.lams.append(float(lam[0]))
            else:
                scores = logp[where[(i, "q")]]
            st.first = False
            tok = sample_next(scores, params.temperature, params.top_p, st.generator)
            tokens[i] = tok
            st.gen.append(tok)
            if tok in eos:
                st.stop = STOP_EOS
            elif st.detector.push(tok):
                st.stop = STOP_REPETITION
            elif len(st.gen) >= params.max_new_tokens:
                st.stop = STOP_LENGTH
            elif st.hinted and check(_decode(tokenizer, st.gen)):
                st.hinted, st.switch_pos = False, len(st.gen)

        keep = [r for r, (i, stream) in enumerate(layout)
                if states[i].stop is None and (stream == "q" or states[i].hinted)]
        if not keep:
            break
        if len(keep) < len(layout):
            batch.select(keep)
            layout = [layout[r] for r in keep]
        logits = batch.step([tokens[i] for i, _ in layout])

    out = []
    for st in states:
        body = st.gen[:-1] if st.stop == STOP_EOS else st.gen
        out.append(HintedSample(token_ids=st.gen, text=_decode(tokenizer, body), stop_reason=str(st.stop),
                                switch_pos=st.switch_pos, lams=st.lams))
    return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    """Text of generated tokens, exactly (special tokens kept, no clean-up of spaces)."""
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


# ----------------------------------------------------------------------------------------------- prompts


def hint_messages(conversation: Sequence[dict[str, Any]], reference: str,
                  instruction: str = HINT_INSTRUCTION) -> list[dict[str, Any]]:
    """The hinted stream's conversation: ``conversation`` (what the student sees) with ``instruction``
    appended to the system message (one is inserted if there is none) and the reference reply appended
    to the last message, right before the reply to write, where a small model attends to it best.

    The environment's own system prompt (task rules, tool schemas) is kept, so p and q differ only by the
    hint. ``conversation`` must end with a user or tool message.
    """
    msgs = [{"role": m["role"], "content": m["content"]} for m in conversation]
    if not msgs or msgs[-1]["role"] == "assistant":
        raise ValueError("hint_messages needs a conversation that ends before the assistant's reply")
    if msgs[0]["role"] == "system":
        msgs[0]["content"] = f"{msgs[0]['content']}\n\n{instruction}"
    else:
        msgs.insert(0, {"role": "system", "content": instruction})
    msgs[-1]["content"] = f"{msgs[-1]['content']}\n\n{REFERENCE_HEADER}\n{reference}"
    return msgs
