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
