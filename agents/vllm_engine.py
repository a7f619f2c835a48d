"""vLLM generation engine (optional extra, GPU): the same token-in/token-out contract as ``HFEngine``.

Written against vLLM's documented offline API as of the V1 engine (vLLM 0.10.2 - 0.11.x):
``vllm.LLM(model=..., enable_prefix_caching=True, logprobs_mode="processed_logprobs")``,
``vllm.SamplingParams(logprobs=0, ...)`` (0 = only the sampled token's log-prob),
``LLM.generate([TokensPrompt(prompt_token_ids=...)], sampling_params)`` and ``LLM.reset_prefix_cache()``.

It cannot run on the development machine (no GPU, and vLLM has no CPU wheel on PyPI); only the
missing-extra error is tested there. vLLM is imported inside the class, never at module import.

Log-probs: ``logprobs_mode="processed_logprobs"`` makes vLLM return ``log_softmax(logits / T)`` of the
sampled token, the same convention as ``HFEngine`` when ``top_p == 1``. With ``top_p < 1`` vLLM's processed
log-probs are taken after the top-p mask (renormalised over the kept set), which differs from
``HFEngine``; a warning says so once.

Weights: after each optimizer step call ``update_weights(model)``. It streams ``model.named_parameters()``
into the vLLM model's ``load_weights`` (the same path TRL's colocated mode uses), in-process when vLLM runs
its engine core in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set by default here), else through
``LLM.collective_rpc``; then it resets vLLM's prefix cache, whose KV came from the old weights.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from agents.sampling import Generation, SamplingParams

_INSTALL = "pip install chordgym[vllm]  (or: pip install 'vllm>=0.10.2')"


def _import_vllm() -> Any:
    try:
        import vllm  # noqa: PLC0415  (optional extra, imported lazily)
    except ImportError as e:
        raise ImportError(
            f"VLLMEngine needs the optional extra 'vllm', which is not installed ({e}). Fix: {_INSTALL}. "
            "vLLM needs a CUDA GPU; on CPU use agents.HFEngine."
        ) from e
    return vllm


class VLLMEngine:
    """Batched generation with vLLM; prefix caching reuses each conversation's KV across turns."""

    def __init__(self, model_path: str, tokenizer: Any | None = None, dtype: str = "bf16",
                 gpu_memory_utilization: float = 0.5, max_model_len: int | None = None, seed: int = 0,
                 enable_prefix_caching: bool = True, **llm_kwargs: Any):
        vllm = _import_vllm()
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: direct weight loading
        self._vllm = vllm
        self.model_path = str(model_path)
        kwargs: dict[str, Any] = {
            "model": self.model_path,
            "dtype": "bfloat16" if dtype in ("bf16", "bfloat16") else "float32",
            "gpu_memory_utilization": gpu_memory_utilization,
            "enable_prefix_caching": enable_prefix_caching,
            "seed": seed,
            "logprobs_mode": "processed_logprobs",
            **llm_kwargs,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = tokenizer if tokenizer is not None else self.llm.get_tokenizer()
        eos = self.tokenizer.eos_token_id
        self.eos_token_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
        self._warned_top_p = False

    def _vllm_params(self, sampling: SamplingParams, row: int) -> Any:
        if sampling.top_p < 1.0 and not self._warned_top_p:
            warnings.warn("VLLMEngine: with top_p < 1 vLLM's log-probs are renormalised over the top-p set; "
                          "HFEngine records them before truncation", stacklevel=3)
            self._warned_top_p = True
        greedy = sampling.is_greedy
        return self._vllm.SamplingParams(
            n=1,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop_strings) or None,
            stop_token_ids=sorted(sampling.stop_token_ids) or None,
            logprobs=0,
            seed=None if sampling.seed is None else sampling.seed * 1_000_003 + row,
            skip_special_tokens=False,
            spaces_between_special_tokens=False,
        )

    def _finish_reason(self, completion: Any) -> str:
        if completion.finish_reason == "length":
            return "length"
        reason = completion.stop_reason  # None: EOS; int: a stop token id; str: a stop string
        if reason is None or (isinstance(reason, int) and reason in self.eos_token_ids):
            return "eos"
        return "stop"

    def generate(self, prompts: list[list[int]], sampling: SamplingParams | None = None,
                 constraints: Sequence[Any] | None = None) -> list[Generation]:
        """One generation per prompt (token ids), in order; see ``agents.sampling`` for the contract."""
        if constraints is not None and any(c is not None for c in constraints):
            raise ValueError("guided call decoding (tools.call_grammar) runs in agents.HFEngine only; "
                             "use that engine or guided_calls=none")
        sampling = sampling or SamplingParams()
        if sampling.stops_on_repetition:
            raise ValueError("the repetition stop (SamplingParams.repeat_window/repeat_count) runs in "
                             "agents.HFEngine only")
        from vllm.inputs import TokensPrompt  # noqa: PLC0415

        requests = [TokensPrompt(prompt_token_ids=list(map(int, p))) for p in prompts]
        params = [self._vllm_params(sampling, i) for i in range(len(prompts))]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        results = []
        for out in outputs:
            completion = out.outputs[0]
            token_ids = list(completion.token_ids)
            logprobs = [float(step[t].logprob) for step, t in zip(completion.logprobs, token_ids, strict=True)]
            results.append(Generation(token_ids, logprobs, self._finish_reason(completion)))  # type: ignore[arg-type]
        return results

    def update_weights(self, model: Any) -> None:
        """Copy ``model``'s parameters into vLLM and drop vLLM's now-stale prefix cache."""
        weights = [(name, p.detach()) for name, p in model.named_parameters()]
        self.load_weights(weights)
        self.llm.reset_prefix_cache()

    def load_weights(self, weights: Iterable[tuple[str, Any]]) -> None:
        """Load ``(name, tensor)`` pairs (HF names) into the vLLM model."""
        weights = list(weights)
        engine = getattr(self.llm, "llm_engine", None)
        executor = getattr(engine, "model_executor", None)
        worker = getattr(executor, "driver_worker", None)
        if worker is not None:  # engine core in this process
            runner = getattr(worker, "model_runner", None) or worker.worker.model_runner
            runner.model.load_weights(weights)
            return

        def _load(worker_self: Any, items: list[tuple[str, Any]]) -> None:
            worker_self.model_runner.model.load_weights(items)

        self.llm.collective_rpc(_load, args=(weights,))
