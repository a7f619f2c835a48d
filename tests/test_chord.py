"""CHORD: mu schedules, the combined loss and its per-term normalisation, presets and their YAML mirrors."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from algorithms.chord import PRESETS, AlgorithmConfig, MuSchedule, adaptive_mu, chord_loss, preset
from algorithms.losses import clipped_policy_loss
from algorithms.sft import sft_loss

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


def test_chord_loss_combination_and_gradients():
    g = torch.tensor(2.0, requires_grad=True)
    s = torch.tensor(4.0, requires_grad=True)
    total = chord_loss(g, s, mu=0.25)  # 0.75 * 2 + 0.25 * 4 = 2.5
    total.backward()
    assert total.item() == pytest.approx(2.5)
    assert (g.grad.item(), s.grad.item()) == (0.75, 0.25)
    # missing terms count as 0; a zero-weighted term is left out; nothing left -> 0 that can backward()
    assert chord_loss(None, s, 0.25).item() == pytest.approx(1.0)
    assert chord_loss(g, None, 0.25).item() == pytest.approx(1.5)
    assert chord_loss(g, torch.tensor(math.nan), 0.0).item() == pytest.approx(2.0)
    empty = chord_loss(None, s, 0.0)
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError):
        chord_loss(g, s, 1.5)


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
    assert chord_loss(l_grpo, l_sft_1, 0.1).item() == pytest.approx(chord_loss(l_grpo, l_sft_2, 0.1).item())
    # hand value: L_grpo = -(1 + 1 + 1 - 1 - 1) / 5 = -0.2; L_sft(phi) = 0.146760 (see test_sft_weights)
    # total = 0.9 * -0.2 + 0.1 * 0.146760 = -0.165324
    assert chord_loss(l_grpo, l_sft_1, 0.1).item() == pytest.approx(-0.165324, abs=1e-5)


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
def test_yaml_mirrors_preset(name):
    values = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    assert AlgorithmConfig.from_dict(values) == preset(name)
    assert set(values) == set(preset(name).to_dict())


def test_every_yaml_is_a_preset():
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == set(PRESETS)
    with pytest.raises(ValueError):
        AlgorithmConfig.from_dict({"name": "x", "bogus": 1})
