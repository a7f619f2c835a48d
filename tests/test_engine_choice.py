"""agents.engines: the rollout section, and which engine a run gets (vLLM where installed, HF where needed)."""

from __future__ import annotations

import pytest

from agents import engines
from agents.engines import EngineConfig, EngineConfigError, resolve_engine


@pytest.mark.parametrize(("values", "message"), [
    ({"engine": "trt"}, "rollout.engine must be one of auto, vllm, hf, got 'trt'"),
    ({"kv_cache_gib": 0}, "rollout.kv_cache_gib must be a number > 0, got 0"),
    ({"max_model_len": "long"}, "rollout.max_model_len must be an integer >= 1, got 'long'"),
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


def test_several_training_ranks_take_the_hf_engine(monkeypatch) -> None:
    """vLLM's in-process engine joins the trainer's process group and broke DeepSpeed's all-reduce on 2 ranks:
    auto takes HF there, and an explicit vllm says why."""
    monkeypatch.setattr(engines, "vllm_installed", lambda: True)
    assert resolve_engine(EngineConfig(), "smollm2-135m-instruct", world_size=2) == "hf"
    assert resolve_engine(EngineConfig(), "smollm2-135m-instruct", world_size=1) == "vllm"
    with pytest.raises(EngineConfigError, match="cannot serve 2 training ranks"):
        resolve_engine(EngineConfig(engine="vllm"), "smollm2-135m-instruct", world_size=2)


def test_a_saved_model_whose_head_size_vllm_cpu_lacks_takes_hf(monkeypatch, tmp_path) -> None:
    """A checkpoint of tiny-random (head size 16) evaluated by path: auto takes HF, vllm names the head size."""
    import json

    monkeypatch.setattr(engines, "vllm_installed", lambda: True)
    monkeypatch.setattr(engines, "_cuda_visible", lambda: False)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 4}))
    assert resolve_engine(EngineConfig(), str(tmp_path)) == "hf"
    with pytest.raises(EngineConfigError, match="head size 16"):
        resolve_engine(EngineConfig(engine="vllm"), str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 576, "num_attention_heads": 9}))  # SmolLM2: 64
    assert resolve_engine(EngineConfig(), str(tmp_path)) == "vllm"
