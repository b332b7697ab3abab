"""Token-level credit: the redistribution math worked by hand, and in the online trainer the dense
token rewards of every sequence add up to its score (the SENSEI idea of a sequence score distributed over its tokens)."""

import math

import pytest
import torch

from rlhfkit.algorithms.token_credit import (
    dense_token_rewards,
    residual_redistribution,
    sum_matching_loss,
    weighted_redistribution,
)
from rlhfkit.models.lora import frozen_copy
from rlhfkit.trainers.config import RLConfig
from rlhfkit.trainers.online import OnlineTrainer

MASK = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0]])


def test_sum_matching_loss_by_hand():
    # row sums over the mask: 0.5 + 0.25 + 0.25 = 1.0 (target 2) and 1 + 1 = 2 (target 2; the 9 is padding)
    token_scores = torch.tensor([[0.5, 0.25, 0.25, 9.0], [1.0, 1.0, 9.0, 9.0]])
    loss = sum_matching_loss(token_scores, MASK, torch.tensor([2.0, 2.0]))
    assert loss.item() == pytest.approx(((1.0 - 2.0) ** 2 + 0.0) / 2)


def test_residual_redistribution_by_hand():
    # row 0: ŝ = (1, 0, −1), Σ = 0, R = 3 -> residual 1 each: (2, 1, 0); row 1: ŝ = (0.5, 0.5), R = 0 -> (0, 0)
    token_scores = torch.tensor([[1.0, 0.0, -1.0, 5.0], [0.5, 0.5, 5.0, 5.0]])
    out = residual_redistribution(token_scores, MASK, torch.tensor([3.0, 0.0]))
    assert out.tolist() == [[2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]


def test_weighted_redistribution_by_hand():
    # logits (0, ln 3) over row 1's two tokens -> weights (1/4, 3/4) of R = −2: (−0.5, −1.5)
    logits = torch.tensor([[0.0, 0.0, 0.0, 7.0], [0.0, math.log(3.0), 7.0, 7.0]])
    out = weighted_redistribution(logits, MASK, torch.tensor([3.0, -2.0]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0, 1.0, 0.0], [-0.5, -1.5, 0.0, 0.0]]))
    empty = weighted_redistribution(logits[:1], torch.zeros(1, 4), torch.tensor([3.0]))
    assert empty.tolist() == [[0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize("seed", range(5))
def test_both_distributors_sum_exactly_to_the_score(seed):
    g = torch.Generator().manual_seed(seed)
    scores, mask = torch.randn(6, 9, generator=g), (torch.rand(6, 9, generator=g) > 0.3).float()
    mask[:, 0] = 1
    R = torch.randn(6, generator=g)
    for fn in (residual_redistribution, weighted_redistribution):
        out = fn(scores, mask, R)
        torch.testing.assert_close(out.sum(1), R)
        assert (out[mask == 0] == 0).all()


def test_dense_token_rewards_by_hand():
    # dense (1, 2) summing to raw 3; shaped score 2.5 -> −0.5 on the last token; β = 0.5, kl (0.2, 0.4)
    dense = torch.tensor([[1.0, 2.0, 0.0]])
    kl = torch.tensor([[0.2, 0.4, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    out = dense_token_rewards(dense, torch.tensor([2.5]), torch.tensor([3.0]), kl, 0.5, mask)
    torch.testing.assert_close(out, torch.tensor([[1.0 - 0.1, 2.0 - 0.2 - 0.5, 0.0]]))


def constant_reward(prompts, completions, **_):
    return [float(len(c.split())) - 2.0 for c in completions]


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_trainer_token_rewards_sum_to_the_sequence_score(tiny_llama, tiny_tok, algo):
    """β = 0: each sequence's token rewards add up to its score exactly, yet spread over its tokens
    (not all on the last one); the token reward model fits the scores (its loss is logged)."""
    policy = tiny_llama
    policy.requires_grad_(True)
    cfg = RLConfig(algo=algo, steps=3, batch_size=8, mini_batch_size=8, ppo_epochs=1, init_kl_coef=0.0,
                   learning_rate=1e-3, max_new_tokens=6, seed=0)
    trainer = OnlineTrainer(policy, tiny_tok, constant_reward, cfg, reference=frozen_copy(policy),
                            reward_granularity="token")
    history = trainer.train(["the movie was", "i loved it"], progress=False)
    scored = trainer.last_scored
    torch.testing.assert_close(scored.token_rewards.sum(1), scored.scores)
    assert (scored.token_rewards[scored.mask == 0] == 0).all()
    several = scored.mask.sum(1) > 1
    assert (scored.token_rewards[several] != 0).sum(1).gt(1).all()  # dense: more than the last token
    assert all(math.isfinite(h["token_credit/fit_loss"]) for h in history)
    assert history[-1]["token_credit/fit_loss"] < history[0]["token_credit/fit_loss"]


def test_token_granularity_needs_a_per_token_estimator(tiny_llama, tiny_tok):
    cfg = RLConfig(algo="grpo", steps=1, batch_size=4, mini_batch_size=4, max_new_tokens=4)
    with pytest.raises(ValueError, match="per-token estimator"):
        OnlineTrainer(tiny_llama, tiny_tok, constant_reward, cfg, reference=frozen_copy(tiny_llama),
                      reward_granularity="token")
