"""CHORD: mu schedules, the combined loss and its per-term normalisation, presets and their YAML files."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from agents import Trajectory, collate, load_model
from algorithms.chord import (
    AlgorithmConfig,
    MuSchedule,
    StepContext,
    adaptive_mu,
    chord_step,
    expert_micro_loss,
    on_policy_micro_loss,
    preset,
    preset_names,
    term_weights,
)
from algorithms.losses import clipped_policy_loss
from algorithms.sft import sft_loss

PRESETS = {name: preset(name) for name in preset_names()}

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "algorithm"


def test_mu_schedule_warmup_cosine_valley():
    s = MuSchedule(peak=0.6, valley=0.1, warmup_steps=10, decay_steps=20)
    assert s(1) == pytest.approx(0.06)  # 1 / 10 * 0.6
    assert s(5) == pytest.approx(0.3)  # 5 / 10 * 0.6
    assert s(10) == pytest.approx(0.6)  # step W: cos(0) = 1 -> 0.1 + 0.5 * 0.5 * 2 = peak
    assert s(20) == pytest.approx(0.35)  # W + D/2: cos(pi/2) = 0 -> 0.1 + 0.5 * 0.5 = 0.35
    assert s(30) == pytest.approx(0.1)  # W + D: valley
    assert s(1000) == pytest.approx(0.1)


def test_mu_schedule_tool_use_reference():
    s = preset("chord_mu").mu_schedule  # W = 0, D = 20, peak 0.6, valley 0
    # step 1: 0.6 * 0.5 * (1 + cos(pi / 20)) = 0.3 * (1 + 0.987688) = 0.596307
    assert s(1) == pytest.approx(0.596307, abs=1e-6)
    assert s(10) == pytest.approx(0.3)  # 0.3 * (1 + cos(pi/2))
    assert s(20) == 0.0 and s(21) == 0.0


def test_mu_schedule_constant():
    s = MuSchedule(peak=0.9, valley=0.1)  # W = D = 0: constant valley
    assert [s(k) for k in (0, 1, 50)] == [0.1, 0.1, 0.1]
    # warm-up only (D = 0): ramp to peak, then straight to valley at step W
    s2 = MuSchedule(peak=0.5, valley=0.0, warmup_steps=4, decay_steps=0)
    assert [s2(k) for k in (1, 2, 3, 4, 5)] == pytest.approx([0.125, 0.25, 0.375, 0.0, 0.0])


def test_adaptive_mu():
    assert adaptive_mu(0.2) == pytest.approx(0.3)  # 0.5 - 0.2
    assert adaptive_mu(0.7) == 0.0  # max(0, -0.2)
    assert adaptive_mu(0.0, tau=0.8) == pytest.approx(0.8)
    assert preset("chord_adaptive").mu(5, mean_reward=0.1) == pytest.approx(0.4)


def test_term_weights():
    assert term_weights(0.25) == (0.75, 0.25)
    assert term_weights(0.0) == (1.0, 0.0) and term_weights(1.0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        term_weights(1.5)


def test_each_term_averaged_over_its_own_tokens():
    # on-policy batch: 2 sequences, expert batch: 1 sequence of 3 tokens, then the same expert row twice.
    # token-mean over each term's own tokens: duplicating identical expert samples leaves L_sft unchanged,
    # so the total is unchanged: mu is the only relative weight.
    torch.manual_seed(0)
    logp = -torch.rand(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    l_grpo, _ = clipped_policy_loss(logp, logp, torch.tensor([1.0, -1.0]), mask)
    expert_logp = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    expert_mask = torch.ones(1, 3)
    l_sft_1, _ = sft_loss(expert_logp, expert_mask, "phi")
    l_sft_2, _ = sft_loss(expert_logp.repeat(2, 1), expert_mask.repeat(2, 1), "phi")
    assert l_sft_1.item() == pytest.approx(l_sft_2.item())
    w_grpo, w_sft = term_weights(0.1)
    assert (w_grpo * l_grpo + w_sft * l_sft_1).item() == pytest.approx((w_grpo * l_grpo + w_sft * l_sft_2).item())
    # hand value: L_grpo = -(1 + 1 + 1 - 1 - 1) / 5 = -0.2; L_sft(phi) = 0.146760 (see test_sft_weights)
    # total = 0.9 * -0.2 + 0.1 * 0.146760 = -0.165324
    assert (w_grpo * l_grpo + w_sft * l_sft_1).item() == pytest.approx(-0.165324, abs=1e-5)


def test_sft_then_grpo_switch():
    cfg = preset("sft_then_grpo")
    assert [cfg.mu(s, total_steps=100) for s in (1, 50, 51, 100)] == [1.0, 1.0, 0.0, 0.0]
    assert preset("sft_then_grpo", sft_steps=10).mu(11) == 0.0
    with pytest.raises(ValueError):
        cfg.mu(1)  # sft_steps None needs total_steps
    assert cfg.uses_rollouts and cfg.uses_expert


def test_presets():
    assert set(PRESETS) >= {"sft", "grpo", "sft_then_grpo", "chord_mu", "chord_phi", "idft"}
    sft, grpo, phi, idft = preset("sft"), preset("grpo"), preset("chord_phi"), preset("idft")
    assert sft.mu(1) == sft.mu(100) == 1.0 and not sft.uses_rollouts and sft.uses_expert
    assert grpo.mu(1) == 0.0 and grpo.uses_rollouts and not grpo.uses_expert
    assert phi.mu(1) == phi.mu(99) == pytest.approx(0.1) and phi.sft_weighting == "phi"
    assert idft.sft_weighting == "idft" and idft.needs_entropy and not sft.needs_entropy
    assert preset("chord_idft").sft_weighting == "idft" and preset("chord_idft").mu(3) == pytest.approx(0.1)
    # CHORD's runs: no KL, no entropy bonus, eps 0.2, token-mean
    for cfg in PRESETS.values():
        assert (cfg.kl_coef, cfg.entropy_coef, cfg.eps_low, cfg.eps_high) == (0.0, 0.0, 0.2, 0.2)
        assert cfg.loss_agg == "token-mean" and cfg.name in PRESETS
    # idft lambda: total 100 -> 0 until step 20, 0.5 at 25
    assert idft.idft_params(10, 100).lam == 0.0 and idft.idft_params(25, 100).lam == pytest.approx(0.5)
    with pytest.raises(KeyError):
        preset("luffy")
    with pytest.raises(ValueError):
        AlgorithmConfig(loss_agg="sum")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_states_only_what_differs_from_the_base(name):
    values = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    assert values.pop("defaults") == ["base", "_self_"]
    base = AlgorithmConfig().to_dict()
    assert values["name"] == name
    assert all(base[k] != v for k, v in values.items() if k != "name"), "a key that repeats the base"


def test_hydra_composes_each_algorithm_from_the_base():
    """``algorithm=<name>`` on the command line gives the preset with ``train.yaml``'s own ``algorithm:``
    settings on top (group size, loss aggregation), and any field can be overridden."""
    import yaml
    from hydra import compose, initialize_config_dir

    import algorithms.config  # noqa: F401 - registers algorithm/base

    train_settings = yaml.safe_load((CONFIG_DIR.parent / "train.yaml").read_text())["algorithm"]
    assert train_settings == {"group_size": 4, "loss_agg": "seq-mean-token-mean"}
    with initialize_config_dir(config_dir=str(CONFIG_DIR.parent), version_base="1.3"):
        for name in PRESETS:
            cfg = compose("train", overrides=[f"algorithm={name}", "algorithm.kl_coef=0.5"])
            assert AlgorithmConfig.from_dict(dict(cfg.algorithm)) == preset(name, kl_coef=0.5, **train_settings)


def test_needs_rollouts_follows_the_mu_rule():
    assert not preset("sft").needs_rollouts(1, 10)
    assert preset("grpo").needs_rollouts(1, 10) and preset("chord_mu").needs_rollouts(1, 10)
    switch = preset("sft_then_grpo")
    assert [switch.needs_rollouts(s, 10) for s in (5, 6)] == [False, True]
    assert preset("chord_adaptive").needs_rollouts(1, 10)  # mu depends on the batch's rewards


class _Engine:
    """The DeepSpeed engine calls ``chord_step`` makes, on a plain module: backward accumulates, step counts."""

    def __init__(self, model):
        self.module = model
        self.steps = 0

    def __call__(self, **kwargs):
        return self.module(**kwargs)

    def backward(self, loss, scale_wrt_gas=True):
        loss.backward()

    def step(self):
        self.steps += 1


def _trajectories(specs, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for k, (n, first, reward) in enumerate(specs):
        ids = torch.randint(5, 2000, (n,), generator=gen).tolist()
        mask = [0] * first + [1] * (n - first)
        out.append(Trajectory(ids, mask, [-1.0 if m else 0.0 for m in mask], reward=reward, group_id=k // 2))
    return out


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()]).clone()


@pytest.mark.parametrize("micro_batch_size", [1, 16])
def test_chord_step_back_propagates_the_weighted_sum_of_the_two_terms(micro_batch_size):
    """The gradient ``chord_step`` leaves is that of (1 - mu) L_grpo + mu L_sft on the whole batch, however
    it is cut into micro-batches; the loss metrics are the terms' values."""
    from algorithms.advantages import group_advantages

    model, _ = load_model("tiny-random", dtype="fp32", seed=3)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    algo, mu = preset("chord_phi"), 0.3
    on_policy = _trajectories([(20, 8, 1.0), (18, 9, 0.0), (22, 10, 0.0), (16, 6, 0.0)])
    expert = _trajectories([(24, 12, 0.0), (19, 7, 0.0), (15, 5, 0.0)], seed=1)
    engine = _Engine(model)
    ctx = StepContext(engine=engine, micro_batch_size=micro_batch_size, micro_batch_tokens=4096, temperature=1.0,
                      use_sampler_logprobs=False, dtype="fp32")
    result = chord_step(ctx, algo, on_policy, expert, mu, step=1, total_steps=10)
    got = _grads(model)
    assert engine.steps == 1 and result.stepped

    model.zero_grad()
    adv = group_advantages(torch.tensor([t.reward for t in on_policy]), [t.group_id for t in on_policy])
    grpo = on_policy_micro_loss(model, collate(on_policy, pad_token_id=0), adv, algo, 1.0, False, None).loss
    sft = expert_micro_loss(model, collate(expert, pad_token_id=0), algo, 1, 10, None).loss
    ((1 - mu) * grpo + mu * sft).backward()
    assert torch.allclose(got, _grads(model), atol=1e-6)
    assert result.metrics["loss/grpo"] == pytest.approx(grpo.item(), abs=1e-6)
    assert result.metrics["loss/sft"] == pytest.approx(sft.item(), rel=1e-5)
    assert result.metrics["loss/total"] == pytest.approx(((1 - mu) * grpo + mu * sft).item(), abs=1e-6)


def test_chord_step_skips_the_optimizer_when_nothing_carries_a_gradient():
    """All groups tied (zero advantage) and mu = 0: no backward, and no optimizer step (Adam's momentum
    would still move the weights); a term whose weight is 0 is not even run."""
    model, _ = load_model("tiny-random", dtype="fp32", seed=3)
    engine = _Engine(model)
    ctx = StepContext(engine=engine, micro_batch_size=4, micro_batch_tokens=4096, temperature=1.0,
                      use_sampler_logprobs=False, dtype="fp32")
    tied = _trajectories([(20, 8, 1.0), (18, 9, 1.0)])
    nan_expert = [SimpleNamespace(loss_mask=None)]  # would fail if the mu = 0 term were run
    result = chord_step(ctx, preset("grpo"), tied, nan_expert, 0.0, step=1, total_steps=10)
    assert not result.stepped and engine.steps == 0
    assert result.metrics["grpo/zero_adv_share"] == 1.0 and result.metrics["loss/total"] == 0.0


def test_chord_step_on_rollouts_with_no_trainable_token_is_a_zero_step():
    """Every rollout cut before its first turn (a prompt past the engine's context: no sampled token) with an
    entropy bonus, so that the term still runs: nothing to average over is a zero loss, not a division by
    zero that ends the run, and no optimizer step (Adam's momentum alone would move the weights)."""
    import dataclasses

    model, _ = load_model("tiny-random", dtype="fp32", seed=3)
    engine = _Engine(model)
    ctx = StepContext(engine=engine, micro_batch_size=4, micro_batch_tokens=4096, temperature=1.0,
                      use_sampler_logprobs=False, dtype="fp32")
    empty = _trajectories([(10, 10, 0.0), (12, 12, 1.0)])
    result = chord_step(ctx, dataclasses.replace(preset("grpo"), entropy_coef=0.01), empty, [], 0.0, step=1,
                        total_steps=10)
    assert result.metrics["loss/grpo"] == 0.0 and result.metrics["loss/total"] == 0.0
    assert not result.stepped and engine.steps == 0


def test_every_yaml_is_a_preset():
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == set(PRESETS) >= {
        "sft", "grpo", "sft_then_grpo", "chord_mu", "chord_mu_math", "chord_phi", "chord_adaptive", "idft", "chord_idft"}
    with pytest.raises(ValueError):
        AlgorithmConfig.from_dict({"name": "x", "bogus": 1})
