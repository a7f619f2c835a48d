"""Generation engines: the token-in/token-out interface rollouts sample through, and the HF implementation.

Contract (``GenerationEngine``): ``generate(prompts, sampling) -> list[Generation]``, one per prompt, in
order. ``prompts`` are token ids (already rendered by the chat template); the engine never re-tokenises.

Log-prob convention (what RL needs): ``Generation.logprobs[t]`` is ``log_softmax(logits / T)[token_t]``
computed in fp32 from the model's logits at temperature ``T = sampling.temperature``, i.e. exactly what a
trainer computes in a teacher-forced pass at the same temperature. top-p truncation changes which token
can be *sampled* but not the recorded log-prob (the trainer never sees the truncation either). Greedy
decoding records the same quantity for the argmax token (``T = 1`` when ``temperature == 0``).

Stopping: the model's EOS ids (tokenizer + generation config; ``<|im_end|>`` for SmolLM2, the token that
closes an assistant turn) end a row with ``finish_reason="eos"``; integer entries of ``sampling.stop`` are
stop token ids and string entries are stop strings (``"stop"``); ``max_new_tokens`` gives ``"length"``.
The token that triggers a stop is part of ``token_ids`` and has a log-prob. A stop string is matched on
the decoded text of the generated tokens; generation is cut after the token that completes it (tokens are
never split, so that token's text may run a little past the stop string).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from agents.decode_kernels import SlabLayer, decode_attention
from tools.call_grammar import CallConstraint
from agents.models import autocast_context, normalize_dtype

FinishReason = Literal["stop", "length", "eos"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one batch.

    ``stop`` mixes stop strings (``str``) and stop token ids (``int``). ``greedy`` (or ``temperature=0``)
    takes the argmax. ``seed`` makes sampling reproducible: row ``i`` of a call draws from its own stream
    seeded by ``(seed, i)``, so its tokens do not depend on batch size or on when other rows finish.
    ``row_seeds`` (one per prompt) seeds each row's stream directly instead: a caller that names its rows
    (e.g. an episode id) gets the same tokens for a row whatever else is in the call, on any rank.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str | int, ...] = ()
    greedy: bool = False
    seed: int | None = None
    row_seeds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        stop = (self.stop,) if isinstance(self.stop, str | int) else tuple(self.stop or ())
        object.__setattr__(self, "stop", stop)
        if any(not isinstance(s, str | int) or (isinstance(s, str) and not s) for s in stop):
            raise ValueError(f"stop entries must be non-empty strings or token ids, got {stop!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.row_seeds is not None:
            object.__setattr__(self, "row_seeds", tuple(int(s) for s in self.row_seeds))

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    @property
    def logprob_temperature(self) -> float:
        """The ``T`` in the recorded ``log_softmax(logits / T)`` (1.0 for ``temperature == 0``)."""
        return self.temperature if self.temperature > 0 else 1.0

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return tuple(s for s in self.stop if isinstance(s, str))

    @property
    def stop_token_ids(self) -> frozenset[int]:
        return frozenset(s for s in self.stop if isinstance(s, int))


@dataclass
class Generation:
    """One sampled continuation: tokens as sampled, their log-probs (see module doc), and why it ended."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason


@runtime_checkable
class GenerationEngine(Protocol):
    """What rollouts need from an engine."""

    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Generation]: ...

    def update_weights(self, model: Any) -> None: ...


# ----------------------------------------------------------------------------------------------- sampling


def choose_tokens(logits: torch.Tensor, sampling: SamplingParams,
                  uniforms: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row of ``logits`` [B, V]; return ``(tokens [B], logprobs [B])``.

    ``uniforms`` [B] in [0, 1) drive inverse-CDF sampling (one per row, from the row's own generator);
    unused when greedy. The log-prob is ``log_softmax(logits / T)`` at the chosen token, before top-p.
    """
    logits = logits.float()
    logp = torch.log_softmax(logits / sampling.logprob_temperature, dim=-1)
    if sampling.is_greedy:
        tokens = logits.argmax(dim=-1)
    else:
        assert uniforms is not None
        probs = logp.exp()
        if sampling.top_p < 1.0:
            probs, order = probs.sort(dim=-1, descending=True)
            before = probs.cumsum(dim=-1) - probs  # mass strictly above each token
            probs = probs.masked_fill(before >= sampling.top_p, 0.0)  # the top token always survives
        else:
            order = None
        cdf = probs.cumsum(dim=-1)
        target = (uniforms.to(cdf) * cdf[:, -1]).unsqueeze(-1)
        idx = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1)
        # float round-off can land on a zero-probability token at the very end: step back to a real one
        bad = probs.gather(-1, idx) <= 0
        if bad.any():
            idx = torch.where(bad, (probs > 0).cumsum(-1).argmax(-1, keepdim=True), idx)
        tokens = (order.gather(-1, idx) if order is not None else idx).squeeze(-1)
    return tokens, logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _admissible_token(logits: torch.Tensor, sampling: SamplingParams, gen: torch.Generator | None,
                      admissible: Callable[[int], bool], redraws: int = 16) -> int:
    """An admissible token for one row [V]: greedy takes the best admissible one; sampling re-draws from the
    distribution with each rejected token removed (up to ``redraws`` times, then the most likely admissible
    one). Raises when no token of the vocabulary is admissible (a grammar bug, never a model's fault)."""
    logits = logits.float()
    if not sampling.is_greedy and gen is not None:
        probs = torch.softmax(logits / sampling.logprob_temperature, dim=-1)
        if sampling.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            before = sorted_p.cumsum(0) - sorted_p
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p.masked_fill(before >= sampling.top_p, 0.0))
        for _ in range(redraws):
            total = float(probs.sum())
            if total <= 0:
                break
            u = float(torch.rand((), generator=gen)) * total
            t = int(torch.searchsorted(probs.cumsum(0), torch.tensor([u]), right=True).clamp_(max=len(probs) - 1))
            if probs[t] > 0 and admissible(t):
                return t
            probs[t] = 0.0
    for t in logits.argsort(descending=True).tolist():
        if admissible(t):
            return t
    raise RuntimeError("guided decoding: no token of the vocabulary continues the call list")


def _row_generators(n: int, seed: int | None, row_seeds: Sequence[int] | None = None) -> list[torch.Generator]:
    """One CPU generator per row: seeded by ``row_seeds[i]`` when given, else by ``(seed, i)``; without
    either, the base seed comes from the global torch RNG."""
    if row_seeds is not None:
        if len(row_seeds) != n:
            raise ValueError(f"row_seeds has {len(row_seeds)} entries for {n} prompts")
        seeds = [int(s) % (2**63 - 1) for s in row_seeds]
    else:
        base = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        seeds = [(base * 1_000_003 + i) % (2**63 - 1) for i in range(n)]
    gens = []
    for s in seeds:
        g = torch.Generator()
        g.manual_seed(s)
        gens.append(g)
    return gens


# ----------------------------------------------------------------------------------------------- prefix store


@dataclass
class _PrefixEntry:
    """KV of one finished row: ``tokens`` whose keys/values are in ``kv`` (per layer ``[H, n, D]`` pairs)."""

    tokens: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]]


def _common_prefix_len(a: list[int], b: list[int]) -> int:
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


def cache_from_kv(model: Any, kv: list[tuple[torch.Tensor, torch.Tensor]], length: int,
                  device: torch.device) -> Any:
    """A batch-of-one cache holding the first ``length`` positions of per-layer ``[H, n, D]`` keys/values."""
    cache = new_cache(model)
    for layer, (k, v) in enumerate(kv):
        cache.update(k[None, :, :length].to(device), v[None, :, :length].to(device), layer)
    return cache


def extend_kv(model: Any, kv: list[tuple[torch.Tensor, torch.Tensor]], reused: int, tokens: list[int],
              device: torch.device) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """One unpadded forward over ``tokens[reused:]`` after the first ``reused`` positions of ``kv``.

    Returns the per-layer ``[H, n, D]`` keys/values of all of ``tokens`` and the last position's logits.
    Gradient mode is the caller's.
    """
    cache = cache_from_kv(model, kv if reused > 0 else [], reused, device)
    out = model(input_ids=torch.tensor([tokens[reused:]], device=device),
                position_ids=torch.arange(reused, len(tokens), device=device)[None],
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    return [(layer.keys[0], layer.values[0]) for layer in out.past_key_values.layers], out.logits[0, -1]


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
        self._entries: OrderedDict[int, _PrefixEntry] = OrderedDict()
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

    def add(self, tokens: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> int | None:
        """Store ``tokens``' KV (evicting the oldest entries beyond capacity); its key, or None if not kept."""
        if not self.keeps(len(tokens)):
            return None
        key = self._next_id
        self._entries[key] = _PrefixEntry(tokens, kv)
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
            n = min(_common_prefix_len(entry.tokens, prompt), limit)
            if n > best_len:
                best, best_len = key, n
        return (best, best_len) if best_len >= self.min_reuse else (None, 0)

    def get(self, key: int) -> _PrefixEntry:
        return self._entries[key]

    def discard(self, keys: set[int]) -> None:
        for key in keys:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self.tokens -= len(entry.tokens)


# ----------------------------------------------------------------------------------------------- HF engine


@dataclass
class EngineStats:
    """Counters since construction (or ``reset_stats``): how much was prefilled, reused and decoded."""

    calls: int = 0
    prompt_tokens: int = 0
    prefilled_tokens: int = 0  # prompt tokens actually run through the model (incl. shared group prefills)
    reused_tokens: int = 0  # prompt tokens whose KV came from the prefix store
    shared_prefix_tokens: int = 0  # of prefilled_tokens: prefixes computed once for several prompts of a call
    generated_tokens: int = 0
    decode_steps: int = 0
    compactions: int = 0
    seconds: float = 0.0
    guided_tokens: int = 0  # tokens chosen under a call-list constraint
    guided_replaced: int = 0  # of those: the model's own choice was rejected and replaced
    guided_seconds: float = 0.0  # time spent checking and replacing them
    extra: dict[str, Any] = field(default_factory=dict)


class HFEngine:
    """Batched sampling with a transformers causal LM: left padding, KV cache, per-row streams, prefix reuse.

    All prompts of a call are generated together (in chunks of ``max_batch_size``, sorted by length to
    limit padding). Finished rows are dropped from the batch (and their padding columns trimmed) once they
    make up a quarter of it; until then they are fed a masked pad token. ``prefix_cache=True`` keeps each
    finished row's KV in a :class:`PrefixStore` so the next turn of the same conversation feeds only its new
    tokens, and prefills a prompt repeated within a call (a GRPO group) once for all its copies; the store
    is cleared by ``update_weights`` and whenever the model's parameters change
    (checked by a cheap fingerprint at every call), so stale KV never meets new weights.
    """

    def __init__(self, model: Any, tokenizer: Any, dtype: str | None = None, max_batch_size: int = 64,
                 eos_token_ids: Sequence[int] | None = None, prefix_cache: bool = True,
                 max_cached_tokens: int = 32768):
        self.model = model
        self.tokenizer = tokenizer
        self.dtype = normalize_dtype(dtype or getattr(model.config, "chordgym_dtype", "bf16"))
        self.max_batch_size = max_batch_size
        if eos_token_ids is None:
            eos: set[int] = set()
            for src in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None),
                                                         "eos_token_id", None)):
                if isinstance(src, int):
                    eos.add(src)
                elif src is not None:
                    eos.update(int(x) for x in src)
            eos_token_ids = sorted(eos)
        self.eos_token_ids = frozenset(int(x) for x in eos_token_ids)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad if pad is not None else 0)
        self.prefix_cache = prefix_cache
        self.store = PrefixStore(max_tokens=max_cached_tokens)
        self.stats = EngineStats()
        self._fingerprint: tuple | None = None
        self._pieces: dict[int, str] = {}

    # -- weights ------------------------------------------------------------------------------------

    def update_weights(self, model: Any | None = None) -> None:
        """Point at ``model`` (the HF engine shares the trainer's module, so weights are already current)
        and drop every cached KV: it was computed with the old weights."""
        if model is not None:
            self.model = model
        self.store.clear()
        self._fingerprint = None

    def _weights_fingerprint(self) -> tuple:
        """Cheap change detector: storage, version counters and a few values of every parameter."""
        params = list(self.model.parameters())
        with torch.no_grad():
            sums = torch.stack([torch.cat([p.detach().reshape(-1)[:4], p.detach().reshape(-1)[-4:]]).float().sum()
                                for p in params]).tolist()
        return tuple((p.data_ptr(), getattr(p, "_version", 0), v) for p, v in zip(params, sums, strict=True))

    def _check_weights(self) -> None:
        if not self.prefix_cache:
            return
        fp = self._weights_fingerprint()
        if fp != self._fingerprint:
            self.store.clear()
            self._fingerprint = fp

    # -- public API ---------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, prompts: list[list[int]], sampling: SamplingParams | None = None,
                 constraints: Sequence[CallConstraint | None] | None = None) -> list[Generation]:
        """Sample one continuation per prompt (token ids), all prompts batched; results in input order.

        ``constraints`` (one per prompt, ``None`` for a free row) guide each row's tokens through a
        :class:`tools.call_grammar.CallConstraint` (schema-guided call lists); a constraint is advanced in place.
        """
        sampling = sampling or SamplingParams()
        prompts = [list(map(int, p)) for p in prompts]
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        if not prompts:
            return []
        if constraints is not None and len(constraints) != len(prompts):
            raise ValueError(f"{len(constraints)} constraints for {len(prompts)} prompts")
        start = time.perf_counter()
        self._check_weights()
        gens = None if sampling.is_greedy else _row_generators(len(prompts), sampling.seed, sampling.row_seeds)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            # no_grad, not inference_mode: under inference_mode autocast does not cache the bf16 copies of the
            # weights, so every decode step re-casts all of them (measured: ~15% of a decode step).
            with torch.no_grad(), autocast_context(self.device, self.dtype), decode_attention(self.model):
                for lo in range(0, len(order), self.max_batch_size):
                    rows = order[lo:lo + self.max_batch_size]
                    outs = self._generate_batch([prompts[i] for i in rows], sampling,
                                                None if gens is None else [gens[i] for i in rows],
                                                None if constraints is None else [constraints[i] for i in rows])
                    for i, out in zip(rows, outs, strict=True):
                        results[i] = out
        finally:
            self.model.train(was_training)
        self.stats.calls += 1
        self.stats.seconds += time.perf_counter() - start
        return results  # type: ignore[return-value]

    # -- one batch ----------------------------------------------------------------------------------

    def _cache_is_plain(self, cache: Any) -> bool:
        """True for a cache of full-attention layers only (no sliding window, no quantisation): the layers
        whose KV can be stored, cropped and laid into a :class:`SlabLayer`."""
        from transformers.cache_utils import DynamicLayer

        return all(type(layer) in (DynamicLayer, SlabLayer) for layer in getattr(cache, "layers", [None]))

    def _new_cache(self) -> Any:
        return new_cache(self.model)

    def _prefill(self, prompts: list[list[int]], count_prompt: bool = True, room: int = 0
                 ) -> tuple[Any, torch.Tensor, torch.Tensor, list[int], list[int]]:
        """Run the prompts (minus any reused prefix) through the model.

        Each distinct prompt gets its own forward pass, without padding, continuing from its reused prefix
        KV when the store has one; copies of a prompt (a GRPO group) share that pass. A padded batch would
        spend compute on padding and, with an explicit mask, push attention onto SDPA's path that
        materialises every score (measured here: ~3.5x slower than the model's own throughput for 16
        ToolACE prompts). The rows are then laid into one left-padded cache for the batched decode:
        ``[left pad][prompt i]``, so every row's last column is its last prompt token; each layer is a
        :class:`SlabLayer` with ``room`` spare columns, so decoding writes in place. Returns ``(cache,
        mask [B, T], last logits [B, V], positions, used store keys)``; ``positions[i]`` is the position id
        of the next token row ``i`` will feed.
        """
        device = self.device
        distinct = {tuple(p): p for p in prompts}
        matches = {sig: self.store.match(p) if self.prefix_cache else (None, 0) for sig, p in distinct.items()}
        prefilled = self._prefill_shared_prefix(distinct, matches) if self.prefix_cache else 0
        self.stats.shared_prefix_tokens += prefilled
        used = {key for key, _ in matches.values() if key is not None}
        rows: dict[tuple[int, ...], tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]] = {}
        for signature, prompt in distinct.items():
            key, reused = matches[signature]
            rows[signature] = self._extend(None if key is None else self.store.get(key), reused, prompt)
            prefilled += len(prompt) - reused
        self.store.discard(used)

        b, width = len(prompts), max(len(p) for p in prompts)
        mask = torch.zeros((b, width), dtype=torch.long, device=device)
        for i, prompt in enumerate(prompts):
            mask[i, width - len(prompt):] = 1
        batch_cache = self._new_cache()
        slabs = self._cache_is_plain(batch_cache)  # other layer kinds (sliding windows) keep their own update
        first_kv = next(iter(rows.values()))[0]
        for layer, (k_ref, v_ref) in enumerate(first_kv):
            kv = SlabLayer.zeros(b, k_ref.shape[0], width, k_ref.shape[2], v_ref.shape[2], capacity=width + room,
                                 dtype=k_ref.dtype, device=k_ref.device)
            for i, prompt in enumerate(prompts):
                k, v = rows[tuple(prompt)][0][layer]
                kv.keys[i, :, width - len(prompt):] = k
                kv.values[i, :, width - len(prompt):] = v
            if slabs:
                batch_cache.layers[layer] = kv
            else:
                batch_cache.update(kv.keys, kv.values, layer)
        logits = torch.stack([rows[tuple(p)][1] for p in prompts])
        if count_prompt:
            self.stats.prompt_tokens += sum(len(p) for p in prompts)
            self.stats.reused_tokens += sum(matches[tuple(p)][1] for p in prompts)
        self.stats.prefilled_tokens += prefilled
        return batch_cache, mask, logits, [len(p) for p in prompts], list(used)

    def _extend(self, entry: _PrefixEntry | None, reused: int, tokens: list[int]
                ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """``extend_kv`` from ``entry``'s first ``reused`` tokens of KV (none when ``entry`` is None)."""
        return extend_kv(self.model, entry.kv if entry is not None else [], reused, tokens, self.device)

    def _prefill_shared_prefix(self, distinct: dict[tuple[int, ...], list[int]],
                               matches: dict[tuple[int, ...], tuple[int | None, int]]) -> int:
        """Prefill once the prefix that the call's distinct prompts share, into the store; tokens prefilled.

        First turns of different tasks share the system prompt's instructions (326 tokens of ~820 for
        ToolACE); without this each distinct prompt would compute them again. Done only when at least two
        prompts would otherwise recompute part of it. ``matches`` (each prompt's best store entry and its
        reusable length) is then pointed, in place, at the new entry, which reaches further for every prompt.
        """
        if len(distinct) < 2:
            return 0
        prompts = list(distinct.values())
        shared = min(_common_prefix_len(prompts[0], p) for p in prompts[1:])
        shared = min(shared, min(len(p) for p in prompts) - 1)  # every prompt keeps >= 1 token to feed
        if not self.store.keeps(shared) or sum(reused < shared for _, reused in matches.values()) < 2:
            return 0
        # An entry reaching past ``shared`` would serve every prompt that far, so here all reuse less.
        key, reused = max(matches.values(), key=lambda m: m[1])
        kv, _ = self._extend(None if key is None else self.store.get(key), reused, prompts[0][:shared])
        new_key = self.store.add(prompts[0][:shared], [(k.clone(), v.clone()) for k, v in kv])
        for signature in matches:
            matches[signature] = (new_key, shared)
        return shared - reused

    def _store_rows(self, cache: Any, mask: torch.Tensor, rows: list[int], tokens: list[list[int]]) -> None:
        """Copy the unpadded KV of batch rows ``rows`` into the prefix store (``tokens[j]`` = row's tokens)."""
        for j, i in enumerate(rows):
            keep = mask[i].bool()
            kv = [(layer.keys[i][:, keep], layer.values[i][:, keep]) for layer in cache.layers]  # copies
            if kv and kv[0][0].shape[1] != len(tokens[j]):  # bookkeeping bug: never store a misaligned cache
                raise RuntimeError(f"KV length {kv[0][0].shape[1]} != {len(tokens[j])} tokens")
            self.store.add(tokens[j], kv)

    def _generate_batch(self, prompts: list[list[int]], sampling: SamplingParams,
                        gens: list[torch.Generator] | None,
                        constraints: list[CallConstraint | None] | None = None) -> list[Generation]:
        device = self.device
        cache, mask, logits, positions, _ = self._prefill(prompts, room=sampling.max_new_tokens)
        plain = self._cache_is_plain(cache)
        keep_prefix = self.prefix_cache and plain
        stop_ids = sampling.stop_token_ids
        stop_strings = sampling.stop_strings
        window = 4 * max((len(s.encode()) for s in stop_strings), default=0) + 4
        n = len(prompts)
        out_tokens: list[list[int]] = [[] for _ in range(n)]
        out_logps: list[list[float]] = [[] for _ in range(n)]
        finish: list[FinishReason | None] = [None] * n
        active = list(range(n))  # batch row -> original row
        while True:
            u = None if gens is None else torch.stack([torch.rand((), generator=gens[r]) for r in active])
            tok, logp = choose_tokens(logits, sampling, u)
            if constraints is not None and any(constraints[r] is not None and finish[r] is None for r in active):
                tok, logp = self._guide(logits, tok, logp, active, constraints, finish, sampling, gens)
            tok_list, logp_list = tok.tolist(), logp.tolist()
            for j, r in enumerate(active):
                if finish[r] is not None:
                    continue
                t = tok_list[j]
                out_tokens[r].append(t)
                out_logps[r].append(logp_list[j])
                if t in self.eos_token_ids:
                    finish[r] = "eos"
                elif t in stop_ids:
                    finish[r] = "stop"
                elif stop_strings and any(s in self.tokenizer.decode(out_tokens[r][-window:],
                                                                     skip_special_tokens=False)
                                          for s in stop_strings):
                    finish[r] = "stop"
                elif len(out_tokens[r]) >= sampling.max_new_tokens:
                    finish[r] = "length"
            done_rows = [j for j, r in enumerate(active) if finish[r] is not None]
            if len(done_rows) == len(active):
                if keep_prefix:
                    self._store_rows(cache, mask, list(range(len(active))),
                                     [prompts[r] + out_tokens[r][:-1] for r in active])
                break
            if done_rows and (4 * len(done_rows) >= len(active)) and plain:
                cache, mask, active, tok, positions = self._compact(
                    cache, mask, active, tok, positions, finish, prompts, out_tokens, keep_prefix)
                self.stats.compactions += 1
            live = torch.tensor([finish[r] is None for r in active], dtype=torch.long, device=device)
            feed = torch.where(live.bool(), tok.to(device), torch.full_like(tok, self.pad_token_id).to(device))
            pos = torch.tensor(positions, dtype=torch.long, device=device)
            mask = torch.cat([mask, live.unsqueeze(1)], dim=1)
            out = self.model(input_ids=feed.unsqueeze(1), attention_mask=mask, position_ids=pos.unsqueeze(1),
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache, logits = out.past_key_values, out.logits[:, -1]
            positions = [p + int(x) for p, x in zip(positions, live.tolist(), strict=True)]
            self.stats.decode_steps += 1
        self.stats.generated_tokens += sum(len(t) for t in out_tokens)
        return [Generation(out_tokens[r], out_logps[r], finish[r]) for r in range(n)]  # type: ignore[arg-type]

    def _piece(self, token: int) -> str:
        """The text of one token id (cached; special tokens as text)."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.tokenizer.decode(
                [token], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return piece

    def _guide(self, logits: torch.Tensor, tok: torch.Tensor, logp: torch.Tensor, active: list[int],
               constraints: list[CallConstraint | None], finish: list, sampling: SamplingParams,
               gens: list[torch.Generator] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace each constrained row's token by the best (greedy) or a re-drawn (sampling) admissible one
        while the chosen one is rejected, then advance the row's constraint; log-probs stay the policy's."""
        t0 = time.perf_counter()
        ends = self.eos_token_ids | sampling.stop_token_ids
        tok, logp = tok.clone(), logp.clone()
        for j, r in enumerate(active):
            c = constraints[r]
            if c is None or finish[r] is not None:
                continue

            def admissible(t: int, c: CallConstraint = c) -> bool:
                return c.can_end() if t in ends else c.accepts(self._piece(t))

            t = int(tok[j])
            self.stats.guided_tokens += 1
            if not admissible(t):
                t = _admissible_token(logits[j], sampling, None if gens is None else gens[r], admissible)
                tok[j] = t
                logp[j] = torch.log_softmax(logits[j].float() / sampling.logprob_temperature, dim=-1)[t]
                self.stats.guided_replaced += 1
            if t not in ends:
                c.advance(self._piece(t))
        self.stats.guided_seconds += time.perf_counter() - t0
        return tok, logp

    def _compact(self, cache: Any, mask: torch.Tensor, active: list[int], tok: torch.Tensor,
                 positions: list[int], finish: list, prompts: list[list[int]], out_tokens: list[list[int]],
                 keep_prefix: bool) -> tuple[Any, torch.Tensor, list[int], torch.Tensor, list[int]]:
        """Drop finished rows from the batch (storing their KV first) and trim all-padding left columns."""
        done = [j for j, r in enumerate(active) if finish[r] is not None]
        if keep_prefix:
            self._store_rows(cache, mask, done, [prompts[active[j]] + out_tokens[active[j]][:-1] for j in done])
        keep = [j for j, r in enumerate(active) if finish[r] is None]
        idx = torch.tensor(keep, dtype=torch.long, device=mask.device)
        mask = mask.index_select(0, idx)
        first = int(mask.any(dim=0).long().argmax())  # first column any remaining row attends to
        for layer in cache.layers:  # only plain caches are compacted, and those are slabs
            layer.select(idx, first)
        mask = mask[:, first:]
        return (cache, mask, [active[j] for j in keep], tok.index_select(0, idx.to(tok.device)),
                [positions[j] for j in keep])
