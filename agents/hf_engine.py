"""The HF engine: batched token-in/token-out sampling with a transformers causal LM (``GenerationEngine``).

The contract (prompts as token ids, the log-prob convention, stop rules) is in ``agents.sampling``; the KV
reuse it relies on is in ``agents.kv_cache``; the decode-step kernels are in ``agents.decode_kernels``.
Besides plain sampling a row may be guided (a ``tools.call_grammar.CallConstraint``: schema-guided call
lists) or hinted (an ``agents.sampling.Hint``: a second stream decoded alongside it, whose mixture with
the row's own distribution chooses its tokens; Hinted Decoding).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from agents.decode_kernels import SlabLayer, decode_attention
from agents.kv_cache import PrefixEntry, PrefixStore, common_prefix_len, extend_kv, new_cache
from agents.models import autocast_context, resolve_dtype
from agents.sampling import (
    FinishReason,
    Generation,
    Hint,
    RepetitionDetector,
    SamplingParams,
    admissible_token,
    choose_tokens,
    row_generators,
    token_logprobs,
)
from tools.call_grammar import CallConstraint


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

    A hinted row's hint stream is one more row of the same batch (prefilled, fed, stored and dropped like
    any row); it draws no random numbers, so a row's tokens depend on its seed, prompt and hint only.

    In bf16 that holds up to rounding: KV taken from the store or from a shared prefix rounds differently
    from a prompt prefilled whole, so a greedy near-tie can split differently on a prompt seen before (the
    log-probs are as accurate either way; ``prefix_cache=False`` makes a prompt's output independent of
    earlier calls).
    """

    def __init__(self, model: Any, tokenizer: Any, dtype: str | None = None, max_batch_size: int = 64,
                 eos_token_ids: Sequence[int] | None = None, prefix_cache: bool = True,
                 max_cached_tokens: int = 32768):
        self.model = model
        self.tokenizer = tokenizer
        self.dtype = resolve_dtype(dtype or getattr(model.config, "chordgym_dtype", "auto"), self.device)
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

    @property
    def max_context(self) -> int | None:
        """Longest prompt + generation the model's positions cover (``max_position_embeddings``); the rollout
        ends an episode that outgrows it."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        return int(limit) if isinstance(limit, int) and limit > 0 else None

    def generate(self, prompts: list[list[int]], sampling: SamplingParams | None = None,
                 constraints: Sequence[CallConstraint | None] | None = None,
                 hints: Sequence[Hint | None] | None = None) -> list[Generation]:
        """Sample one continuation per prompt (token ids), all prompts batched; results in input order.

        ``constraints`` (one per prompt, ``None`` for a free row) guide each row's tokens through a
        :class:`tools.call_grammar.CallConstraint` (schema-guided call lists); a constraint is advanced in place.
        ``hints`` (one per prompt, ``None`` for a plain row) decode a second stream alongside a row and choose
        the row's tokens from the hint's mixture of the two (:class:`agents.sampling.Hint`; Hinted Decoding);
        a hint is advanced in place, and a hinted row counts as two rows of ``max_batch_size``.
        """
        sampling = sampling or SamplingParams()
        prompts = [list(map(int, p)) for p in prompts]
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        if not prompts:
            return []
        for name, per_row in (("constraints", constraints), ("hints", hints)):
            if per_row is not None and len(per_row) != len(prompts):
                raise ValueError(f"{len(per_row)} {name} for {len(prompts)} prompts")
        if hints is not None and any(h is not None and len(h.prompt) == 0 for h in hints):
            raise ValueError("every hint prompt needs at least one token")
        start = time.perf_counter()
        self._check_weights()
        gens = None if sampling.is_greedy else row_generators(len(prompts), sampling.seed, sampling.row_seeds)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            # no_grad, not inference_mode: under inference_mode autocast does not cache the bf16 copies of the
            # weights, so every decode step re-casts all of them (measured: ~15% of a decode step).
            with torch.no_grad(), autocast_context(self.device, self.dtype), decode_attention(self.model):
                for rows in self._chunks(order, hints):
                    outs = self._generate_batch([prompts[i] for i in rows], sampling,
                                                None if gens is None else [gens[i] for i in rows],
                                                None if constraints is None else [constraints[i] for i in rows],
                                                None if hints is None else [hints[i] for i in rows])
                    for i, out in zip(rows, outs, strict=True):
                        results[i] = out
        finally:
            self.model.train(was_training)
        self.stats.calls += 1
        self.stats.seconds += time.perf_counter() - start
        return results  # type: ignore[return-value]

    def _chunks(self, order: list[int], hints: Sequence[Hint | None] | None) -> Iterator[list[int]]:
        """Consecutive runs of ``order`` of at most ``max_batch_size`` model rows (a hinted row is two)."""
        chunk: list[int] = []
        size = 0
        for i in order:
            weight = 1 if hints is None or hints[i] is None else 2
            if chunk and size + weight > self.max_batch_size:
                yield chunk
                chunk, size = [], 0
            chunk.append(i)
            size += weight
        if chunk:
            yield chunk

    # -- one batch ----------------------------------------------------------------------------------

    def _cache_is_plain(self, cache: Any) -> bool:
        """True for a cache of full-attention layers only (no sliding window, no quantisation): the layers
        whose KV can be stored, cropped and laid into a :class:`SlabLayer`."""
        from transformers.cache_utils import DynamicLayer

        return all(type(layer) in (DynamicLayer, SlabLayer) for layer in getattr(cache, "layers", [None]))

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
        batch_cache = new_cache(self.model)
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

    def _extend(self, entry: PrefixEntry | None, reused: int, tokens: list[int]
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
        shared = min(common_prefix_len(prompts[0], p) for p in prompts[1:])
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
                        constraints: list[CallConstraint | None] | None = None,
                        hints: list[Hint | None] | None = None) -> list[Generation]:
        """Generate one batch. Slots ``0..n-1`` of the batch are the prompts' rows; each hint adds a slot
        after them that is fed the tokens its row samples until the hint is spent."""
        device = self.device
        n = len(prompts)
        hinted = [] if hints is None else [r for r in range(n) if hints[r] is not None]
        hint_slot = {r: n + k for k, r in enumerate(hinted)}
        row_of = {h: r for r, h in hint_slot.items()}
        slots = prompts + [list(map(int, hints[r].prompt)) for r in hinted]  # type: ignore[index, union-attr]
        cache, mask, logits, positions, _ = self._prefill(slots, room=sampling.max_new_tokens)
        plain = self._cache_is_plain(cache)
        keep_prefix = self.prefix_cache and plain
        detectors = [RepetitionDetector(sampling.repeat_window, sampling.repeat_count)
                     if sampling.stops_on_repetition else None for _ in range(n)]
        out_tokens: list[list[int]] = [[] for _ in slots]  # a hint slot's: the tokens fed to it, for the store
        out_logps: list[list[float]] = [[] for _ in range(n)]
        finish: list[FinishReason | None] = [None] * len(slots)
        active = list(range(len(slots)))  # batch row -> slot
        while True:
            if hinted:
                batch_row = {r: j for j, r in enumerate(active)}
                rows = [r for r in active if r < n]
                own = logits[[batch_row[r] for r in rows]]
                choice = self._hinted_logits(own, logits, rows, batch_row, hints, hint_slot, finish)  # type: ignore[arg-type]
            else:
                rows, own, choice = active, logits, logits
            u = None if gens is None else torch.stack([torch.rand((), generator=gens[r]) for r in rows])
            tok, logp = choose_tokens(choice, sampling, u)
            guided = constraints is not None and any(constraints[r] is not None and finish[r] is None for r in rows)
            if guided:
                tok = self._guide(choice, tok, rows, constraints, finish, sampling, gens)  # type: ignore[arg-type]
            if guided or choice is not own:
                logp = token_logprobs(own, tok, sampling)  # the row's own log-prob, whatever chose the token
            tok_list, logp_list = tok.tolist(), logp.tolist()
            for j, r in enumerate(rows):
                if finish[r] is not None:
                    continue
                t = tok_list[j]
                out_tokens[r].append(t)
                out_logps[r].append(logp_list[j])
                finish[r] = self._finish_reason(out_tokens[r], sampling, detectors[r])
                h = hint_slot.get(r)
                if h is not None and finish[h] is None:
                    out_tokens[h].append(t)
                    if finish[r] is not None or not hints[r].advance(self._text(out_tokens[r])):  # type: ignore[index, union-attr]
                        finish[h] = "stop"
            if hinted:
                chosen = dict(zip(rows, tok_list, strict=True))
                tok = torch.tensor([chosen[row_of.get(r, r)] for r in active], dtype=torch.long)
            done_rows = [j for j, r in enumerate(active) if finish[r] is not None]
            if len(done_rows) == len(active):
                if keep_prefix:
                    self._store_rows(cache, mask, list(range(len(active))),
                                     [slots[r] + out_tokens[r][:-1] for r in active])
                break
            if done_rows and (4 * len(done_rows) >= len(active)) and plain:
                cache, mask, active, tok, positions = self._compact(
                    cache, mask, active, tok, positions, finish, slots, out_tokens, keep_prefix)
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
        self.stats.generated_tokens += sum(len(out_tokens[r]) for r in range(n))
        return [Generation(out_tokens[r], out_logps[r], finish[r]) for r in range(n)]  # type: ignore[arg-type]

    def _finish_reason(self, tokens: list[int], sampling: SamplingParams,
                       detector: RepetitionDetector | None) -> FinishReason | None:
        """Why a row ends after its newest token ``tokens[-1]``, or None while it goes on."""
        t = tokens[-1]
        if t in self.eos_token_ids:
            return "eos"
        if t in sampling.stop_token_ids:
            return "stop"
        if sampling.stop_strings:
            window = 4 * max(len(s.encode()) for s in sampling.stop_strings) + 4
            tail = self.tokenizer.decode(tokens[-window:], skip_special_tokens=False)
            if any(s in tail for s in sampling.stop_strings):
                return "stop"
        if detector is not None and detector.push(t):
            return "repetition"
        if len(tokens) >= sampling.max_new_tokens:
            return "length"
        return None

    def _text(self, tokens: list[int]) -> str:
        """The exact text of generated tokens (special tokens kept, no clean-up of spaces)."""
        return self.tokenizer.decode(tokens, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _hinted_logits(self, own: torch.Tensor, logits: torch.Tensor, rows: list[int], batch_row: dict[int, int],
                       hints: list[Hint | None], hint_slot: dict[int, int],
                       finish: list[FinishReason | None]) -> torch.Tensor:
        """The scores each row's token is chosen from: its hint's mixture of the hint stream's and its own
        log-probs while the hint stream still decodes, its own logits otherwise."""
        choice = own.float().clone()
        for j, r in enumerate(rows):
            h = hint_slot.get(r)
            if h is None or finish[h] is not None or finish[r] is not None:
                continue
            choice[j] = hints[r].scores(torch.log_softmax(logits[batch_row[h]].float(), dim=-1),  # type: ignore[union-attr]
                                        torch.log_softmax(choice[j], dim=-1))
        return choice

    def _piece(self, token: int) -> str:
        """The text of one token id (cached; special tokens as text)."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.tokenizer.decode(
                [token], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return piece

    def _guide(self, logits: torch.Tensor, tok: torch.Tensor, rows: list[int],
               constraints: list[CallConstraint | None], finish: list, sampling: SamplingParams,
               gens: list[torch.Generator] | None) -> torch.Tensor:
        """Replace each constrained row's token by the best (greedy) or a re-drawn (sampling) admissible one
        while the chosen one is rejected, then advance the row's constraint. ``logits[j]`` and ``tok[j]``
        belong to slot ``rows[j]``."""
        t0 = time.perf_counter()
        ends = self.eos_token_ids | sampling.stop_token_ids
        tok = tok.clone()
        for j, r in enumerate(rows):
            c = constraints[r]
            if c is None or finish[r] is not None:
                continue

            def admissible(t: int, c: CallConstraint = c) -> bool:
                return c.can_end() if t in ends else c.accepts(self._piece(t))

            t = int(tok[j])
            self.stats.guided_tokens += 1
            if not admissible(t):
                t = admissible_token(logits[j], sampling, None if gens is None else gens[r], admissible)
                tok[j] = t
                self.stats.guided_replaced += 1
            if t not in ends:
                c.advance(self._piece(t))
        self.stats.guided_seconds += time.perf_counter() - t0
        return tok

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
