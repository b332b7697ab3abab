"""DAPO, GSPO and Dr. GRPO: their pieces against values worked out by hand, dynamic sampling's
refill, the GSPO = GRPO identity at the first on-policy step, and learning on tiny random models.

DAPO: Yu et al. 2025 (clip-higher eq. 10, dynamic sampling §3.2, overlong punishment eq. 13).
GSPO: Zheng et al. 2025 (sequence ratio (π/π_old)^(1/|y|), eq. 7). Dr. GRPO: Liu et al. 2025.
"""

import copy
import math

import pytest
import torch

from rlhfkit.algorithms.grpo_variants import (
    group_centered_advantages,
    overlong_penalty,
    sequence_clipped_surrogate,
    sequence_importance_ratio,
    zero_variance_groups,
)
from rlhfkit.algorithms.losses import clipped_surrogate
from rlhfkit.config import ConfigError
from rlhfkit.models.lora import frozen_copy
from rlhfkit.trainers.config import RLConfig
from rlhfkit.trainers.dynamic_sampling import concat_rollouts, refill
from rlhfkit.trainers.online import OnlineTrainer
from rlhfkit.types import Rollout

PROMPTS = ["the movie was", "i loved it", "what is two plus two", "the cast is"]
POSITIVE = {"good", "great", "excellent", "wonderful", "fine", "best", "happy", "love", "loved", "fun"}


def good_fraction(prompts, completions, **_):
    return [sum(w in POSITIVE for w in c.split()) / max(len(c.split()), 1) for c in completions]


def mostly_good(prompts, completions, **_):
    """A 0/1 reward (at least half the words positive): at random init most groups of 4 samples
    are all 0, the case dynamic sampling drops."""
    return [float(2 * sum(w in POSITIVE for w in c.split()) >= max(len(c.split()), 1)) for c in completions]


def _t(*values):
    return torch.tensor(values, dtype=torch.float64)


# --- the pure pieces -------------------------------------------------------------------------


def test_decoupled_clip_lets_good_tokens_rise_further():
    # A = +1, ρ = 1.3: symmetric ε 0.2 clips at 1.2 (loss −1.2); DAPO's ε_high 0.28 at 1.28.
    # A = −1, ρ = 0.7: the lower bound 1 − ε_low = 0.8 applies in both: max(0.7, 0.8) = 0.8.
    logprobs, old = torch.log(_t(1.3, 0.7)), _t(0.0, 0.0)
    adv = _t(1.0, -1.0)
    symmetric, _ = clipped_surrogate(logprobs, old, adv, 0.2)
    decoupled, clipped = clipped_surrogate(logprobs, old, adv, 0.2, clip_coef_high=0.28)
    assert symmetric.tolist() == pytest.approx([-1.2, 0.8])
    assert decoupled.tolist() == pytest.approx([-1.28, 0.8])
    assert clipped.tolist() == [True, True]


def test_sequence_ratio_is_the_geometric_mean_over_real_tokens():
    # token log-ratios (ln 2, 0) on 2 real tokens (the third is padding, its ln 8 ignored):
    # s = exp(ln 2 / 2) = √2. With A = 1 and GSPO's clip [1 − 3e-4, 1 + 4e-4]: max(−√2, −1.0004).
    logprobs = torch.log(_t(2.0, 1.0, 8.0))[None]
    old, mask = torch.zeros(1, 3, dtype=torch.float64), _t(1.0, 1.0, 0.0)[None]
    assert sequence_importance_ratio(logprobs, old, mask).item() == pytest.approx(math.sqrt(2))
    loss, clipped = sequence_clipped_surrogate(logprobs, old, torch.ones(1, 3, dtype=torch.float64), mask)
    assert loss[0, :2].tolist() == pytest.approx([-1.0004, -1.0004])
    assert bool(clipped[0, 0])


def test_overlong_penalty_falls_linearly_over_the_buffer():
    # L_max 20, L_cache 4: no penalty up to 16 tokens, then (16 − |y|)/4: 18 → −½, 20 → −1; beyond −1
    got = overlong_penalty(torch.tensor([10, 16, 18, 20, 25]), max_length=20, buffer=4)
    assert got.tolist() == pytest.approx([0.0, 0.0, -0.5, -1.0, -1.0])
    assert overlong_penalty(torch.tensor([20]), 20, 4, factor=0.5).item() == pytest.approx(-0.5)
    assert overlong_penalty(torch.tensor([20]), 20, 0).item() == 0.0


def test_zero_variance_groups_and_dr_grpo_advantages():
    assert zero_variance_groups(_t(1, 1, 0, 1, 0.5, 0.5, 0.5, 0.5), 4).tolist() == [False, True]
    # rewards (1, 0, 0, 0): mean ¼, so r − mean = (¾, −¼, −¼, −¼), not divided by the std
    assert group_centered_advantages(_t(1, 0, 0, 0), 4).tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25])


def _rollout(response_width: int, prompt_width: int, rows: int, tag: str) -> Rollout:
    """A stand-in rollout: prompts named tag0, tag1, ... so the test can see which rows were kept."""
    return Rollout(prompt_ids=torch.ones(rows, prompt_width, dtype=torch.long),
                   prompt_mask=torch.ones(rows, prompt_width, dtype=torch.long),
                   response_ids=torch.full((rows, response_width), 5), response_mask=torch.ones(rows, response_width),
                   logprobs=torch.full((rows, response_width), -1.0), prompts=[f"{tag}{i}" for i in range(rows)],
                   responses=[f"{tag}r{i}" for i in range(rows)], finished=torch.ones(rows, dtype=torch.bool))


def test_refill_replaces_zero_variance_groups_in_draw_order():
    # G = 2, two groups: the first draw's group 0 is all-equal (dropped), group 1 differs; the
    # second draw (wider responses, shorter prompts) gives group 0 differing -> batch = [first g1, second g0]
    first = (_rollout(3, 4, 4, "a"), _t(1, 1, 0, 1), _t(1, 1, 0, 1))
    second = (_rollout(5, 2, 4, "b"), _t(0, 1, 1, 1), _t(0, 1, 1, 1))
    (ro, raw, shaped), stats = refill(first, 2, lambda: second, max_rounds=3, pad_id=0)
    assert ro.prompts == ["a2", "a3", "b0", "b1"] and raw.tolist() == [0, 1, 0, 1]
    assert stats == {"dynamic_sampling/rounds": 1.0, "dynamic_sampling/filled_fraction": 1.0,
                     "dynamic_sampling/responses_sampled": 8.0}
    # joined: prompts left-padded to 4, responses right-padded to 5 (mask 0 on the padding)
    assert ro.prompt_mask.tolist()[2] == [0, 0, 1, 1] and ro.response_mask.tolist()[0] == [1, 1, 1, 0, 0]
    # never filled: after max_rounds the first draw's dropped group tops the batch up
    (ro, raw, _), stats = refill(first, 2, lambda: (second[0], _t(1, 1, 1, 1), _t(1, 1, 1, 1)), 2, 0)
    assert sorted(ro.prompts) == ["a0", "a1", "a2", "a3"] and stats["dynamic_sampling/filled_fraction"] == 0.5
    assert stats["dynamic_sampling/rounds"] == 2.0


def test_concat_refuses_nlpo_masks_and_config_checks():
    masked = _rollout(2, 2, 2, "a")
    masked.action_mask = torch.ones(2, 2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="action masks"):
        concat_rollouts([masked, masked], 0)
    with pytest.raises(ConfigError, match="group_size must be at least 2"):
        RLConfig(algo="dapo", group_size=1, batch_size=8, mini_batch_size=8)
    with pytest.raises(ConfigError, match="NLPO"):
        RLConfig(algo="nlpo", dynamic_sampling=True, group_size=2)


def test_published_defaults():
    dapo, gspo, dr = RLConfig(algo="dapo"), RLConfig(algo="gspo"), RLConfig(algo="dr_grpo")
    assert (dapo.clip_low, dapo.clip_high, dapo.dynamic_sampling, dapo.loss_aggregation, dapo.init_kl_coef,
            dapo.overlong_buffer_fraction) == (0.2, 0.28, True, "token_mean", 0.0, 0.2)
    assert (gspo.clip_low, gspo.clip_high, gspo.importance_ratio, gspo.init_kl_coef) == (3e-4, 4e-4, "sequence", 0.0)
    assert (dr.loss_aggregation, dr.init_kl_coef, dr.kl_estimator, dr.kl_in) == ("constant", 0.04, "k3", "loss")
    assert RLConfig(algo="ppo").importance_ratio == "token" and RLConfig(algo="ppo").clip_low is None


# --- in the online loop ----------------------------------------------------------------------


def _cfg(**kw):
    base = dict(steps=1, batch_size=16, mini_batch_size=16, micro_batch_size=16, learning_rate=1e-2,
                max_new_tokens=6, target_kl=None, seed=0)
    base.update(kw)
    return RLConfig(**base)


def test_gspo_equals_grpo_at_the_first_on_policy_step(tiny_llama, tiny_tok):
    # one on-policy step: s_i = 1 and ∇s_i = (1/|y_i|)·Σ_t ∇log π_t, GRPO's per-sequence token mean
    # of ∇ρ_t (GSPO paper §4.2); with β = 0 for both the updates are the same. Plain SGD: Adam's
    # first step is ±lr on the sign of each gradient entry, and entries whose true value is 0 hold
    # rounding noise whose sign depends on the summation order, so Adam would compare noise
    results = []
    for algo in ("grpo", "gspo"):
        model = copy.deepcopy(tiny_llama)
        trainer = OnlineTrainer(model, tiny_tok, good_fraction, _cfg(algo=algo, init_kl_coef=0.0),
                                reference=frozen_copy(model), chat=False)
        trainer.optimizer = torch.optim.SGD(trainer.trainable, lr=0.1)
        trainer.step(PROMPTS)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert (results[0] - torch.cat([p.flatten() for p in tiny_llama.parameters()])).abs().max() > 1e-4
    assert torch.allclose(results[0], results[1], atol=1e-6), (results[0] - results[1]).abs().max()


def test_dapo_batches_hold_no_zero_variance_group(tiny_llama, tiny_tok):
    cfg = _cfg(algo="dapo", steps=4)
    trainer = OnlineTrainer(tiny_llama, tiny_tok, mostly_good, cfg, reference=frozen_copy(tiny_llama), chat=False)
    history = trainer.train(PROMPTS, progress=False)
    assert any(h["groups/zero_variance_fraction"] > 0 for h in history)  # the 0/1 reward does give such groups
    assert any("dynamic_sampling/rounds" in h for h in history)  # ... and the batch was refilled
    last = trainer.last_scored
    assert last.mask.shape[0] == 16  # the batch keeps its size
    if history[-1].get("dynamic_sampling/filled_fraction", 1.0) == 1.0:
        assert not zero_variance_groups(last.raw_scores, 4).any()
    assert "reward/overlong_penalty_mean" in history[-1] and history[-1]["reward/overlong_penalty_mean"] <= 0


@pytest.mark.parametrize("algo, reward, extra", [
    ("dapo", mostly_good, {}),
    ("gspo", good_fraction, {"mini_batch_size": 8, "micro_batch_size": 8}),  # two steps per batch: off-policy
    ("dr_grpo", good_fraction, {}),
])
def test_each_variant_raises_the_reward(tiny_llama, tiny_tok, algo, reward, extra):
    cfg = _cfg(algo=algo, steps=30, **extra)
    trainer = OnlineTrainer(tiny_llama, tiny_tok, reward, cfg, reference=frozen_copy(tiny_llama), chat=False)
    history = trainer.train(PROMPTS, progress=False)
    first = sum(h["reward/score_mean"] for h in history[:5]) / 5
    last = sum(h["reward/score_mean"] for h in history[-5:]) / 5
    assert last > first + 0.2, (algo, first, last)
    assert all("groups/zero_variance_fraction" in h for h in history)
    assert all(v == v for h in history for v in h.values() if isinstance(v, float))
