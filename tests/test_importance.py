"""Truncated importance weights between sampler and trainer log-probs (algorithms/importance.py),
against values worked out by hand. The rule is TRL's GRPO correction for vLLM rollouts:
w = min(exp(old_logp − sampler_logp), C)."""

import math

import pytest
import torch

from rlhfkit.algorithms.importance import truncated_importance_weights


def test_weights_are_the_capped_ratio_and_zero_on_padding():
    # row 0: old − sampler = 0, ln 1.5, ln 3  -> ratios 1, 1.5, 3 -> capped at 2: 1, 1.5, 2
    # row 1: old − sampler = −ln 2, then padding -> 0.5, 0 (the padded entry would be e^5 unmasked)
    old = torch.tensor([[-1.0, -2.0 + math.log(1.5), -0.5 + math.log(3.0)], [-3.0 - math.log(2.0), 5.0, 0.0]])
    sampler = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    weights, stats = truncated_importance_weights(old, sampler, mask, cap=2.0)
    assert torch.allclose(weights, torch.tensor([[1.0, 1.5, 2.0], [0.5, 0.0, 0.0]]), atol=1e-6)
    # mean ratio before the cap over the 4 real tokens: (1 + 1.5 + 3 + 0.5) / 4 = 1.5
    assert stats["ratio_mean"] == pytest.approx(1.5, abs=1e-6)
    # one token of four was above the cap
    assert stats["capped_fraction"] == pytest.approx(0.25)
    # the largest |difference| is ln 3
    assert stats["abs_logprob_diff_max"] == pytest.approx(math.log(3.0), abs=1e-6)


def test_equal_logprobs_give_weight_one_and_no_gradient_flows():
    logp = torch.tensor([[-0.7, -1.2]], requires_grad=True)
    weights, stats = truncated_importance_weights(logp, logp.detach().clone(), torch.ones(1, 2), cap=2.0)
    assert torch.equal(weights, torch.ones(1, 2))
    assert not weights.requires_grad
    assert stats["capped_fraction"] == 0.0


def test_a_tighter_cap_cuts_more():
    # ratios e^0.1 ≈ 1.105 and e^1 ≈ 2.718: C = 1 cuts both (weights 1, 1), C = 3 neither
    old, sampler, mask = torch.tensor([[0.1, 1.0]]), torch.zeros(1, 2), torch.ones(1, 2)
    w1, s1 = truncated_importance_weights(old, sampler, mask, cap=1.0)
    w3, s3 = truncated_importance_weights(old, sampler, mask, cap=3.0)
    assert torch.allclose(w1, torch.ones(1, 2))
    assert torch.allclose(w3, torch.tensor([[math.exp(0.1), math.e]]))
    assert (s1["capped_fraction"], s3["capped_fraction"]) == (1.0, 0.0)
    with pytest.raises(ValueError, match="cap must be > 0"):
        truncated_importance_weights(old, sampler, mask, cap=0.0)
