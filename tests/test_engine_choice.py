"""agents.engines: the rollout section, and which engine a run gets (vLLM where installed, HF where needed)."""

from __future__ import annotations

import json

import pytest

from agents import engines
from agents.engines import EngineConfig, EngineConfigError, resolve_engine
from agents.vllm_engine import AUTO_FALLBACK_LEN, auto_max_model_len


@pytest.mark.parametrize(("values", "message"), [
    ({"engine": "trt"}, "rollout.engine must be one of auto, vllm, hf, got 'trt'"),
    ({"kv_cache_gib": 0}, "rollout.kv_cache_gib must be a number > 0, got 0"),
    ({"max_model_len": "long"}, "rollout.max_model_len must be auto or an integer >= 1, got 'long'"),
    ({"engnie": "hf"}, "rollout.engnie is not a rollout setting"),
])
def test_a_bad_rollout_setting_is_named(values: dict, message: str) -> None:
    with pytest.raises(EngineConfigError) as err:
        EngineConfig.from_mapping(values)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("installed", [True, False])
def test_auto_takes_vllm_where_installed_and_hf_where_the_run_needs_it(monkeypatch, installed: bool) -> None:
    monkeypatch.setattr(engines, "vllm_installed", lambda: installed)
    auto = EngineConfig()
    assert resolve_engine(auto, "smollm2-135m-instruct") == ("vllm" if installed else "hf")
    assert resolve_engine(auto, "smollm2-135m-instruct", {"guided_calls=auto": True}) == "hf"
    assert resolve_engine(auto, "tiny-random") == "hf"  # vLLM's CPU kernels refuse its head size
    assert resolve_engine(EngineConfig(engine="hf"), "smollm2-135m-instruct") == "hf"


def test_an_explicit_vllm_is_refused_naming_what_it_cannot_serve(monkeypatch) -> None:
    vllm = EngineConfig(engine="vllm")
    monkeypatch.setattr(engines, "vllm_installed", lambda: False)
    with pytest.raises(EngineConfigError, match="rollout.engine=vllm: vLLM is not installed"):
        resolve_engine(vllm, "smollm2-135m-instruct")
    monkeypatch.setattr(engines, "vllm_installed", lambda: True)
    assert resolve_engine(vllm, "smollm2-135m-instruct") == "vllm"
    with pytest.raises(EngineConfigError, match="cannot serve trainer.rollout_guided_calls=auto"):
        resolve_engine(vllm, "smollm2-135m-instruct", {"trainer.rollout_guided_calls=auto": True})
    with pytest.raises(EngineConfigError, match="cannot serve model.spec=tiny-random"):
        resolve_engine(vllm, "tiny-random")


def _model_dir(tmp_path, **config) -> str:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


SMOLLM2 = {"max_position_embeddings": 8192, "num_hidden_layers": 30, "num_attention_heads": 9,
           "num_key_value_heads": 3, "hidden_size": 576}  # head size 64: 46,080 KV bytes a token in fp32


@pytest.mark.parametrize(("config", "dtype", "gib", "expected"), [
    (SMOLLM2, "fp32", 1.0, 8192),                           # 23,301 tokens fit: the model's context
    (SMOLLM2, "fp32", 0.125, 2560),                         # 2,912 fit, less a block, down to 256
    (SMOLLM2, "bf16", 0.125, 5376),                         # half the bytes a token
    ({"text_config": SMOLLM2}, "fp32", 0.125, 2560),        # a multimodal config's language model
    ({**SMOLLM2, "head_dim": 128}, "fp32", 0.125, 1024),    # an explicit head size wins over hidden / heads
    ({**SMOLLM2, "num_key_value_heads": None}, "fp32", 0.125, 512),  # no GQA entry: one KV head per head
])
def test_auto_max_model_len_is_the_context_the_kv_cache_holds(tmp_path, config, dtype, gib, expected) -> None:
    assert auto_max_model_len(_model_dir(tmp_path, **config), dtype, int(gib * (1 << 30))) == expected


def test_auto_max_model_len_falls_back_or_names_a_cache_too_small(tmp_path) -> None:
    assert auto_max_model_len("Qwen/Qwen2.5-7B-Instruct", "bf16", 1 << 30) == AUTO_FALLBACK_LEN  # no local config
    assert auto_max_model_len(_model_dir(tmp_path, hidden_size=576), "fp32", 1 << 30) == AUTO_FALLBACK_LEN
    with pytest.raises(ValueError, match=r"rollout.kv_cache_gib=0.001 holds 23 tokens .* at least 512"):
        auto_max_model_len(_model_dir(tmp_path, **SMOLLM2), "fp32", int(0.001 * (1 << 30)))


def test_auto_is_the_default_and_is_accepted() -> None:
    assert EngineConfig().max_model_len == "auto" == EngineConfig.from_mapping({"max_model_len": "auto"}).max_model_len
    assert EngineConfig.from_mapping({"max_model_len": 4096}).max_model_len == 4096
