"""algorithms.config.TrainerConfig: the trainer section typed and checked once, each bad key named."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from algorithms.config import TrainConfigError, TrainerConfig

TRAIN_YAML = Path(__file__).resolve().parents[1] / "configs" / "train.yaml"


@pytest.fixture()
def section() -> dict:
    return OmegaConf.to_container(OmegaConf.load(TRAIN_YAML).trainer)


def test_the_shipped_section_loads_with_its_types(section: dict) -> None:
    t = TrainerConfig.from_mapping(section)
    assert t.total_steps == section["total_steps"] and isinstance(t.lr, float)
    assert t.adam_betas == tuple(section["adam_betas"]) and t.max_turns is None
    assert t.lr_schedule_settings == {"lr_schedule": section["lr_schedule"], "warmup_steps": section["warmup_steps"],
                                      "min_lr_ratio": section["min_lr_ratio"]}


def test_optional_keys_take_their_defaults(section: dict) -> None:
    for key in ("prompt_grad", "resume_fallback", "rollout_guided_calls", "eval_guided_calls", "expert_data",
                "padding_free"):
        section.pop(key)
    t = TrainerConfig.from_mapping(section)
    assert (t.prompt_grad, t.resume_fallback, t.rollout_guided_calls, t.expert_data) == ("full", True, "none", None)
    assert t.padding_free is True  # packed: make train 0.88x the wall time of padded (docs/benchmarks.md)


@pytest.mark.parametrize(("change", "message"), [
    ({"lr": "fast"}, "trainer.lr must be a number, got 'fast'"),
    ({"total_steps": 2.5}, "trainer.total_steps must be an integer, got 2.5"),
    ({"total_steps": True}, "trainer.total_steps must be an integer, got True"),
    ({"max_turns": "four"}, "trainer.max_turns must be an integer or null, got 'four'"),
    ({"eval_size": None}, "trainer.eval_size must be an integer, got None"),
    ({"adam_betas": [0.9]}, "trainer.adam_betas must be a list of two numbers, got [0.9]"),
    ({"progress": "yes"}, "trainer.progress must be true or false, got 'yes'"),
    ({"resume_fallback": "yes"}, "trainer.resume_fallback must be true or false, got 'yes'"),
    ({"padding_free": 1}, "trainer.padding_free must be true or false, got 1"),
    ({"micro_batch_size": 0}, "trainer.micro_batch_size must be >= 1, got 0"),
    ({"top_p": 1.5}, "trainer.top_p must be in (0, 1], got 1.5"),
    ({"warmup_steps": 99}, "trainer.warmup_steps"),
    ({"prompt_grad": "none"}, "trainer.prompt_grad must be full or detached, got 'none'"),
    ({"lr_rate": 0.1}, "trainer.lr_rate is not a trainer setting"),
])
def test_a_bad_key_is_named_in_one_line(section: dict, change: dict, message: str) -> None:
    with pytest.raises(TrainConfigError) as err:
        TrainerConfig.from_mapping({**section, **change})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_missing_required_key_is_named(section: dict) -> None:
    section.pop("grad_clip")
    with pytest.raises(TrainConfigError, match="trainer.grad_clip is missing"):
        TrainerConfig.from_mapping(section)


def test_zero3_always_packs_micro_batches_and_refuses_detached_prompts() -> None:
    """ZeRO-3 gathers each layer's parameters in every forward pass, so every rank must run the same number of
    passes: one packed pass per micro-batch (the padded path runs long rows one at a time, a number that
    depends on the rank's rows)."""
    from hydra import compose, initialize_config_dir

    from algorithms.chord import AlgorithmConfig
    from algorithms.config import packs_micro_batches, validate_train_config, zero_stage

    with initialize_config_dir(config_dir=str(TRAIN_YAML.parent), version_base=None):
        zero2 = compose("train", overrides=["deepspeed=zero2", "trainer.padding_free=false"])
        zero3 = compose("train", overrides=["deepspeed=zero3", "trainer.padding_free=false"])
        detached = compose("train", overrides=["deepspeed=zero3", "trainer.prompt_grad=detached"])
        detached2 = compose("train", overrides=["deepspeed=zero2", "trainer.prompt_grad=detached"])
    algo = AlgorithmConfig.from_dict(OmegaConf.to_container(zero3.algorithm, resolve=True))
    assert (zero_stage(zero2), zero_stage(zero3)) == (2, 3)
    t2, t3 = validate_train_config(zero2, algo, 1), validate_train_config(zero3, algo, 1)
    assert not t3.padding_free and packs_micro_batches(zero3, t3)
    assert not packs_micro_batches(zero2, t2)
    # padding_free is on by default, but detached prompts run row by row against their cached keys/values
    assert not packs_micro_batches(detached2, validate_train_config(detached2, algo, 1))
    with pytest.raises(TrainConfigError, match="trainer.prompt_grad=detached does not combine with deepspeed=zero3"):
        validate_train_config(detached, algo, 1)
