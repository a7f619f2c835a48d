"""group_advantages: GRPO (unbiased std), Dr.GRPO, singleton groups. Numbers computed by hand."""

import math

import pytest
import torch

from algorithms.advantages import group_advantages


def test_unbiased_std_two_groups():
    # group "a": r = [1, 0, 0, 1]; mean 0.5; deviations +-0.5; sum sq = 4 * 0.25 = 1
    #   unbiased var = 1 / (4 - 1) = 1/3, std = 0.577350  ->  A = +-0.5 / 0.577350 = +-0.866025
    #   (the biased std 0.5 would give +-1.0)
    # group "b": r = [2, 4, 9]; mean 5; deviations -3, -1, 4; sum sq = 9 + 1 + 16 = 26
    #   unbiased var = 26 / 2 = 13, std = 3.605551  ->  A = -0.832050, -0.277350, 1.109400
    rewards = torch.tensor([1.0, 2.0, 0.0, 4.0, 0.0, 9.0, 1.0])
    groups = ["a", "b", "a", "b", "a", "b", "a"]  # interleaved on purpose
    adv = group_advantages(rewards, groups)
    expected = torch.tensor([0.866025, -0.832050, -0.866025, -0.277350, -0.866025, 1.109400, 0.866025])
    torch.testing.assert_close(adv, expected, atol=1e-5, rtol=0)


def test_eps_in_denominator():
    # r = [0, 1]: mean 0.5, unbiased std = sqrt((0.25 + 0.25) / 1) = 0.707107; A = +-0.5 / (0.707107 + 0.1)
    adv = group_advantages(torch.tensor([0.0, 1.0]), [0, 0], eps=0.1)
    a = 0.5 / (math.sqrt(0.5) + 0.1)  # 0.619615
    torch.testing.assert_close(adv, torch.tensor([-a, a]), atol=1e-6, rtol=0)


def test_group_of_one_and_identical_rewards_give_zero():
    # group 7 has a single sample -> 0; group 3 has identical rewards -> 0 / (0 + eps) = 0
    adv = group_advantages(torch.tensor([5.0, 1.0, 1.0]), torch.tensor([7, 3, 3]))
    torch.testing.assert_close(adv, torch.zeros(3))
    assert group_advantages(torch.tensor([5.0]), [0], scale="none").item() == 0.0


def test_dr_grpo_no_std_division():
    # group "b" above: A = r - 5 = -3, -1, 4; singleton group -> 0
    adv = group_advantages(torch.tensor([2.0, 4.0, 9.0, 3.0]), [1, 1, 1, 2], scale="none")
    torch.testing.assert_close(adv, torch.tensor([-3.0, -1.0, 4.0, 0.0]))


def test_integer_rewards_and_dtype():
    adv = group_advantages(torch.tensor([1, 0]), [0, 0])
    assert adv.dtype == torch.float32
    assert adv[0] > 0 > adv[1]


def test_bad_inputs():
    with pytest.raises(ValueError):
        group_advantages(torch.tensor([1.0, 2.0]), [0])
    with pytest.raises(ValueError):
        group_advantages(torch.tensor([1.0, 2.0]), [0, 0], scale="mad")
